/* conv_dnnl_none.c: what a build without oneDNN (ONEDNN=0) has instead of conv_dnnl.c: no
 * direct or winograd algorithm, so convolutions run im2col + OpenBLAS. */
#include "conv_algo.h"

const char *conv_dnnl_isa(void) { return "none"; }

const char *conv_dnnl_bf16_unsupported(void) {
    return "this build has no oneDNN (make ONEDNN=1 with libdnnl-dev), so no bfloat16 kernels";
}

const ConvAlgo *conv_dnnl_algo(ConvAlgoId id) {
    (void)id;
    return NULL;
}
