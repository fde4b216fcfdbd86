/* conv_algo.c: the registry of convolution algorithms behind conv_algo.h: im2col always, oneDNN's
 * direct and winograd where the build has oneDNN (conv_dnnl.c, or conv_dnnl_none.c without). */
#include "conv_algo.h"

const ConvAlgo *conv_algo_get(ConvAlgoId id) {
    return id == CONV_ALGO_IM2COL ? &conv_algo_im2col : conv_dnnl_algo(id);
}

const char *conv_algo_unsupported(ConvAlgoId id) {
    const ConvAlgo *a = conv_algo_get(id);
    if (!a) return "it needs oneDNN, and this build has none (make ONEDNN=1 with libdnnl-dev)";
    return a->unsupported ? a->unsupported() : NULL;
}
