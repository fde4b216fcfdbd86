/* conv_dnnl_none.c: what a build without oneDNN (ONEDNN=0) has instead of conv_dnnl.c: no
 * direct or winograd algorithm, so convolutions run im2col + OpenBLAS. */
#include "conv_algo.h"

const char *conv_dnnl_isa(void) { return "none"; }

const ConvAlgo *conv_dnnl_algo(ConvAlgoId id) {
    (void)id;
    return NULL;
}
