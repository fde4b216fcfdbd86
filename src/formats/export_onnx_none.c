/* export_onnx_none.c: export_onnx in a build without ONNX (ONNX=0, no libonnx-dev / protobuf-c):
 * it refuses, saying how to get it. The Makefile compiles this instead of export_onnx.c. */
#include "export.h"

int export_onnx(const Model *m, const Job *job, const char *path, Err *e) {
    (void)m, (void)job;
    err_set(e,
            "%s: cannot write ONNX: built with ONNX=0 (apt-get install libonnx-dev "
            "protobuf-c-compiler libprotobuf-c-dev, then rebuild without ONNX=0)",
            path);
    return -1;
}
