/* predict.c: classifying image files with a trained model: decoding, batching, probabilities,
 * class names and the text / JSON printout (see predict.h). */
#include "predict.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "images.h"
#include "loss.h"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted non-hidden sub-directories of dir, as images_load_dir takes the classes; NULL when
 * dir cannot be listed. */
static char **class_folders(const char *dir, int *count) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    int n = 0, cap = 16;
    char **v = xmalloc((size_t)cap * sizeof *v);
    struct dirent *de;
    size_t dlen = strlen(dir);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue; /* hidden, and . / .. */
        size_t plen = dlen + strlen(de->d_name) + 2;
        char *p = xmalloc(plen);
        snprintf(p, plen, "%s/%s", dir, de->d_name);
        struct stat st;
        int is_dir = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
        free(p);
        if (!is_dir) continue;
        if (n == cap) {
            char **nv = xmalloc((size_t)cap * 2 * sizeof *nv);
            memcpy(nv, v, (size_t)n * sizeof *v);
            free(v);
            v = nv;
            cap *= 2;
        }
        v[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    *count = n;
    return v;
}

void predict_free_class_names(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

char **predict_class_names(const Model *m, const Job *job, int *n_classes, FILE *err) {
    int outputs = model_output_shape(m).c;
    int k = outputs == 1 ? 2 : outputs; /* a 1-unit sigmoid output still has two classes */
    if (job && job->data.class_names) {
        /* one name per line, in output order; as Darknet does with imagenet.shortnames.list,
         * the first K lines name the K outputs and later lines are ignored */
        Err oe = {0};
        FILE *f = file_open_regular(job->data.class_names, "class names file", NULL, &oe);
        char **v = xcalloc((size_t)k, sizeof *v);
        int n = 0;
        char *line = NULL;
        size_t cap = 0;
        /* whole lines, however long: a cut one would shift every name after it */
        while (f && n < k && getline(&line, &cap, f) >= 0) {
            line[strcspn(line, "\r\n")] = 0;
            v[n++] = xstrdup(line);
        }
        free(line);
        if (f) fclose(f);
        if (n == k) {
            *n_classes = k;
            return v;
        }
        if (err)
            fprintf(err, "convnet-dist: note: %s: %s; classes are shown as numbers\n",
                    job->data.class_names, f ? "fewer lines than the model has classes" : oe.msg);
        predict_free_class_names(v, n);
    } else if (job && job->data.format == DATA_IMAGES && job->data.train_dir) {
        int nf = 0;
        char **f = class_folders(job->data.train_dir, &nf);
        if (f && nf == k) {
            *n_classes = k;
            return f;
        }
        if (err) {
            if (!f)
                fprintf(err,
                        "convnet-dist: note: cannot list %s (%s): classes are shown as "
                        "numbers\n",
                        job->data.train_dir, strerror(errno));
            else
                fprintf(err,
                        "convnet-dist: note: %s has %d class folders but the model has %d "
                        "classes: classes are shown as numbers\n",
                        job->data.train_dir, nf, k);
        }
        predict_free_class_names(f, nf);
    }
    char **v = xmalloc((size_t)k * sizeof *v);
    for (int i = 0; i < k; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        v[i] = xstrdup(num);
    }
    *n_classes = k;
    return v;
}

/* A JSON string literal (quotes, backslashes and control characters escaped). */
static void json_str(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* Class indices ordered by probability, best first (ties: lower index first). */
static void rank_classes(const float *p, int k, int *order) {
    for (int i = 0; i < k; i++) order[i] = i;
    for (int i = 1; i < k; i++) { /* insertion sort: stable, k is small */
        int v = order[i], j = i;
        while (j > 0 && p[order[j - 1]] < p[v]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
}

static void print_result(FILE *out, const char *path, const float *prob, int k, char **names,
                         int top, int json, int *order) {
    rank_classes(prob, k, order);
    int shown = top < 1 ? 1 : top > k ? k : top;
    if (json) {
        fprintf(out, "{\"path\":");
        json_str(out, path);
        fprintf(out, ",\"class\":");
        json_str(out, names[order[0]]);
        fprintf(out, ",\"probability\":%.6g,\"top\":[", prob[order[0]]);
        for (int r = 0; r < shown; r++) {
            fprintf(out, "%s{\"class\":", r ? "," : "");
            json_str(out, names[order[r]]);
            fprintf(out, ",\"probability\":%.6g}", prob[order[r]]);
        }
        fprintf(out, "]}\n");
        return;
    }
    fprintf(out, "%s: %s (p=%.4f)\n", path, names[order[0]], prob[order[0]]);
    if (top > 1)
        for (int r = 0; r < shown; r++)
            fprintf(out, "  %d. %s (p=%.4f)\n", r + 1, names[order[r]], prob[order[r]]);
}

int predict_images(Model *m, const Job *job, char *const *paths, int n, int top, int json,
                   FILE *out, FILE *err, Err *e) {
    const Shape in = m->input, os = model_output_shape(m);
    if (n < 0) {
        err_set(e, "predict: negative image count %d", n);
        return -1;
    }
    if (in.flat || (in.c != 1 && in.c != 3) || in.h < 1 || in.w < 1) {
        err_set(e, "predict: the model's input %dx%dx%d is not an image (1 or 3 channels)", in.h,
                in.w, in.c);
        return -1;
    }
    if (!os.flat || os.c < 1 || m->max_batch < 1) {
        err_set(e, "predict: the model's output (%dx%dx%d) is not a flat vector of class scores",
                os.h, os.w, os.c);
        return -1;
    }
    const int K = os.c, B = m->max_batch;
    const size_t insz = shape_size(in);
    const float scale = job ? job->data.scale : 1.0f, offset = job ? job->data.offset : 0.0f;
    const int decode_full = job ? job->data.decode_full : 0; /* as training decoded */
    int n_names = 0;
    char **names = predict_class_names(m, job, &n_names, err);
    uint8_t *pix = xmalloc(insz);
    int64_t *ids = xmalloc((size_t)B * sizeof *ids);
    int *slot = xmalloc(((size_t)n + 1) * sizeof *slot); /* batch row of path i, -1 = failed */
    char **why = xcalloc((size_t)n + 1, sizeof *why);    /* failure message of path i */
    int *order = xmalloc((size_t)n_names * sizeof *order);
    float prob2[2];
    int bad = 0, first_bad = -1;
    PassCtx pc = {.training = 0, .seed = job ? job->train.seed : 0, .epoch = 0, .sample_ids = ids};

    for (int start = 0; start < n;) {
        /* a window of consecutive paths holding up to B readable images */
        int end = start, rows = 0;
        while (end < n && rows < B) {
            Err ie = {0};
            if (image_load_file(paths[end], in.h, in.w, in.c, decode_full, pix, &ie) == 0) {
                float *x = model_input(m) + (size_t)rows * insz;
                for (size_t i = 0; i < insz; i++) x[i] = (float)pix[i] * scale + offset;
                ids[rows] = end;
                slot[end] = rows++;
            } else {
                slot[end] = -1;
                why[end] = xstrdup(ie.msg);
                if (err) fprintf(err, "convnet-dist: %s\n", ie.msg);
                if (first_bad < 0) first_bad = end;
                bad++;
            }
            end++;
        }
        float *logits = NULL;
        if (rows) {
            logits = model_forward(m, rows, &pc);
            loss_probabilities(logits, rows, K);
        }
        for (int i = start; i < end; i++) {
            if (slot[i] < 0) {
                if (json) {
                    fprintf(out, "{\"path\":");
                    json_str(out, paths[i]);
                    fprintf(out, ",\"error\":");
                    json_str(out, why[i]);
                    fprintf(out, "}\n");
                }
                continue;
            }
            const float *p = logits + (size_t)slot[i] * K;
            if (K == 1) { /* sigmoid: p is class 1's probability */
                prob2[0] = 1.0f - p[0];
                prob2[1] = p[0];
                p = prob2;
            }
            print_result(out, paths[i], p, n_names, names, top, json, order);
        }
        start = end;
    }
    fflush(out);
    if (bad)
        err_set(e, "%d of %d images could not be classified (first: %s)", bad, n, why[first_bad]);
    for (int i = 0; i < n; i++) free(why[i]);
    free(why);
    free(slot);
    free(order);
    free(ids);
    free(pix);
    predict_free_class_names(names, n_names);
    return bad;
}
