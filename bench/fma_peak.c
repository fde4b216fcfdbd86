/* fma_peak.c: the machine's single-precision FMA peak, measured: every thread runs chains of
 * independent fused multiply-adds on 8-wide (AVX2) and, where the CPU has it, 16-wide (AVX-512)
 * registers, for a fixed time. bench/run.py divides each model's GFLOP/s by these figures
 * ("% of peak"). Prints one JSON line. Build: cc -O2 -fopenmp -mavx2 -mfma -mavx512f. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* 12 independent accumulators hide the FMA latency (4 cycles x 2 ports needs at least 8). */
#define CHAINS(T, FMA, SET)                                                                 \
    T a0 = SET(1.0f), a1 = SET(1.1f), a2 = SET(1.2f), a3 = SET(1.3f), a4 = SET(1.4f),       \
      a5 = SET(1.5f), a6 = SET(1.6f), a7 = SET(1.7f), a8 = SET(1.8f), a9 = SET(1.9f),       \
      a10 = SET(2.0f), a11 = SET(2.1f);                                                     \
    const T m = SET(0.999999f), c = SET(1e-7f);                                             \
    for (long i = 0; i < iters; i++) {                                                      \
        a0 = FMA(a0, m, c), a1 = FMA(a1, m, c), a2 = FMA(a2, m, c), a3 = FMA(a3, m, c);     \
        a4 = FMA(a4, m, c), a5 = FMA(a5, m, c), a6 = FMA(a6, m, c), a7 = FMA(a7, m, c);     \
        a8 = FMA(a8, m, c), a9 = FMA(a9, m, c), a10 = FMA(a10, m, c), a11 = FMA(a11, m, c); \
    }                                                                                       \
    T s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                      \
    float out[16];                                                                          \
    memcpy(out, &s, sizeof s);                                                              \
    sink += out[0];

#include <string.h>
static volatile float sink;

__attribute__((target("avx2,fma"))) static void run_avx2(long iters) {
    CHAINS(__m256, _mm256_fmadd_ps, _mm256_set1_ps)
}
__attribute__((target("avx512f"))) static void run_avx512(long iters) {
    CHAINS(__m512, _mm512_fmadd_ps, _mm512_set1_ps)
}

/* GFLOP/s of all threads together: each FMA is 2 flops per lane. */
static double measure(int avx512) {
    const long iters = 20000000;
    const int lanes = avx512 ? 16 : 8;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        int threads = 1;
#pragma omp parallel
        {
#pragma omp single
            threads = omp_get_num_threads();
            if (avx512)
                run_avx512(iters);
            else
                run_avx2(iters);
        }
        double g = (double)threads * iters * 12 * 2 * lanes / (now() - t0) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

int main(void) {
    int has512 = __builtin_cpu_supports("avx512f");
    double p2 = measure(0), p5 = has512 ? measure(1) : 0;
    printf("{\"threads\": %d, \"avx2_gflops\": %.1f, \"avx512_gflops\": %.1f}\n",
           omp_get_max_threads(), p2, p5);
    return 0;
}
