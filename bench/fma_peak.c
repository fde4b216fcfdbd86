/* fma_peak.c: the machine's arithmetic peak, measured: every thread runs chains of independent
 * fused multiply-adds on 8-wide (AVX2) and, where the CPU has it, 16-wide (AVX-512) float32
 * registers, and where it has AVX512_BF16 chains of vdpbf16ps (16 float32 lanes, each adding two
 * bfloat16 products: 64 FLOP per instruction), for a fixed count. bench/run.py divides each
 * model's GFLOP/s by these figures ("% of peak"). Prints one JSON line; a peak the CPU lacks is 0.
 * Build: cc -O2 -fopenmp (each kernel carries its own target attribute, so the file builds and
 * runs on any x86-64 CPU). */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* 12 independent accumulators hide the latency (an FMA's 4 cycles x 2 pipes needs at least 8;
 * vdpbf16ps takes longer on some cores, and 12 chains cover up to 6 cycles x 2 pipes). OP(acc) is
 * one instruction on acc with loop-invariant operands. */
#define CHAINS(T, OP, SET)                                                                \
    T a0 = SET(1.0f), a1 = SET(1.1f), a2 = SET(1.2f), a3 = SET(1.3f), a4 = SET(1.4f),     \
      a5 = SET(1.5f), a6 = SET(1.6f), a7 = SET(1.7f), a8 = SET(1.8f), a9 = SET(1.9f),     \
      a10 = SET(2.0f), a11 = SET(2.1f);                                                   \
    for (long i = 0; i < iters; i++) {                                                    \
        a0 = OP(a0), a1 = OP(a1), a2 = OP(a2), a3 = OP(a3), a4 = OP(a4), a5 = OP(a5);     \
        a6 = OP(a6), a7 = OP(a7), a8 = OP(a8), a9 = OP(a9), a10 = OP(a10), a11 = OP(a11); \
    }                                                                                     \
    T s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                    \
    float out[16];                                                                        \
    memcpy(out, &s, sizeof s);                                                            \
    sink += out[0];

static volatile float sink;

__attribute__((target("avx2,fma"))) static void run_avx2(long iters) {
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
#define FMA8(a) _mm256_fmadd_ps(a, m, c)
    CHAINS(__m256, FMA8, _mm256_set1_ps)
}
__attribute__((target("avx512f"))) static void run_avx512(long iters) {
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
#define FMA16(a) _mm512_fmadd_ps(a, m, c)
    CHAINS(__m512, FMA16, _mm512_set1_ps)
}
/* acc += x[2i] * y[2i] + x[2i+1] * y[2i+1] per float32 lane; small products keep acc finite */
__attribute__((target("avx512f,avx512bf16"))) static void run_bf16(long iters) {
    const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
    const __m512bh y = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
#define DPBF16(a) _mm512_dpbf16_ps(a, x, y)
    CHAINS(__m512, DPBF16, _mm512_set1_ps)
}

enum { PEAK_AVX2, PEAK_AVX512, PEAK_BF16 };

/* GFLOP/s of all threads together: an FMA is 2 FLOP per lane, a vdpbf16ps 4 per float32 lane. */
static double measure(int kind) {
    const long iters = 20000000;
    const double flop = kind == PEAK_AVX2 ? 8 * 2 : kind == PEAK_AVX512 ? 16 * 2 : 16 * 4;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        int threads = 1;
#pragma omp parallel
        {
#pragma omp single
            threads = omp_get_num_threads();
            if (kind == PEAK_AVX2)
                run_avx2(iters);
            else if (kind == PEAK_AVX512)
                run_avx512(iters);
            else
                run_bf16(iters);
        }
        double g = (double)threads * iters * 12 * flop / (now() - t0) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

int main(void) {
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f");
    int has_bf16 = has512 && __builtin_cpu_supports("avx512bf16");
    double p2 = measure(PEAK_AVX2), p5 = has512 ? measure(PEAK_AVX512) : 0;
    double pb = has_bf16 ? measure(PEAK_BF16) : 0;
    printf("{\"threads\": %d, \"avx2_gflops\": %.1f, \"avx512_gflops\": %.1f, "
           "\"bf16_gflops\": %.1f}\n",
           omp_get_max_threads(), p2, p5, pb);
    return 0;
}
