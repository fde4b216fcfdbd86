/* darknet.c: importing Darknet .cfg/.weights as layers and parameters (see darknet.h). */
#include "darknet.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"


static int cfg_int(IniFile *cfg, Section *s, const char *key, int def, int lo, int hi, int *out,
                   Err *e) {
    return sec_get_int(cfg, s, key, 0, def, lo, hi, out, e);
}

/* One cfg section into one layer; -1 on error, 0 done, 1 when the section adds no layer. */
static int cfg_layer(IniFile *cfg, Section *s, Layer *L, int trainable, int *has_bn, Err *e) {
    memset(L, 0, sizeof *L);
    L->line = s->line;
    L->trainable = 0;
    *has_bn = 0;
    if (!strcmp(s->name, "convolutional")) {
        int size, stride, pad, filters;
        static const char *const acts[] = {"linear", "leaky", "relu", NULL};
        int act;
        if (cfg_int(cfg, s, "filters", 1, 1, 1 << 16, &filters, e) ||
            cfg_int(cfg, s, "size", 1, 1, 64, &size, e) ||
            cfg_int(cfg, s, "stride", 1, 1, 64, &stride, e) ||
            cfg_int(cfg, s, "pad", 0, 0, 1, &pad, e) ||
            cfg_int(cfg, s, "batch_normalize", 0, 0, 1, has_bn, e) ||
            sec_get_enum(cfg, s, "activation", 0, 1, acts, &act, e))
            return -1;
        if (pad && size % 2 == 0) {
            err_set(e, "%s:%d: padded even-sized kernels are not supported",
                    ini_section_file(cfg, s), s->line);
            return -1;
        }
        L->kind = LAYER_CONV2D;
        L->units = filters;
        L->kh = L->kw = size;
        L->sh = L->sw = stride;
        /* Darknet pads size/2 on every side: with an odd kernel that is "same" at stride 1 */
        L->padding = pad && size > 1 ? PAD_SAME : PAD_VALID;
        L->act = act == 0 ? ACT_LINEAR : act == 1 ? ACT_LEAKY : ACT_RELU;
        L->use_bias = 1;
        L->trainable = trainable;
        return 0;
    }
    if (!strcmp(s->name, "maxpool")) {
        int size, stride;
        if (cfg_int(cfg, s, "size", 2, 1, 64, &size, e) ||
            cfg_int(cfg, s, "stride", size, 1, 64, &stride, e))
            return -1;
        L->kind = LAYER_MAXPOOL2D;
        L->kh = L->kw = size;
        L->sh = L->sw = stride;
        /* Darknet pads size-1 pixels, none before: TF's "same" for size = stride */
        L->padding = PAD_SAME;
        return 0;
    }
    if (!strcmp(s->name, "avgpool")) {
        L->kind = LAYER_GLOBAL_AVGPOOL;
        return 0;
    }
    if (!strcmp(s->name, "softmax") || !strcmp(s->name, "cost")) {
        /* nothing to import: a softmax becomes the previous layer's (fused) activation */
        for (int k = 0; k < s->n_kv; k++) s->kv[k].used = 1;
        return !strcmp(s->name, "softmax") ? 2 : 1;
    }
    err_set(e,
            "%s:%d: Darknet layer [%s] is not supported (convolutional, maxpool, avgpool, softmax)",
            ini_section_file(cfg, s), s->line, s->name);
    return -1;
}

int darknet_expand(IniFile *ini, Section *s, const char *root, Layer *layers, int *n_layers,
                   int capacity, DarknetImport *imp, Err *e) {
    memset(imp, 0, sizeof *imp);
    const char *cfg_key = sec_get_str(ini, s, "cfg", 1, NULL, e);
    const char *weights_key = cfg_key ? sec_get_str(ini, s, "weights", 1, NULL, e) : NULL;
    int upto, trainable;
    if (!weights_key || sec_get_int(ini, s, "layers", 0, 1 << 20, 1, 1 << 20, &upto, e) ||
        sec_get_bool(ini, s, "trainable", 0, &trainable, e) || sec_check_unused(ini, s, e))
        return -1;
    char *cfg_path = path_join(root, cfg_key);
    imp->weights = path_join(root, weights_key);
    IniFile cfg;
    int rc = ini_parse_file(&cfg, cfg_path, e);
    free(cfg_path);
    if (rc) return -1;
    imp->first = *n_layers;
    imp->has_bn = xcalloc((size_t)cfg.n_sec + 1, sizeof *imp->has_bn);
    imp->is_conv = xcalloc((size_t)cfg.n_sec + 1, sizeof *imp->is_conv);
    int taken = 0, i;
    for (i = 0; i < cfg.n_sec && taken < upto && rc == 0; i++) {
        Section *c = &cfg.sec[i];
        if (!strcmp(c->name, "net")) continue;
        if (*n_layers >= capacity) {
            err_set(e, "%s: too many layers", cfg.path);
            rc = -1;
            break;
        }
        Layer *L = &layers[*n_layers];
        int bn = 0, r = cfg_layer(&cfg, c, L, trainable, &bn, e);
        if (r < 0) {
            rc = -1;
            break;
        }
        taken++;
        if (r == 2 && *n_layers > imp->first) layers[*n_layers - 1].act = ACT_SOFTMAX;
        if (r > 0) continue;
        /* Keras-style names under a dn_ prefix, apart from the job's own layers */
        int same = 0;
        for (int k = imp->first; k < *n_layers; k++) same += layers[k].kind == L->kind;
        const char *base = layer_ops[L->kind]->section;
        if (same)
            snprintf(L->name, sizeof L->name, "dn_%s_%d", base, same);
        else
            snprintf(L->name, sizeof L->name, "dn_%s", base);
        L->file = ini_section_file(ini, s);
        L->line = s->line;
        imp->has_bn[imp->count] = bn;
        imp->is_conv[imp->count] = L->kind == LAYER_CONV2D;
        imp->count++;
        (*n_layers)++;
    }
    imp->complete = i == cfg.n_sec;
    ini_free(&cfg);
    return rc;
}

/* The 12-byte version header; returns the size of the images-seen counter after it (4 or 8
 * bytes), or -1 with e set. */
static long read_header(const char *path, FILE *f, long long fsize, Err *e) {
    int32_t head[3];
    if (fread(head, 4, 3, f) != 3) {
        err_set(e, "%s: truncated Darknet header (%lld bytes, the version alone takes 12)", path,
                fsize);
        return -1;
    }
    /* Darknet's own test: version major*10 + minor >= 2 stores the images-seen counter in 64
     * bits. Only the versions Darknet has written (0.x, 1.x) are read; the test comes after
     * the range check, so that a hostile header cannot overflow it. */
    if (head[0] < 0 || head[0] > 1 || head[1] < 0 || head[1] > 99 || head[2] < 0) {
        err_set(e,
                "%s: unknown Darknet weights version %d.%d.%d at offset 0 (this build reads "
                "0.x and 1.x; is it a Darknet .weights file?)",
                path, head[0], head[1], head[2]);
        return -1;
    }
    return head[0] * 10 + head[1] >= 2 ? 8 : 4;
}

/* One convolution's values as Darknet stores them, tmp = bias[OC], then with batch norm
 * scale[OC], mean[OC], var[OC], then the kernel [OC][C][KH][KW]: written into L's kernel
 * [KH][KW][C][OC] and bias with the batch norm folded in. */
static void fold_conv_layer(const float *tmp, int has_bn, const Layer *L, Model *m) {
    const int n = L->units, c = L->in.c, k = L->kh;
    const float *bias = tmp, *scale = tmp + n, *mean = tmp + 2 * n, *var = tmp + 3 * n;
    const float *wsrc = tmp + (has_bn ? 4 * n : n);
    float *w = m->params + L->param[0].off, *b = m->params + L->param[1].off;
    for (int o = 0; o < n; o++) {
        /* y = (conv - mean) / (sqrt(var) + 1e-6) * scale + bias  ->  conv * s + (bias - mean s) */
        double s = has_bn ? scale[o] / (sqrt((double)var[o]) + 1e-6) : 1.0;
        b[o] = (float)(bias[o] - (has_bn ? mean[o] * s : 0.0));
        for (int ci = 0; ci < c; ci++)
            for (int y = 0; y < k; y++)
                for (int x = 0; x < k; x++) /* OIHW -> HWIO */
                    w[(((size_t)y * k + x) * c + ci) * n + o] =
                        (float)(wsrc[(((size_t)o * c + ci) * k + y) * k + x] * s);
    }
}

int darknet_load_weights(const DarknetImport *imp, Model *m, Err *e) {
    long long fsize = 0;
    FILE *f = file_open_regular(imp->weights, "Darknet weights file", &fsize, e);
    if (!f) return -1;
    long seen_bytes = read_header(imp->weights, f, fsize, e);
    if (seen_bytes < 0) {
        fclose(f);
        return -1;
    }
    /* the cfg's layers declare how many values the file must hold: checked before reading */
    long long at_layer = 12 + seen_bytes;
    for (int i = 0; i < imp->count; i++) {
        if (!imp->is_conv[i]) continue;
        const Layer *L = &m->layers[imp->first + i];
        long long need = (long long)L->units * (imp->has_bn[i] ? 4 : 1) +
                         (long long)L->units * L->in.c * L->kh * L->kw;
        if (at_layer + 4 * need > fsize) {
            err_set(e,
                    "%s: truncated at offset %lld: layer %s needs %lld values, the file has "
                    "%lld bytes in all",
                    imp->weights, at_layer, L->name, need, fsize);
            fclose(f);
            return -1;
        }
        at_layer += 4 * need;
    }
    if (fseek(f, 12 + seen_bytes, SEEK_SET)) {
        err_set(e, "%s: cannot seek past the header: %s", imp->weights, strerror(errno));
        fclose(f);
        return -1;
    }
    float *tmp = NULL;
    int rc = 0;
    for (int i = 0; i < imp->count && rc == 0; i++) {
        if (!imp->is_conv[i]) continue;
        const Layer *L = &m->layers[imp->first + i];
        const int n = L->units, c = L->in.c, k = L->kh;
        const size_t nw = (size_t)n * c * k * k;
        size_t need = (size_t)n * (imp->has_bn[i] ? 4 : 1) + nw;
        float *grown = realloc(tmp, need * sizeof *tmp);
        if (!grown) die(EXIT_RUNTIME, "out of memory: %zu values of layer %s", need, L->name);
        tmp = grown;
        long at = ftell(f);
        size_t got = fread(tmp, sizeof *tmp, need, f);
        if (got != need) {
            err_set(e, "%s: truncated at offset %ld: layer %s needs %zu values, the file has %zu",
                    imp->weights, at, L->name, need, got);
            rc = -1;
            break;
        }
        size_t bad = floats_first_nonfinite(tmp, need);
        if (bad < need) {
            err_set(e, "%s: non-finite value (%g) at offset %ld, in layer %s's %s", imp->weights,
                    (double)tmp[bad], at + (long)(4 * bad), L->name,
                    bad < (size_t)n                              ? "bias"
                    : bad < (size_t)n * (imp->has_bn[i] ? 4 : 1) ? "batch-norm values"
                                                                 : "kernel");
            rc = -1;
            break;
        }
        fold_conv_layer(tmp, imp->has_bn[i], L, m);
    }
    free(tmp);
    if (rc == 0 && imp->complete) {
        long at = ftell(f);
        fseek(f, 0, SEEK_END);
        long end = ftell(f);
        if (end != at) {
            err_set(e,
                    "%s: %ld bytes left after the last layer's weights (offset %ld): the cfg does "
                    "not describe this weights file",
                    imp->weights, end - at, at);
            rc = -1;
        }
    }
    fclose(f);
    return rc;
}

void darknet_import_free(DarknetImport *imp) {
    free(imp->weights);
    free(imp->has_bn);
    free(imp->is_conv);
    memset(imp, 0, sizeof *imp);
}
