/* test_report.c: the epoch CSV log (exact header and rows, empty validation fields, shortest
 * round-trip numbers, torn last lines, truncation for a resume, refusal of a foreign file,
 * reload) and the SVG history chart (both panels, dots and lines, NaN and missing validation
 * left out, one epoch, no epochs). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "report.h"
#include "testutil.h"

static const char *path_in(const char *name) {
    static char p[4][512];
    static int slot;
    char *s = p[slot++ % 4];
    snprintf(s, 512, "%s/%s", testutil_tmpdir(), name);
    remove(s);
    return s;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    return b;
}

static void append_text(const char *path, const char *s) {
    FILE *f = fopen(path, "ab");
    CU_ASSERT_FATAL(f != NULL);
    fputs(s, f);
    fclose(f);
}

/* The book's overfitting picture: training loss keeps falling, validation loss bottoms out
 * around epoch 10 and climbs again. */
static EpochRecord fake(int ep, int with_val) {
    EpochRecord r;
    r.epoch = ep;
    r.loss = 0.68 * exp(-ep / 7.0) + 0.02;
    r.accuracy = 1.0 - 0.45 * exp(-ep / 6.0) - 0.01;
    r.val_loss = with_val ? 0.42 + 0.0009 * (ep - 10) * (ep - 10) + 0.25 * exp(-ep / 3.0) : NAN;
    r.val_accuracy = with_val ? 0.74 - 0.2 * exp(-ep / 4.0) - 0.001 * (ep > 15 ? ep - 15 : 0) : NAN;
    r.lr = 0.001;
    r.images_per_s = 1234.5;
    r.seconds = 2.5 + ep;
    return r;
}

static void test_csv_rows(void) {
    const char *p = path_in("log.csv");
    Err e = {0};
    EpochRecord r0 = {0, 0.5, 0.6931471805599453, NAN, NAN, 0.001, 1234.5, 2.5};
    EpochRecord r1 = {1, 0.75, 0.5, 0.625, 0.55, 0.1, 2000, 3};
    CU_ASSERT_EQUAL_FATAL(csvlog_append(p, &r0, &e), 0);
    CU_ASSERT_EQUAL_FATAL(csvlog_append(p, &r1, &e), 0);
    char *t = read_all(p);
    CU_ASSERT_STRING_EQUAL(
        t, "epoch,accuracy,loss,val_accuracy,val_loss,learning_rate,images_per_s,seconds\n"
           "0,0.5,0.6931471805599453,,,0.001,1234.5,2.5\n"
           "1,0.75,0.5,0.625,0.55,0.1,2000,3\n");
    free(t);
    EpochRecord *rows = NULL;
    int n = 0;
    CU_ASSERT_EQUAL_FATAL(history_read_csv(p, &rows, &n, &e), 0);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(rows[0].epoch, 0);
    CU_ASSERT(rows[0].loss == 0.6931471805599453); /* exact round trip */
    CU_ASSERT(isnan(rows[0].val_loss) && isnan(rows[0].val_accuracy));
    CU_ASSERT(rows[1].val_accuracy == 0.625 && rows[1].lr == 0.1 && rows[1].seconds == 3);
    free(rows);

    /* a diverged loss is written as nan and read back as NaN */
    EpochRecord r2 = {2, 0.5, NAN, 0.5, 0.5, 0.1, 1, 1};
    CU_ASSERT_EQUAL(csvlog_append(p, &r2, &e), 0);
    CU_ASSERT_EQUAL_FATAL(history_read_csv(p, &rows, &n, &e), 0);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT(n == 3 && isnan(rows[2].loss) && rows[2].val_loss == 0.5);
    free(rows);
    CU_ASSERT_FALSE(e.set);
}

static void test_csv_resume(void) {
    const char *p = path_in("resume.csv");
    Err e = {0};
    for (int ep = 0; ep < 5; ep++) {
        EpochRecord r = fake(ep, 1);
        CU_ASSERT_EQUAL_FATAL(csvlog_append(p, &r, &e), 0);
    }
    /* a crash mid-append left a torn row */
    append_text(p, "5,0.93,0.1");
    EpochRecord *rows = NULL;
    int n = 0;
    CU_ASSERT_EQUAL_FATAL(history_read_csv(p, &rows, &n, &e), 0);
    CU_ASSERT_EQUAL(n, 5); /* the torn row is not a row */
    free(rows);
    /* resume at epoch 3: rows 3, 4 and the torn one go */
    CU_ASSERT_EQUAL_FATAL(csvlog_truncate_from(p, 3, &e), 0);
    CU_ASSERT_EQUAL_FATAL(history_read_csv(p, &rows, &n, &e), 0);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    for (int i = 0; i < n; i++) CU_ASSERT_EQUAL(rows[i].epoch, i);
    free(rows);
    EpochRecord r3 = fake(3, 1);
    CU_ASSERT_EQUAL(csvlog_append(p, &r3, &e), 0);
    CU_ASSERT_EQUAL_FATAL(history_read_csv(p, &rows, &n, &e), 0);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT(n == 4 && rows[3].epoch == 3 && rows[3].loss == r3.loss);
    free(rows);
    /* append itself cuts a torn last row before writing */
    append_text(p, "4,0.9");
    EpochRecord r4 = fake(4, 1);
    CU_ASSERT_EQUAL(csvlog_append(p, &r4, &e), 0);
    char *t = read_all(p);
    CU_ASSERT_PTR_NULL(strstr(t, "4,0.9\n"));
    CU_ASSERT_PTR_NULL(strstr(t, "4,0.94,"));
    free(t);
    CU_ASSERT_EQUAL_FATAL(history_read_csv(p, &rows, &n, &e), 0);
    CU_ASSERT_EQUAL(n, 5);
    free(rows);
    /* truncating a missing log is fine; truncating to 0 keeps only the header */
    CU_ASSERT_EQUAL(csvlog_truncate_from(path_in("absent.csv"), 2, &e), 0);
    CU_ASSERT_EQUAL(csvlog_truncate_from(p, 0, &e), 0);
    t = read_all(p);
    CU_ASSERT_STRING_EQUAL(t, CSVLOG_HEADER "\n");
    free(t);
    CU_ASSERT_FALSE(e.set);
}

static void test_csv_foreign_and_bad(void) {
    const char *p = path_in("foreign.csv");
    append_text(p, "a,b,c\n1,2,3\n");
    Err e = {0};
    EpochRecord r = fake(0, 0);
    CU_ASSERT_EQUAL(csvlog_append(p, &r, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "not an epoch log"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, p));
    char *t = read_all(p);
    CU_ASSERT_STRING_EQUAL(t, "a,b,c\n1,2,3\n"); /* untouched */
    free(t);
    const char *q = path_in("badrow.csv");
    append_text(q, CSVLOG_HEADER "\n0,1,2,3,4,5,6,7\n1,x,2,3,4,5,6,7\n");
    Err e2 = {0};
    EpochRecord *rows = NULL;
    int n = 0;
    CU_ASSERT_EQUAL(history_read_csv(q, &rows, &n, &e2), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, ":3: a field is not a number"));
}

/* A log written before the column was renamed learning_rate (header "...,lr,..."): appended
 * to as it is, read back, and rewritten with the new header by a resume's truncation. */
static void test_csv_old_header(void) {
    const char *p = path_in("old.csv");
    append_text(p, CSVLOG_HEADER_V1 "\n0,0.5,1,,,0.001,100,2\n");
    Err e = {0};
    EpochRecord r = fake(1, 0);
    CU_ASSERT_EQUAL(csvlog_append(p, &r, &e), 0);
    EpochRecord *rows = NULL;
    int n = 0;
    CU_ASSERT_EQUAL_FATAL(history_read_csv(p, &rows, &n, &e), 0);
    CU_ASSERT_EQUAL(n, 2);
    if (n == 2) CU_ASSERT_DOUBLE_EQUAL(rows[0].lr, 0.001, 0);
    free(rows);
    CU_ASSERT_EQUAL(csvlog_truncate_from(p, 1, &e), 0);
    char *t = read_all(p);
    CU_ASSERT_STRING_EQUAL(t, CSVLOG_HEADER "\n0,0.5,1,,,0.001,100,2\n");
    free(t);
}

static int count(const char *s, const char *what) {
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what)) n++;
    return n;
}

static int has_nonfinite_text(const char *s) {
    for (const char *p = s; *p; p++)
        if (strncasecmp(p, "nan", 3) == 0 || strncasecmp(p, "inf", 3) == 0) return 1;
    return 0;
}

static void test_svg(void) {
    EpochRecord rows[30];
    for (int i = 0; i < 30; i++) rows[i] = fake(i, 1);
    const char *p = path_in("history.svg");
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(history_write_svg(p, rows, 30, "dogs_vs_cats <scratch> & co", &e), 0);
    char *s = read_all(p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT(strncmp(s, "<?xml", 5) == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "</svg>\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, ">Training and validation accuracy</text>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, ">Training and validation loss</text>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "dogs_vs_cats &lt;scratch&gt; &amp; co"));
    CU_ASSERT_EQUAL(count(s, "<polyline"), 2);        /* validation: one line per panel */
    CU_ASSERT_EQUAL(count(s, "<circle"), 2 * 30 + 2); /* training dots + legend marks */
    CU_ASSERT_EQUAL(count(s, "<g>"), count(s, "</g>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, ">Epochs</text>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, ">30</text>")); /* last epoch tick, 1-based */
    CU_ASSERT_FALSE(has_nonfinite_text(s));
    free(s);

    /* NaN in the middle, no validation at all: no line, no nan, the dot left out */
    for (int i = 0; i < 30; i++) rows[i] = fake(i, 0);
    rows[7].loss = NAN;
    rows[8].accuracy = INFINITY;
    CU_ASSERT_EQUAL_FATAL(history_write_svg(p, rows, 30, NULL, &e), 0);
    s = read_all(p);
    CU_ASSERT_EQUAL(count(s, "<polyline"), 0);
    CU_ASSERT_EQUAL(count(s, "<circle"), 2 * 30 - 2 + 2);
    CU_ASSERT_PTR_NULL(strstr(s, "Validation loss"));
    CU_ASSERT_FALSE(has_nonfinite_text(s));
    free(s);

    /* validation with a gap: the line breaks into two */
    for (int i = 0; i < 30; i++) rows[i] = fake(i, 1);
    rows[12].val_loss = NAN;
    CU_ASSERT_EQUAL_FATAL(history_write_svg(p, rows, 30, NULL, &e), 0);
    s = read_all(p);
    CU_ASSERT_EQUAL(count(s, "<polyline"), 3);
    CU_ASSERT_FALSE(has_nonfinite_text(s));
    free(s);

    /* one epoch, and none */
    rows[0] = fake(0, 1);
    CU_ASSERT_EQUAL_FATAL(history_write_svg(p, rows, 1, "one", &e), 0);
    s = read_all(p);
    CU_ASSERT_EQUAL(count(s, "<circle"), 2 + 2);
    CU_ASSERT_EQUAL(count(s, "<polyline"), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, ">1</text>"));
    CU_ASSERT_FALSE(has_nonfinite_text(s));
    free(s);
    CU_ASSERT_EQUAL_FATAL(history_write_svg(p, rows, 0, NULL, &e), 0);
    s = read_all(p);
    CU_ASSERT_EQUAL(count(s, ">no data</text>"), 2);
    CU_ASSERT_FALSE(has_nonfinite_text(s));
    free(s);
    CU_ASSERT_FALSE(e.set);
    Err e2 = {0};
    CU_ASSERT_EQUAL(history_write_svg("/nonexistent-dir/h.svg", rows, 1, NULL, &e2), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, "/nonexistent-dir/h.svg"));
}

TEST_SUITE(report, {"csv header, rows, empty validation, reload", test_csv_rows},
           {"csv truncation on resume, torn rows", test_csv_resume},
           {"csv refuses a foreign file, names a bad row", test_csv_foreign_and_bad},
           {"csv written with the old lr header still appends and reads", test_csv_old_header},
           {"svg chart: panels, dots, lines, NaN, n=1, n=0", test_svg})
