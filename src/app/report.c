/* report.c: the per-epoch CSV log (append, resume truncation, reload) and the two-panel SVG
 * history chart (see report.h). */
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_FIELDS 8

/* ---- small growable text buffer ---- */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    for (;;) {
        size_t room = b->cap - b->n;
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return; /* an encoding error: nothing sensible to append */
        if (b->p && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n <= (size_t)k) cap *= 2;
        char *np = xmalloc(cap);
        if (b->n) memcpy(np, b->p, b->n);
        free(b->p);
        b->p = np;
        b->cap = cap;
    }
}

/* XML-escaped text. */
static void buf_xml(Buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': buf_printf(b, "&amp;"); break;
        case '<': buf_printf(b, "&lt;"); break;
        case '>': buf_printf(b, "&gt;"); break;
        case '"': buf_printf(b, "&quot;"); break;
        default:
            /* control characters are not allowed in XML 1.0 text */
            if ((unsigned char)*s >= 0x20 || *s == '\t') buf_printf(b, "%c", *s);
        }
    }
}

/* ---- CSV ---- */

/* The shortest %g form that reads back to the same double; non-finite as strtod reads it. */
static void fmt_num(char *out, size_t n, double v) {
    if (isnan(v)) {
        snprintf(out, n, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(out, n, v > 0 ? "inf" : "-inf");
        return;
    }
    /* %g turns to exponent form when the exponent reaches the precision: 2000 at precision 1
     * is "2e+03"; below 1e16 give it enough digits to stay positional, as Keras' logs do */
    int min_prec = 1;
    if (v != 0 && fabs(v) < 1e16) {
        int x = (int)floor(log10(fabs(v)));
        if (x + 1 > min_prec) min_prec = x + 1;
    }
    for (int prec = min_prec; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

static void format_row(char *line, size_t n, const EpochRecord *r) {
    double v[N_FIELDS - 1] = {r->accuracy, r->loss,         r->val_accuracy, r->val_loss,
                              r->lr,       r->images_per_s, r->seconds};
    int k = snprintf(line, n, "%d", r->epoch);
    for (int i = 0; i < N_FIELDS - 1; i++) {
        char num[40] = "";
        /* missing validation is an empty field, as Keras leaves absent metrics */
        if (!((i == 2 || i == 3) && isnan(v[i]))) fmt_num(num, sizeof num, v[i]);
        k += snprintf(line + k, n - (size_t)k, ",%s", num);
    }
    snprintf(line + k, n - (size_t)k, "\n");
}

/* Parse one row (without its newline) into r; 0, or -1 with why set. */
static int parse_row(const char *line, EpochRecord *r, const char **why) {
    char tmp[512];
    size_t len = strlen(line);
    if (len >= sizeof tmp) {
        *why = "line too long";
        return -1;
    }
    memcpy(tmp, line, len + 1);
    if (len && tmp[len - 1] == '\r') tmp[len - 1] = 0;
    char *field[N_FIELDS];
    int nf = 0;
    char *s = tmp;
    for (;;) {
        if (nf == N_FIELDS) {
            *why = "more than 8 fields";
            return -1;
        }
        field[nf++] = s;
        char *c = strchr(s, ',');
        if (!c) break;
        *c = 0;
        s = c + 1;
    }
    if (nf != N_FIELDS) {
        *why = "fewer than 8 fields";
        return -1;
    }
    long ep;
    if (parse_long(field[0], &ep) || ep < 0 || ep > 1000000000L) {
        *why = "epoch is not a non-negative integer";
        return -1;
    }
    double v[N_FIELDS - 1];
    for (int i = 1; i < N_FIELDS; i++) {
        if (!*field[i]) {
            v[i - 1] = NAN;
            continue;
        }
        char *end;
        v[i - 1] = strtod(field[i], &end);
        if (end == field[i] || *end) {
            *why = "a field is not a number";
            return -1;
        }
    }
    *r = (EpochRecord){(int)ep, v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
    return 0;
}

/* Length of the header line (newline included) when text starts with ours; 0 for a torn
 * prefix of it (a crash while creating the file); -1 when it is some other file. */
static long header_len(const char *text, size_t n) {
    const char *hd = CSVLOG_HEADER;
    if (n >= strlen(CSVLOG_HEADER_V1) && !strncmp(text, CSVLOG_HEADER_V1, strlen(CSVLOG_HEADER_V1)))
        hd = CSVLOG_HEADER_V1; /* the column's earlier name */
    size_t h = strlen(hd);
    if (n <= h) return strncmp(text, hd, n) == 0 ? 0 : -1;
    if (strncmp(text, hd, h) != 0) return -1;
    if (text[h] == '\n') return (long)h + 1;
    if (text[h] == '\r' && h + 1 < n && text[h + 1] == '\n') return (long)h + 2;
    return -1;
}

int csvlog_append(const char *path, const EpochRecord *r, Err *e) {
    char *text = NULL;
    size_t n = 0;
    int rr = file_read_text(path, &text, &n, e);
    if (rr < 0) return -1;
    size_t keep = 0; /* bytes of the existing file to keep */
    int need_header = 1;
    if (rr == 0 && n > 0) {
        long h = header_len(text, n);
        if (h < 0) {
            err_set(e, "%s: not an epoch log (its first line is not \"%s\"); refusing to append",
                    path, CSVLOG_HEADER);
            free(text);
            return -1;
        }
        if (h > 0) {
            need_header = 0;
            /* cut a torn last row: keep up to and including the last newline */
            keep = n;
            while (keep > 0 && text[keep - 1] != '\n') keep--;
        }
    }
    free(text);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0) {
        err_set(e, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char line[600];
    int k = 0;
    if (need_header) k = snprintf(line, sizeof line, "%s\n", CSVLOG_HEADER);
    format_row(line + k, sizeof line - (size_t)k, r);
    size_t len = strlen(line);
    int rc = 0;
    if (ftruncate(fd, (off_t)keep) != 0 || lseek(fd, (off_t)keep, SEEK_SET) < 0) {
        err_set(e, "cannot truncate %s: %s", path, strerror(errno));
        rc = -1;
    }
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t w = write(fd, line + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            err_set(e, "write to %s failed: %s", path, strerror(errno));
            rc = -1;
        } else {
            off += (size_t)w;
        }
    }
    if (rc == 0 && fsync(fd) != 0) {
        err_set(e, "cannot flush %s: %s", path, strerror(errno));
        rc = -1;
    }
    if (close(fd) != 0 && rc == 0) {
        err_set(e, "cannot close %s: %s", path, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* Walk the rows of a log: calls fn for every complete non-empty line after the header (a
 * torn last line without its newline is skipped). -1 with e set when the header is wrong or
 * fn fails. */
typedef int (*RowFn)(void *ctx, const char *line, size_t lineno, size_t len);
static int for_each_row(const char *path, char *text, size_t n, RowFn fn, void *ctx, Err *e) {
    long h = header_len(text, n);
    if (h < 0) {
        err_set(e, "%s:1: not an epoch log (the header is not \"%s\")", path, CSVLOG_HEADER);
        return -1;
    }
    if (h == 0) return 0; /* empty, or a torn header: no rows */
    size_t pos = (size_t)h, lineno = 2;
    while (pos < n) {
        char *nl = memchr(text + pos, '\n', n - pos);
        if (!nl) break; /* torn last line: a crash mid-append */
        *nl = 0;
        size_t len = (size_t)(nl - (text + pos));
        int rc = len == 0 ? 0 : fn(ctx, text + pos, lineno, len);
        *nl = '\n';
        if (rc) return -1;
        pos += len + 1;
        lineno++;
    }
    return 0;
}

typedef struct {
    const char *path;
    EpochRecord *rows;
    int n, cap;
    Err *e;
    /* truncation */
    int cut;
    Buf *out;
} RowCtx;

static int collect_row(void *vctx, const char *line, size_t lineno, size_t len) {
    RowCtx *c = vctx;
    EpochRecord r;
    const char *why = "";
    if (parse_row(line, &r, &why)) {
        err_set(c->e, "%s:%zu: %s", c->path, lineno, why);
        return -1;
    }
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        EpochRecord *nr = xmalloc((size_t)cap * sizeof *nr);
        if (c->n) memcpy(nr, c->rows, (size_t)c->n * sizeof *nr);
        free(c->rows);
        c->rows = nr;
        c->cap = cap;
    }
    c->rows[c->n++] = r;
    return 0;
}

static int keep_row(void *vctx, const char *line, size_t lineno, size_t len) {
    RowCtx *c = vctx;
    EpochRecord r;
    const char *why;
    /* an unparsable row can only be damage; dropping it is what a resume wants */
    if (parse_row(line, &r, &why) == 0 && r.epoch < c->cut)
        buf_printf(c->out, "%.*s\n", (int)len, line);
    return 0;
}

int csvlog_truncate_from(const char *path, int epoch, Err *e) {
    char *text = NULL;
    size_t n = 0;
    int rr = file_read_text(path, &text, &n, e);
    if (rr) return rr < 0 ? -1 : 0;
    Buf out = {0};
    buf_printf(&out, "%s\n", CSVLOG_HEADER);
    RowCtx c = {path, NULL, 0, 0, e, epoch, &out};
    int rc = for_each_row(path, text, n, keep_row, &c, e);
    if (rc == 0) {
        IoChunk ch = {out.p, out.n};
        rc = file_write_atomic(path, &ch, 1, e);
    }
    free(out.p);
    free(text);
    return rc;
}

int history_read_csv(const char *path, EpochRecord **rows, int *n, Err *e) {
    char *text = NULL;
    size_t len = 0;
    int rr = file_read_text(path, &text, &len, e);
    if (rr) {
        if (rr > 0) err_set(e, "cannot open %s: %s", path, strerror(ENOENT));
        return -1;
    }
    RowCtx c = {path, NULL, 0, 0, e, 0, NULL};
    int rc = for_each_row(path, text, len, collect_row, &c, e);
    free(text);
    if (rc) {
        free(c.rows);
        return -1;
    }
    *rows = c.rows;
    *n = c.n;
    return 0;
}

/* ---- SVG chart ---- */

enum { PANEL_W = 500, PANEL_H = 420, M_LEFT = 72, M_RIGHT = 22, M_TOP = 72, M_BOTTOM = 56 };
static const char *const COL_TRAIN = "#1f77b4", *const COL_VAL = "#1f77b4";

typedef struct {
    double lo, hi;      /* axis range: the data's, plus a margin as matplotlib leaves */
    double first, step; /* ticks at first, first + step, ... <= hi */
    int decimals;       /* for the tick labels */
} Axis;

/* Range of the data plus 4% each side (a flat range gets a fixed margin), and "nice" ticks
 * (1, 2, 5 x 10^k) inside it, about `want` of them; integer ticks only for epochs. */
static Axis nice_axis(double lo, double hi, int want, int integer) {
    if (!(hi > lo)) {
        double pad = fabs(lo) > 1e-12 ? fabs(lo) * 0.1 : 0.5;
        if (integer) pad = 1;
        lo -= pad;
        hi += pad;
    } else {
        double m = (hi - lo) * 0.04;
        lo -= m;
        hi += m;
    }
    double raw = (hi - lo) / want;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag, step = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    step *= mag;
    if (integer && step < 1) step = 1;
    Axis a;
    a.lo = lo;
    a.hi = hi;
    a.step = step;
    a.first = ceil(lo / step - 1e-9) * step;
    int d = (int)-floor(log10(step) + 1e-9);
    a.decimals = d > 0 ? d : 0;
    return a;
}

typedef struct {
    const char *title, *ylabel, *train_label, *val_label;
    double x0, y0; /* panel origin in the document */
} Panel;

static double px(const Panel *p, const Axis *ax, double x) {
    return p->x0 + M_LEFT + (x - ax->lo) / (ax->hi - ax->lo) * (PANEL_W - M_LEFT - M_RIGHT);
}
static double py(const Panel *p, const Axis *ay, double y) {
    return p->y0 + PANEL_H - M_BOTTOM -
           (y - ay->lo) / (ay->hi - ay->lo) * (PANEL_H - M_TOP - M_BOTTOM);
}

/* The panel's title, grid, ticks, frame and axis labels ("no data" when there is none). */
static void draw_frame(Buf *b, const Panel *p, const Axis *ax, const Axis *ay, int has_data) {
    const double L = p->x0 + M_LEFT, R = p->x0 + PANEL_W - M_RIGHT;
    const double T = p->y0 + M_TOP, B = p->y0 + PANEL_H - M_BOTTOM;
    buf_printf(b, "<g>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"16\">",
               (L + R) / 2, p->y0 + 26);
    buf_xml(b, p->title);
    buf_printf(b, "</text>\n");
    /* grid and ticks */
    for (int i = 0;; i++) {
        double v = ay->first + i * ay->step;
        if (v > ay->hi + ay->step * 1e-6) break;
        double y = py(p, ay, v);
        buf_printf(b,
                   "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e5e5e5\"/>\n"
                   "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#000\"/>\n"
                   "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" font-size=\"11\">%.*f</text>\n",
                   L, y, R, y, L - 5, y, L, y, L - 8, y + 4, ay->decimals,
                   fabs(v) < ay->step * 1e-6 ? 0.0 : v);
    }
    for (int i = 0;; i++) {
        double v = ax->first + i * ax->step;
        if (v > ax->hi + ax->step * 1e-6) break;
        double x = px(p, ax, v);
        buf_printf(
            b,
            "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#000\"/>\n"
            "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"11\">%.0f</text>\n",
            x, B, x, B + 5, x, B + 18, v);
    }
    buf_printf(b,
               "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
               "stroke=\"#000\"/>\n",
               L, T, R - L, B - T);
    buf_printf(
        b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">Epochs</text>\n",
        (L + R) / 2, B + 40);
    buf_printf(b,
               "<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\" "
               "font-size=\"13\">%s</text>\n",
               p->x0 + 18, (T + B) / 2, p->ylabel);
    if (!has_data)
        buf_printf(b,
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" "
                   "fill=\"#888\">no data</text>\n",
                   (L + R) / 2, (T + B) / 2);
}

/* The validation values as a line and the training values as dots. */
static void draw_series(Buf *b, const Panel *p, const Axis *ax, const Axis *ay,
                        const EpochRecord *rows, int n, int use_loss, int n_val) {
    /* validation: a line, broken where a value is missing; a lone point gets a marker */
    if (n_val) {
        int i = 0;
        while (i < n) {
            double v0 = use_loss ? rows[i].val_loss : rows[i].val_accuracy;
            if (!isfinite(v0)) {
                i++;
                continue;
            }
            int j = i;
            buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                       COL_VAL);
            for (; j < n; j++) {
                double v = use_loss ? rows[j].val_loss : rows[j].val_accuracy;
                if (!isfinite(v)) break;
                buf_printf(b, "%s%.2f,%.2f", j > i ? " " : "", px(p, ax, rows[j].epoch + 1.0),
                           py(p, ay, v));
            }
            buf_printf(b, "\"/>\n");
            if (j == i + 1)
                buf_printf(b,
                           "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" "
                           "stroke=\"%s\" stroke-width=\"2\"/>\n",
                           px(p, ax, rows[i].epoch + 1.0) - 6, py(p, ay, v0),
                           px(p, ax, rows[i].epoch + 1.0) + 6, py(p, ay, v0), COL_VAL);
            i = j;
        }
    }
    /* training: dots ("bo" in the book's plots) */
    for (int i = 0; i < n; i++) {
        double t = use_loss ? rows[i].loss : rows[i].accuracy;
        if (isfinite(t))
            buf_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\" fill=\"%s\"/>\n",
                       px(p, ax, rows[i].epoch + 1.0), py(p, ay, t), COL_TRAIN);
    }
}

static void draw_panel(Buf *b, const Panel *p, const EpochRecord *rows, int n, int use_loss) {
    /* data ranges over finite values only */
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    int n_train = 0, n_val = 0;
    for (int i = 0; i < n; i++) {
        double x = rows[i].epoch + 1.0;
        double t = use_loss ? rows[i].loss : rows[i].accuracy;
        double v = use_loss ? rows[i].val_loss : rows[i].val_accuracy;
        if (x < xmin) xmin = x;
        if (x > xmax) xmax = x;
        if (isfinite(t)) {
            n_train++;
            ymin = fmin(ymin, t);
            ymax = fmax(ymax, t);
        }
        if (isfinite(v)) {
            n_val++;
            ymin = fmin(ymin, v);
            ymax = fmax(ymax, v);
        }
    }
    if (n == 0) xmin = xmax = 1;
    if (n_train + n_val == 0) ymin = 0, ymax = 1;
    Axis ax = nice_axis(xmin, xmax, 6, 1), ay = nice_axis(ymin, ymax, 5, 0);
    draw_frame(b, p, &ax, &ay, n_train + n_val > 0);
    draw_series(b, p, &ax, &ay, rows, n, use_loss, n_val);
    /* legend, between the title and the plot so that it never hides data */
    double lx = p->x0 + M_LEFT + 8, ly = p->y0 + 50;
    if (n_train) {
        buf_printf(b,
                   "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n"
                   "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n",
                   lx + 10, ly - 4, COL_TRAIN, lx + 26, ly, p->train_label);
        lx += 190;
    }
    if (n_val)
        buf_printf(b,
                   "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                   "stroke-width=\"2\"/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n",
                   lx, ly - 4, lx + 20, ly - 4, COL_VAL, lx + 26, ly, p->val_label);
    buf_printf(b, "</g>\n");
}

int history_write_svg(const char *path, const EpochRecord *rows, int n, const char *title, Err *e) {
    if (n < 0) n = 0;
    const int top = title && *title ? 34 : 0;
    Buf b = {0};
    buf_printf(&b,
               "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
               2 * PANEL_W, PANEL_H + top, 2 * PANEL_W, PANEL_H + top);
    if (top) {
        buf_printf(&b,
                   "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"18\" "
                   "font-weight=\"bold\">",
                   PANEL_W);
        buf_xml(&b, title);
        buf_printf(&b, "</text>\n");
    }
    Panel acc = {"Training and validation accuracy",
                 "Accuracy",
                 "Training accuracy",
                 "Validation accuracy",
                 0,
                 top};
    Panel loss = {
        "Training and validation loss", "Loss", "Training loss", "Validation loss", PANEL_W, top};
    draw_panel(&b, &acc, rows, n, 0);
    draw_panel(&b, &loss, rows, n, 1);
    buf_printf(&b, "</svg>\n");
    IoChunk c = {b.p, b.n};
    int rc = file_write_atomic(path, &c, 1, e);
    free(b.p);
    return rc;
}
