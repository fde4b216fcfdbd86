/* conv_dnnl.c: the oneDNN convolution algorithms of conv_algo.h, "direct" and "winograd", and
 * every call into oneDNN the project makes (the 2.x C API: a move to 3.x touches this file only).
 *
 * At plan time each layer gets three primitives (forward with the activation as a post-op,
 * backward-data, backward-weights), each free to pick its own layouts ("any"), plus the reorders
 * between those and the layouts the model holds: the input as the producer wrote it (NHWC or
 * nChw16c), the output in nChw16c, the weights and their gradient in Keras's HWIO. Reorders
 * that turn out to be identities are not built. Every buffer a primitive touches, its
 * scratchpad included, is carved at plan time out of the layer's aux (kept from forward to
 * backward: the blocked weights, a reordered input) or workspace (scratch), so a step allocates
 * nothing. The workspace is the scratchpad, then the largest of the three passes' own buffers:
 * each pass is a separate call, so their buffers share one region. Primitives are built for the
 * largest batch; a smaller one runs as the full batch (ConvPlan.full_batch) with the extra
 * samples' output gradient zeroed by the layer.
 *
 * bfloat16 (ConvDesc.bf16): the primitives read bf16 (src, weights, diff_dst) and write f32
 * (dst, diff_src, diff_weights, diff_bias; the bias stays f32), so the reorders from the
 * model's f32 layouts into the primitives' are the casts, done by oneDNN, and the forward's
 * reordered input, kept in aux for backward-weights, is half the bytes of an f32 copy.
 *
 * Threads: oneDNN runs on libgomp, like OpenBLAS and our loops; the primitives are executed
 * outside any parallel region, so they use the rank's whole thread share.
 */
#include <stdlib.h>
#include <string.h>

#include "conv_algo.h"

#include <dnnl.h>

/* ---- engine and stream, shared by every plan (reference-counted) ---- */

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static int engine_users;

static int engine_acquire(Err *e) {
    if (engine_users++) return 0;
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        engine_users = 0;
        err_set(e, "oneDNN: cannot create a CPU engine");
        return -1;
    }
    return 0;
}

static void engine_release(void) {
    if (--engine_users) return;
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
}

const char *conv_dnnl_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

const char *conv_dnnl_bf16_unsupported(void) {
    static char why[160];
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    /* the ISA values are bit sets: AMX includes avx512_core_bf16 */
    if ((isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16) return NULL;
    snprintf(why, sizeof why, "oneDNN runs %s here, without bfloat16 units", conv_dnnl_isa());
    return why;
}

/* ---- plan-time building blocks ---- */

/* A primitive with one memory object per argument (data handles set at each call). */
#define MAX_ARGS 6
typedef struct {
    dnnl_primitive_t p;
    int n;
    dnnl_exec_arg_t args[MAX_ARGS];
} Prim;

/* A buffer carved out of aux or ws: offset in bytes, and which arena. */
typedef struct {
    size_t off;
    int in_aux;
} Slot;

/* Where slot_take carves: aux (kept from forward to backward), or the workspace region of the
 * one pass that uses the buffer. */
typedef enum { IN_AUX = -1, WS_FWD, WS_BWD_DATA, WS_BWD_WEIGHTS, N_WS_PASSES } SlotArena;

typedef struct {
    Prim prim;
    int src_arg, dst_arg;
    Slot dst; /* where the reorder writes, when it writes into a slot of ours */
} Reorder;

typedef struct {
    dnnl_memory_desc_t in, out, w, bias; /* the layouts the model holds */
    Prim fwd, bwd_d, bwd_w;
    /* reorders; .prim.p NULL when source and destination layouts agree */
    Reorder src_f, w_f, dst_f;   /* forward: input, weights in; output out */
    Reorder w_d, ddst_d, dsrc_d; /* backward-data */
    Reorder src_w, ddst_w, dw_w; /* backward-weights */
    int src_w_uses_fwd;          /* backward-weights reads the forward's reordered input */
    /* both backward passes read the output gradient in one layout that needs a reorder (the
     * bf16 cast): backward-weights converts it into ddst_common, below both passes' regions of
     * ws, and backward-data (called next, on the same ws) reads it there when ddst_ready */
    int ddst_shared, ddst_ready;
    Slot ddst_common;
    Slot scratch, db, dw_plain;          /* ws: scratchpad; bias and HWIO weight gradients */
    size_t aux_top, ws_top[N_WS_PASSES]; /* each pass's region starts past the scratchpad */
} Dnnl;

static Slot slot_take(Dnnl *s, size_t bytes, SlotArena where) {
    size_t *top = where == IN_AUX ? &s->aux_top : &s->ws_top[where];
    Slot sl = {*top, where == IN_AUX};
    *top += (bytes + 63) & ~(size_t)63;
    return sl;
}

static void *slot_ptr(Slot s, void *aux, void *ws) {
    return (unsigned char *)(s.in_aux ? aux : ws) + s.off;
}

static int ok(dnnl_status_t st, const char *what, Err *e) {
    if (st == dnnl_success) return 0;
    err_set(e, "oneDNN: %s failed (status %d)", what, (int)st);
    return -1;
}

/* Build pd's primitive with memory objects for the listed arguments (mds queried from pd). */
static int prim_make(Prim *P, dnnl_primitive_desc_t pd, const int *args, int n, Err *e) {
    P->n = n;
    for (int i = 0; i < n; i++) {
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md,
                                                                    args[i]);
        P->args[i].arg = args[i];
        if (!md ||
            ok(dnnl_memory_create(&P->args[i].memory, md, engine, DNNL_MEMORY_NONE), "memory", e))
            return -1;
    }
    return ok(dnnl_primitive_create(&P->p, pd), "primitive", e);
}

static void prim_free(Prim *P) {
    if (P->p) dnnl_primitive_destroy(P->p);
    for (int i = 0; i < P->n; i++)
        if (P->args[i].memory) dnnl_memory_destroy(P->args[i].memory);
    memset(P, 0, sizeof *P);
}

static void prim_set(Prim *P, int arg, const void *ptr) {
    for (int i = 0; i < P->n; i++)
        if (P->args[i].arg == arg) {
            dnnl_memory_set_data_handle(P->args[i].memory, (void *)ptr);
            return;
        }
}

static void prim_run(Prim *P) {
    dnnl_status_t st = dnnl_primitive_execute(P->p, stream, P->n, P->args);
    if (st == dnnl_success) st = dnnl_stream_wait(stream);
    if (st != dnnl_success)
        die(EXIT_RUNTIME, "oneDNN: a convolution primitive failed (status %d)", (int)st);
}

static size_t scratch_bytes(dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

/* A reorder from `from` to `to` (nothing when they are equal); its destination is a new slot. */
static int reorder_make(Dnnl *s, Reorder *r, const dnnl_memory_desc_t *from,
                        const dnnl_memory_desc_t *to, SlotArena where, int need_slot, Err *e) {
    memset(r, 0, sizeof *r);
    if (dnnl_memory_desc_equal(from, to)) return 0;
    dnnl_primitive_desc_t pd;
    if (ok(dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, NULL), "reorder", e))
        return -1;
    static const int args[] = {DNNL_ARG_FROM, DNNL_ARG_TO};
    int rc = prim_make(&r->prim, pd, args, 2, e);
    dnnl_primitive_desc_destroy(pd);
    if (need_slot) r->dst = slot_take(s, dnnl_memory_desc_get_size(to), where);
    return rc;
}

/* Run r from src into dst (or into its own slot when dst is NULL); returns where the data now
 * is: src itself when r is an identity. */
static const void *reorder_run(Reorder *r, const void *src, void *dst, void *aux, void *ws) {
    if (!r->prim.p) return src;
    if (!dst) dst = slot_ptr(r->dst, aux, ws);
    prim_set(&r->prim, DNNL_ARG_FROM, src);
    prim_set(&r->prim, DNNL_ARG_TO, dst);
    prim_run(&r->prim);
    return dst;
}

static const dnnl_memory_desc_t *pd_md(dnnl_primitive_desc_t pd, dnnl_query_t q) {
    return dnnl_primitive_desc_query_md(pd, q, 0);
}

static void impl_append(ConvPlan *p, const char *pass, dnnl_primitive_desc_t pd) {
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    size_t n = strlen(p->impl);
    snprintf(p->impl + n, sizeof p->impl - n, "%s%s %s", n ? ", " : "", pass, impl);
}

static dnnl_primitive_attr_t attr_make(Activation act) {
    dnnl_primitive_attr_t attr;
    dnnl_primitive_attr_create(&attr);
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (act == ACT_RELU || act == ACT_LEAKY || act == ACT_SIGMOID) {
        dnnl_post_ops_t po;
        dnnl_post_ops_create(&po);
        dnnl_post_ops_append_eltwise(po, 1.0f,
                                     act == ACT_SIGMOID ? dnnl_eltwise_logistic : dnnl_eltwise_relu,
                                     act == ACT_LEAKY ? LEAKY_SLOPE : 0.0f, 0.0f);
        dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_post_ops_destroy(po);
    }
    return attr;
}

static void dnnl_conv_free(ConvPlan *p) {
    Dnnl *s = p->state;
    if (!s) return;
    Prim *ps[] = {&s->fwd,         &s->bwd_d,      &s->bwd_w,       &s->src_f.prim,
                  &s->w_f.prim,    &s->dst_f.prim, &s->w_d.prim,    &s->ddst_d.prim,
                  &s->dsrc_d.prim, &s->src_w.prim, &s->ddst_w.prim, &s->dw_w.prim};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) prim_free(ps[i]);
    free(s);
    p->state = NULL;
    engine_release();
}

/* Carve every buffer of the three passes out of aux and ws, and build the reorders between the
 * model's layouts and the primitives'. 0, or -1 with e set. */
static int dnnl_conv_buffers(ConvPlan *p, Dnnl *s, dnnl_primitive_desc_t fpd,
                             dnnl_primitive_desc_t dpd, dnnl_primitive_desc_t wpd, Err *e) {
    const WinGeom *g = &p->d.g;
    /* ws: the scratchpad (every pass uses it), then each pass's buffers in a region of its own */
    size_t sp = scratch_bytes(fpd), sd = scratch_bytes(dpd), sw = scratch_bytes(wpd);
    s->scratch = slot_take(s, sp > sd ? (sp > sw ? sp : sw) : (sd > sw ? sd : sw), WS_FWD);
    const dnnl_memory_desc_t *ddst_md = pd_md(dpd, dnnl_query_diff_dst_md);
    s->ddst_shared = dnnl_memory_desc_equal(ddst_md, pd_md(wpd, dnnl_query_diff_dst_md)) &&
                     !dnnl_memory_desc_equal(ddst_md, &s->out);
    size_t fwd_top = s->ws_top[WS_FWD];
    if (s->ddst_shared) s->ddst_common = slot_take(s, dnnl_memory_desc_get_size(ddst_md), WS_FWD);
    s->ws_top[WS_BWD_DATA] = s->ws_top[WS_BWD_WEIGHTS] = s->ws_top[WS_FWD];
    s->ws_top[WS_FWD] = fwd_top; /* the forward's buffers may overlap ddst_common */
    /* aux: the forward's weights and input as it wants them (backward-weights reuses the input) */
    if (reorder_make(s, &s->w_f, &s->w, pd_md(fpd, dnnl_query_weights_md), IN_AUX, 1, e) ||
        reorder_make(s, &s->src_f, &s->in, pd_md(fpd, dnnl_query_src_md), IN_AUX, 1, e))
        return -1;
    s->src_w_uses_fwd = dnnl_memory_desc_equal(pd_md(fpd, dnnl_query_src_md),
                                               pd_md(wpd, dnnl_query_src_md));
    /* backward-weights reads the forward's reordered copy: the layer need not keep `in` for it */
    p->keeps_input = s->src_w_uses_fwd && s->src_f.prim.p;
    if (reorder_make(s, &s->dst_f, pd_md(fpd, dnnl_query_dst_md), &s->out, WS_FWD, 0, e) ||
        reorder_make(s, &s->w_d, &s->w, pd_md(dpd, dnnl_query_weights_md), WS_BWD_DATA, 1, e) ||
        reorder_make(s, &s->ddst_d, &s->out, pd_md(dpd, dnnl_query_diff_dst_md), WS_BWD_DATA,
                     !s->ddst_shared, e) ||
        reorder_make(s, &s->dsrc_d, pd_md(dpd, dnnl_query_diff_src_md), &s->in, WS_BWD_DATA, 0,
                     e) ||
        (!s->src_w_uses_fwd &&
         reorder_make(s, &s->src_w, &s->in, pd_md(wpd, dnnl_query_src_md), WS_BWD_WEIGHTS, 1, e)) ||
        reorder_make(s, &s->ddst_w, &s->out, pd_md(wpd, dnnl_query_diff_dst_md), WS_BWD_WEIGHTS,
                     !s->ddst_shared, e) ||
        reorder_make(s, &s->dw_w, pd_md(wpd, dnnl_query_diff_weights_md), &s->w, WS_BWD_WEIGHTS, 0,
                     e))
        return -1;
    if (s->ddst_shared) s->ddst_d.dst = s->ddst_w.dst = s->ddst_common;
    /* outputs that need a reorder afterwards are first written to a buffer of their pass */
    size_t fdst = s->dst_f.prim.p ? dnnl_memory_desc_get_size(pd_md(fpd, dnnl_query_dst_md)) : 0;
    size_t dsrc = s->dsrc_d.prim.p ? dnnl_memory_desc_get_size(pd_md(dpd, dnnl_query_diff_src_md))
                                   : 0;
    size_t dwb = dnnl_memory_desc_get_size(pd_md(wpd, dnnl_query_diff_weights_md));
    s->dst_f.dst = slot_take(s, fdst, WS_FWD);
    s->dsrc_d.dst = slot_take(s, dsrc, WS_BWD_DATA);
    s->dw_w.dst = slot_take(s, dwb, WS_BWD_WEIGHTS); /* the gradient in the primitive's layout */
    s->dw_plain = slot_take(s, dnnl_memory_desc_get_size(&s->w), WS_BWD_WEIGHTS);
    s->db = slot_take(s, (size_t)g->OC * sizeof(float), WS_BWD_WEIGHTS);
    return 0;
}

/* The three primitives and their reorders; -1 (e set) when oneDNN has no implementation. */
static int dnnl_conv_build(ConvPlan *p, Dnnl *s, dnnl_alg_kind_t alg, Err *e) {
    const WinGeom *g = &p->d.g;
    const dnnl_dims_t src_dims = {g->N, g->C, g->H, g->W}, w_dims = {g->OC, g->C, g->KH, g->KW},
                      b_dims = {g->OC}, dst_dims = {g->N, g->OC, g->OH, g->OW},
                      strides = {g->SH, g->SW}, pad_l = {g->PT, g->PL};
    /* bottom/right padding as oneDNN counts it; Keras's valid strides may leave input unread */
    int pb = (g->OH - 1) * g->SH + g->KH - g->H - g->PT,
        pr = (g->OW - 1) * g->SW + g->KW - g->W - g->PL;
    const dnnl_dims_t pad_r = {pb > 0 ? pb : 0, pr > 0 ? pr : 0};
    /* what the primitives read is bf16 under ConvDesc.bf16; what they write stays f32 */
    const dnnl_data_type_t rd = p->d.bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t any_src, any_w, any_dst, any_dsrc, any_dw, any_ddst;
    dnnl_memory_desc_init_by_tag(&s->in, 4, src_dims, dnnl_f32,
                                 p->d.in_fmt == FMT_BLK16 ? dnnl_nChw16c : dnnl_nhwc);
    const int nhwc = p->out_fmt == FMT_NHWC; /* then the primitives read and write NHWC too */
    dnnl_memory_desc_init_by_tag(&s->out, 4, dst_dims, dnnl_f32, nhwc ? dnnl_nhwc : dnnl_nChw16c);
    dnnl_memory_desc_init_by_tag(&s->w, 4, w_dims, dnnl_f32, dnnl_hwio);
    dnnl_memory_desc_init_by_tag(&s->bias, 1, b_dims, dnnl_f32, dnnl_x);
    const dnnl_format_tag_t act_tag = nhwc ? dnnl_nhwc : dnnl_format_tag_any;
    dnnl_memory_desc_init_by_tag(&any_src, 4, src_dims, rd, act_tag);
    dnnl_memory_desc_init_by_tag(&any_dsrc, 4, src_dims, dnnl_f32, act_tag);
    dnnl_memory_desc_init_by_tag(&any_w, 4, w_dims, rd, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&any_dw, 4, w_dims, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&any_dst, 4, dst_dims, dnnl_f32, act_tag);
    dnnl_memory_desc_init_by_tag(&any_ddst, 4, dst_dims, rd, act_tag);
    const dnnl_memory_desc_t *bias = p->d.has_bias ? &s->bias : NULL;

    dnnl_convolution_desc_t fd, dd, wd;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_primitive_attr_t fattr = attr_make(p->d.act), battr = attr_make(ACT_LINEAR);
    int rc = -1;
    if (ok(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &any_src, &any_w,
                                              bias, &any_dst, strides, pad_l, pad_r),
           "forward desc", e) ||
        dnnl_primitive_desc_create(&fpd, &fd, fattr, engine, NULL) != dnnl_success ||
        ok(dnnl_convolution_backward_data_desc_init(&dd, alg, &any_dsrc, &any_w, &any_ddst, strides,
                                                    pad_l, pad_r),
           "backward-data desc", e) ||
        dnnl_primitive_desc_create(&dpd, &dd, battr, engine, fpd) != dnnl_success ||
        ok(dnnl_convolution_backward_weights_desc_init(&wd, alg, &any_src, &any_dw, bias, &any_ddst,
                                                       strides, pad_l, pad_r),
           "backward-weights desc", e) ||
        dnnl_primitive_desc_create(&wpd, &wd, battr, engine, fpd) != dnnl_success) {
        if (!e->msg[0])
            err_set(e, "oneDNN has no %s%s implementation for this convolution",
                    alg == dnnl_convolution_winograd ? "Winograd" : "direct",
                    p->d.bf16 ? " bfloat16" : "");
        goto out;
    }
    static const int fargs[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_SCRATCHPAD,
                                DNNL_ARG_BIAS};
    static const int dargs[] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC,
                                DNNL_ARG_SCRATCHPAD};
    static const int wargs[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS,
                                DNNL_ARG_SCRATCHPAD, DNNL_ARG_DIFF_BIAS};
    impl_append(p, "fwd", fpd);
    impl_append(p, "bwd_d", dpd);
    impl_append(p, "bwd_w", wpd);
    /* bfloat16 only on oneDNN's bf16 kernels, never its reference loops (an emulation far
     * slower than float32): the layer then plans float32. Checked on the descriptors, before
     * any primitive is generated. */
    if (p->d.bf16 && strstr(p->impl, "ref")) {
        err_set(e, "oneDNN has only reference bfloat16 kernels for this convolution (%s)", p->impl);
        goto out;
    }
    if (prim_make(&s->fwd, fpd, fargs, bias ? 5 : 4, e) || prim_make(&s->bwd_d, dpd, dargs, 4, e) ||
        prim_make(&s->bwd_w, wpd, wargs, bias ? 5 : 4, e))
        goto out;
    if (dnnl_conv_buffers(p, s, fpd, dpd, wpd, e)) goto out;
    rc = 0;
out:
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    dnnl_primitive_attr_destroy(fattr);
    dnnl_primitive_attr_destroy(battr);
    return rc;
}

static int dnnl_conv_plan(ConvPlan *p, dnnl_alg_kind_t alg, Err *e) {
    if (engine_acquire(e)) return -1;
    Dnnl *s = xcalloc(1, sizeof *s);
    p->state = s;
    /* nChw16c, except a 1x1 convolution whose output is read as NHWC: oneDNN's jit_1x1 kernels
     * run NHWC in and out, which saves the reorders both ways (forward and gradient) and the
     * copies. (Its NHWC kernels for larger windows were far slower here: VGG16's 3x3 layers.) */
    const WinGeom *g = &p->d.g;
    p->out_fmt = (p->d.out_read_as_nhwc && g->KH == 1 && g->KW == 1 &&
                  alg == dnnl_convolution_direct) ||
                         p->d.bf16 == 2 /* channels-last asked (auto's candidate) */
                     ? FMT_NHWC
                     : FMT_BLK16;
    if (p->out_fmt == FMT_NHWC) p->d.in_fmt = FMT_NHWC; /* the NHWC copy, not a reorder in aux */
    p->full_batch = 1;
    if (dnnl_conv_build(p, s, alg, e)) {
        dnnl_conv_free(p);
        return -1;
    }
    p->aux_bytes = s->aux_top;
    p->ws_bytes = 0;
    for (int i = 0; i < N_WS_PASSES; i++)
        if (s->ws_top[i] > p->ws_bytes) p->ws_bytes = s->ws_top[i];
    return 0;
}

static int direct_plan(ConvPlan *p, Err *e) {
    return dnnl_conv_plan(p, dnnl_convolution_direct, e);
}
/* oneDNN 2.x has f32 Winograd kernels for AVX-512 only (avx512_core and up); elsewhere it refuses
 * every shape, and saying so beats "no implementation for this convolution" (conv_plan_init
 * asks before planning). */
static const char *winograd_unsupported(void) {
    static char why[160];
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if ((isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core) return NULL;
    snprintf(why, sizeof why,
             "oneDNN's Winograd needs an AVX-512 CPU (avx512_core); oneDNN runs %s here",
             conv_dnnl_isa());
    return why;
}

static int winograd_plan(ConvPlan *p, Err *e) {
    return dnnl_conv_plan(p, dnnl_convolution_winograd, e);
}

/* ---- the passes ---- */

static void dnnl_conv_forward(ConvPlan *p, float *out, const float *in, const float *w,
                              const float *b, void *aux, void *ws, int N) {
    Dnnl *s = p->state;
    s->ddst_ready = 0;
    const void *src = reorder_run(&s->src_f, in, NULL, aux, ws);
    const void *wf = reorder_run(&s->w_f, w, NULL, aux, ws);
    void *dst = s->dst_f.prim.p ? slot_ptr(s->dst_f.dst, aux, ws) : out;
    prim_set(&s->fwd, DNNL_ARG_SRC, src);
    prim_set(&s->fwd, DNNL_ARG_WEIGHTS, wf);
    prim_set(&s->fwd, DNNL_ARG_BIAS, b);
    prim_set(&s->fwd, DNNL_ARG_DST, dst);
    prim_set(&s->fwd, DNNL_ARG_SCRATCHPAD, slot_ptr(s->scratch, aux, ws));
    prim_run(&s->fwd);
    reorder_run(&s->dst_f, dst, out, aux, ws);
}

static void dnnl_conv_backward_weights(ConvPlan *p, float *dw, float *db, const float *dout,
                                       const float *in, void *aux, void *ws, int N) {
    Dnnl *s = p->state;
    if (!dw && !db) return;
    const void *src = s->src_w_uses_fwd ? (s->src_f.prim.p ? slot_ptr(s->src_f.dst, aux, ws) : in)
                                        : reorder_run(&s->src_w, in, NULL, aux, ws);
    const void *ddst = reorder_run(&s->ddst_w, dout, NULL, aux, ws);
    s->ddst_ready = s->ddst_shared;
    float *dwp = slot_ptr(s->dw_w.dst, aux, ws), *dbp = slot_ptr(s->db, aux, ws);
    prim_set(&s->bwd_w, DNNL_ARG_SRC, src);
    prim_set(&s->bwd_w, DNNL_ARG_DIFF_DST, ddst);
    prim_set(&s->bwd_w, DNNL_ARG_DIFF_WEIGHTS, dwp);
    prim_set(&s->bwd_w, DNNL_ARG_DIFF_BIAS, dbp);
    prim_set(&s->bwd_w, DNNL_ARG_SCRATCHPAD, slot_ptr(s->scratch, aux, ws));
    prim_run(&s->bwd_w);
    /* the primitive overwrites; the interface adds (gradients of several batches may sum) */
    const float *plain = reorder_run(&s->dw_w, dwp, slot_ptr(s->dw_plain, aux, ws), aux, ws);
    const WinGeom *g = &p->d.g;
    const size_t nw = conv_kernel_floats(g);
    if (dw) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < nw; i++) dw[i] += plain[i];
    }
    if (db)
        for (int i = 0; i < g->OC; i++) db[i] += dbp[i];
}

static void dnnl_conv_backward_data(ConvPlan *p, float *din, const float *dout, const float *w,
                                    void *aux, void *ws, int N) {
    Dnnl *s = p->state;
    const void *wd = reorder_run(&s->w_d, w, NULL, aux, ws);
    const void *ddst = s->ddst_ready ? slot_ptr(s->ddst_common, aux, ws)
                                     : reorder_run(&s->ddst_d, dout, NULL, aux, ws);
    s->ddst_ready = 0;
    void *dsrc = s->dsrc_d.prim.p ? slot_ptr(s->dsrc_d.dst, aux, ws) : din;
    prim_set(&s->bwd_d, DNNL_ARG_DIFF_DST, ddst);
    prim_set(&s->bwd_d, DNNL_ARG_WEIGHTS, wd);
    prim_set(&s->bwd_d, DNNL_ARG_DIFF_SRC, dsrc);
    prim_set(&s->bwd_d, DNNL_ARG_SCRATCHPAD, slot_ptr(s->scratch, aux, ws));
    prim_run(&s->bwd_d);
    reorder_run(&s->dsrc_d, dsrc, din, aux, ws);
}

static const ConvAlgo conv_algo_direct = {"direct",
                                          direct_plan,
                                          dnnl_conv_free,
                                          dnnl_conv_forward,
                                          dnnl_conv_backward_weights,
                                          dnnl_conv_backward_data,
                                          NULL,
                                          1};
static const ConvAlgo conv_algo_winograd = {"winograd",
                                            winograd_plan,
                                            dnnl_conv_free,
                                            dnnl_conv_forward,
                                            dnnl_conv_backward_weights,
                                            dnnl_conv_backward_data,
                                            winograd_unsupported,
                                            0};

const ConvAlgo *conv_dnnl_algo(ConvAlgoId id) {
    return id == CONV_ALGO_DIRECT     ? &conv_algo_direct
           : id == CONV_ALGO_WINOGRAD ? &conv_algo_winograd
                                      : NULL;
}
