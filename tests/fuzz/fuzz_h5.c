/* fuzz_h5.c: libFuzzer target for Keras .h5 weights (keras_h5.c) through HDF5's in-memory
 * file image (the core driver): layer_names / weight_names attributes in every string layout,
 * groups, datasets, shapes against the job's layers, non-finite values.
 *
 * Input: the HDF5 file image. The model: conv2d "conv" (2 filters, 1x1, bias), flatten, dense
 * "dense" (2 units), on 2x2x1 inputs, as gen_seeds.c writes its seed file.
 */
#include <hdf5.h>

#include "fuzz_util.h"
#include "keras_h5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Job j;
    static Model m;
    static int ready;
    if (!ready) {
        if (fuzz_model("[conv2d]\nname = conv\nfilters = 2\nkernel_size = 1\n[flatten]\n"
                       "[dense]\nname = dense\nunits = 2\nactivation = softmax\n",
                       (Shape){2, 2, 1, 0}, 1 << 28, &j, &m))
            __builtin_trap();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        ready = 1;
    }
    Err e = {0};
    keras_h5_load_weights_image(data, size, "fuzz.h5", &m, &e);
    /* every handle the loader opened is closed again, whatever the file held */
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) __builtin_trap();
    return 0;
}
