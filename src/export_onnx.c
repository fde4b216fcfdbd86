#include "export.h"
int export_onnx(const Model *m, const Job *job, const char *path, Err *e) {
    err_set(e, "%s: ONNX export not yet", path);
    return -1;
}
