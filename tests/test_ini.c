/* test_ini.c: the job-file syntax (ini.c) through its C API: sections and labels, syntax errors
 * with line numbers, typed getters, unknown keys, --set overrides and [include]. job_load on
 * small job files is test_job_load.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ini.h"
#include "job.h"
#include "testutil.h"

/* ---- parsing ---- */

static void parse_good_text(void) {
    const char *text = "# leading comment\n"
                       "; another comment\n"
                       "\n"
                       "[data]\n"
                       "  root   =   /tmp/x   \n"
                       "scale=1/255 # trailing comment\n"
                       "\t[conv2d]\t\n"
                       "filters = 32 ; semicolon comment\n"
                       "[maxpooling2d]\n"
                       "[conv2d]\n"
                       "filters = 64\r\n"
                       "[conv2d]\n"
                       "path = a#b\n"
                       "[train]\n"
                       "epochs = 3";
    IniFile ini;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(ini_parse_string(&ini, "good.job", text, &e), 0);
    CU_ASSERT_FALSE(e.set);
    CU_ASSERT_EQUAL_FATAL(ini.n_sec, 6);
    const char *names[] = {"data", "conv2d", "maxpooling2d", "conv2d", "conv2d", "train"};
    const char *labels[] = {"data", "conv2d", "max_pooling2d", "conv2d_1", "conv2d_2", "train"};
    const int lines[] = {4, 7, 9, 10, 12, 14};
    for (int i = 0; i < 6; i++) {
        CU_ASSERT_STRING_EQUAL(ini.sec[i].name, names[i]);
        CU_ASSERT_STRING_EQUAL(ini.sec[i].label, labels[i]);
        CU_ASSERT_EQUAL(ini.sec[i].line, lines[i]);
    }
    CU_ASSERT_EQUAL_FATAL(ini.sec[0].n_kv, 2);
    CU_ASSERT_STRING_EQUAL(ini.sec[0].kv[0].key, "root");
    CU_ASSERT_STRING_EQUAL(ini.sec[0].kv[0].value, "/tmp/x");
    CU_ASSERT_EQUAL(ini.sec[0].kv[0].line, 5);
    CU_ASSERT_STRING_EQUAL(ini.sec[0].kv[1].value, "1/255");
    CU_ASSERT_EQUAL_FATAL(ini.sec[1].n_kv, 1);
    CU_ASSERT_STRING_EQUAL(ini.sec[1].kv[0].value, "32");
    CU_ASSERT_EQUAL(ini.sec[2].n_kv, 0);
    CU_ASSERT_EQUAL_FATAL(ini.sec[3].n_kv, 1);
    CU_ASSERT_STRING_EQUAL(ini.sec[3].kv[0].value, "64"); /* CR stripped */
    CU_ASSERT_EQUAL_FATAL(ini.sec[4].n_kv, 1);
    CU_ASSERT_STRING_EQUAL(ini.sec[4].kv[0].value, "a#b"); /* '#' not after space: kept */
    CU_ASSERT_EQUAL_FATAL(ini.sec[5].n_kv, 1);
    CU_ASSERT_STRING_EQUAL(ini.sec[5].kv[0].value, "3"); /* last line without newline */
    CU_ASSERT_PTR_EQUAL(ini_find(&ini, "conv2d"), &ini.sec[1]);
    CU_ASSERT_PTR_EQUAL(ini_find(&ini, "train"), &ini.sec[5]);
    CU_ASSERT_PTR_NULL(ini_find(&ini, "dense"));
    ini_free(&ini);
}

/* Parse text that must fail; check the message has every fragment. */
static void expect_parse_error(const char *text, const char *const *frags) {
    IniFile ini;
    Err e = {0};
    int rc = ini_parse_string(&ini, "bad.job", text, &e);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_TRUE(e.set);
    for (int i = 0; frags[i]; i++) {
        if (!strstr(e.msg, frags[i])) printf("\n    message '%s' lacks '%s'\n", e.msg, frags[i]);
        HAS(e.msg, frags[i]);
    }
    ini_free(&ini);
}

static void parse_errors(void) {
    expect_parse_error("# c\n\nepochs = 1\n[train]\n",
                       (const char *[]){"bad.job:3:", "epochs", "section", NULL});
    expect_parse_error("[train]\nepochs = 1\n[conv2d\nfilters = 3\n",
                       (const char *[]){"bad.job:3:", "malformed section header", NULL});
    expect_parse_error("[train]\n[conv2d] x\n", (const char *[]){"bad.job:2:", "malformed", NULL});
    expect_parse_error("[train]\n[]\n", (const char *[]){"bad.job:2:", "section name", NULL});
    expect_parse_error("[train]\nepochs = 1\nbatch_size 32\n",
                       (const char *[]){"bad.job:3:", "key = value", "batch_size 32", NULL});
    expect_parse_error("[train]\nepochs = 1\n\nepochs = 2\n",
                       (const char *[]){"bad.job:4:", "'epochs' repeated", "line 2", NULL});
    expect_parse_error("[train]\nepochs = 1\nseed =   # nothing\n",
                       (const char *[]){"bad.job:3:", "'seed'", "no value", NULL});
    expect_parse_error("[train]\nbad key = 1\n", (const char *[]){"bad.job:2:", "bad key", NULL});
}

static void repeated_key_in_other_section_ok(void) {
    IniFile ini;
    Err e = {0};
    CU_ASSERT_EQUAL(ini_parse_string(&ini, "x", "[conv2d]\nfilters=1\n[conv2d]\nfilters=2\n", &e),
                    0);
    CU_ASSERT_EQUAL(ini.n_sec, 2);
    ini_free(&ini);
}

/* ---- typed getters ---- */

static Section *one_section(IniFile *ini, const char *text) {
    Err e = {0};
    int rc = ini_parse_string(ini, "t.job", text, &e);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_FATAL(ini->n_sec >= 1);
    return &ini->sec[0];
}

static void getter_int_rejects_junk(void) {
    IniFile ini;
    Section *s = one_section(&ini,
                             "[s]\n\na = abc\nb = 3x\nc = 7\nd = 2.5\ne = 99999999999999999999\n");
    const char *keys[] = {"a", "b", "d", "e"};
    const char *lines[] = {"t.job:3:", "t.job:4:", "t.job:6:", "t.job:7:"};
    for (int i = 0; i < 4; i++) {
        Err e = {0};
        int out = 12345;
        CU_ASSERT_EQUAL(sec_get_int(&ini, s, keys[i], 1, 0, -1000, 1000, &out, &e), -1);
        CU_ASSERT_EQUAL(out, 12345); /* untouched, no silent 0 */
        HAS(e.msg, lines[i]);
        char k[16];
        snprintf(k, sizeof k, "'%s'", keys[i]);
        HAS(e.msg, k);
        HAS(e.msg, "integer");
    }
    Err e = {0};
    int out = 0;
    CU_ASSERT_EQUAL(sec_get_int(&ini, s, "c", 1, 0, 0, 100, &out, &e), 0);
    CU_ASSERT_EQUAL(out, 7);
    /* an empty value (only reachable by editing a KeyVal) */
    free(s->kv[0].value);
    s->kv[0].value = strdup("");
    Err e2 = {0};
    out = 12345;
    CU_ASSERT_EQUAL(sec_get_int(&ini, s, "a", 1, 0, -1000, 1000, &out, &e2), -1);
    CU_ASSERT_EQUAL(out, 12345);
    HAS(e2.msg, "t.job:3:");
    HAS(e2.msg, "'a'");
    ini_free(&ini);
}

static void getter_int_range_required_default(void) {
    IniFile ini;
    Section *s = one_section(&ini, "[s]\nbig = 11\nneg = -1\nok = 10\n");
    Err e = {0};
    int out = 0;
    CU_ASSERT_EQUAL(sec_get_int(&ini, s, "big", 1, 0, 0, 10, &out, &e), -1);
    HAS(e.msg, "t.job:2:");
    HAS(e.msg, "'big'");
    HAS(e.msg, "out of range [0, 10]");
    Err e2 = {0};
    CU_ASSERT_EQUAL(sec_get_int(&ini, s, "neg", 1, 0, 0, 10, &out, &e2), -1);
    HAS(e2.msg, "t.job:3:");
    Err e3 = {0};
    CU_ASSERT_EQUAL(sec_get_int(&ini, s, "ok", 1, 0, 0, 10, &out, &e3), 0);
    CU_ASSERT_EQUAL(out, 10);
    /* absent, required */
    Err e4 = {0};
    CU_ASSERT_EQUAL(sec_get_int(&ini, s, "units", 1, 0, 0, 10, &out, &e4), -1);
    HAS(e4.msg, "t.job:1:");
    HAS(e4.msg, "'units'");
    /* absent, default recorded as resolved */
    Err e5 = {0};
    long lv = 0;
    CU_ASSERT_EQUAL(sec_get_long(&ini, s, "steps", 0, 42, 0, 100, &lv, &e5), 0);
    CU_ASSERT_EQUAL(lv, 42);
    int found = 0;
    for (int i = 0; i < s->n_kv; i++)
        if (!strcmp(s->kv[i].key, "steps")) {
            found = 1;
            CU_ASSERT_STRING_EQUAL(s->kv[i].value, "42");
            CU_ASSERT_EQUAL(s->kv[i].resolved, 1);
        }
    CU_ASSERT_TRUE(found);
    ini_free(&ini);
}

static void getter_enum_lists_choices(void) {
    IniFile ini;
    Section *s = one_section(&ini, "[s]\nopt = adamw\ngood = sgd\n");
    static const char *const choices[] = {"rmsprop", "adam", "sgd", NULL};
    Err e = {0};
    int out = -7;
    CU_ASSERT_EQUAL(sec_get_enum(&ini, s, "opt", 1, 0, choices, &out, &e), -1);
    CU_ASSERT_EQUAL(out, -7);
    HAS(e.msg, "t.job:2:");
    HAS(e.msg, "'opt'");
    HAS(e.msg, "adamw");
    HAS(e.msg, "rmsprop, adam, sgd");
    Err e2 = {0};
    CU_ASSERT_EQUAL(sec_get_enum(&ini, s, "good", 1, 0, choices, &out, &e2), 0);
    CU_ASSERT_EQUAL(out, 2);
    Err e3 = {0};
    CU_ASSERT_EQUAL(sec_get_enum(&ini, s, "absent", 0, 1, choices, &out, &e3), 0);
    CU_ASSERT_EQUAL(out, 1);
    ini_free(&ini);
}

static void getter_bool(void) {
    IniFile ini;
    Section *s = one_section(&ini, "[s]\na = true\nb = false\nc = yes\n");
    Err e = {0};
    int v = -1;
    CU_ASSERT_EQUAL(sec_get_bool(&ini, s, "a", 0, &v, &e), 0);
    CU_ASSERT_EQUAL(v, 1);
    CU_ASSERT_EQUAL(sec_get_bool(&ini, s, "b", 1, &v, &e), 0);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(sec_get_bool(&ini, s, "c", 0, &v, &e), -1);
    HAS(e.msg, "t.job:4:");
    HAS(e.msg, "false, true");
    ini_free(&ini);
}

static void getter_float_fraction(void) {
    IniFile ini;
    Section *s = one_section(&ini,
                             "[s]\nscale = 1/255\nlr = 1e-3\nbad = 1/0\njunk = 0.5x\nneg = -2\n");
    Err e = {0};
    float f = 0;
    CU_ASSERT_EQUAL(sec_get_float(&ini, s, "scale", 1, 0, -10, 10, &f, &e), 0);
    CU_ASSERT_DOUBLE_EQUAL(f, 1.0 / 255.0, 1e-9);
    double d = 0;
    CU_ASSERT_EQUAL(sec_get_double(&ini, s, "lr", 1, 0, 0, 1, &d, &e), 0);
    CU_ASSERT_DOUBLE_EQUAL(d, 0.001, 1e-15);
    Err e1 = {0}, e2 = {0}, e3 = {0};
    CU_ASSERT_EQUAL(sec_get_double(&ini, s, "bad", 1, 0, -10, 10, &d, &e1), -1);
    HAS(e1.msg, "t.job:4:");
    HAS(e1.msg, "'bad'");
    CU_ASSERT_EQUAL(sec_get_double(&ini, s, "junk", 1, 0, -10, 10, &d, &e2), -1);
    HAS(e2.msg, "t.job:5:");
    HAS(e2.msg, "'junk'");
    CU_ASSERT_EQUAL(sec_get_double(&ini, s, "neg", 1, 0, 0, 10, &d, &e3), -1);
    HAS(e3.msg, "t.job:6:");
    HAS(e3.msg, "out of range");
    ini_free(&ini);
}

static void getter_pair_and_range(void) {
    IniFile ini;
    Section *s = one_section(&ini, "[s]\nk1 = 3\nk2 = 3,2\nk3 = 4x5\nk4 = 3,\nk5 = 0\nr1 = 0.2\n"
                                   "r2 = -0.1,0.3\nr3 = 0.3,-0.1\nr4 = -0.2\n");
    Err e = {0};
    int a = 0, b = 0;
    CU_ASSERT_EQUAL(sec_get_pair(&ini, s, "k1", 1, 0, 0, 1, 100, &a, &b, &e), 0);
    CU_ASSERT_EQUAL(a, 3);
    CU_ASSERT_EQUAL(b, 3);
    CU_ASSERT_EQUAL(sec_get_pair(&ini, s, "k2", 1, 0, 0, 1, 100, &a, &b, &e), 0);
    CU_ASSERT_EQUAL(a, 3);
    CU_ASSERT_EQUAL(b, 2);
    CU_ASSERT_EQUAL(sec_get_pair(&ini, s, "k3", 1, 0, 0, 1, 100, &a, &b, &e), 0);
    CU_ASSERT_EQUAL(a, 4);
    CU_ASSERT_EQUAL(b, 5);
    CU_ASSERT_EQUAL(sec_get_pair(&ini, s, "absent", 0, 2, 2, 1, 100, &a, &b, &e), 0);
    CU_ASSERT_EQUAL(a, 2);
    CU_ASSERT_EQUAL(b, 2);
    CU_ASSERT_FALSE(e.set);
    Err e4 = {0}, e5 = {0};
    CU_ASSERT_EQUAL(sec_get_pair(&ini, s, "k4", 1, 0, 0, 1, 100, &a, &b, &e4), -1);
    HAS(e4.msg, "t.job:5:");
    HAS(e4.msg, "'k4'");
    CU_ASSERT_EQUAL(sec_get_pair(&ini, s, "k5", 1, 0, 0, 1, 100, &a, &b, &e5), -1);
    HAS(e5.msg, "t.job:6:");
    float lo = 0, hi = 0;
    CU_ASSERT_EQUAL(sec_get_range(&ini, s, "r1", 1, 0, &lo, &hi, &e), 0);
    CU_ASSERT_DOUBLE_EQUAL(lo, -0.2, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(hi, 0.2, 1e-7);
    CU_ASSERT_EQUAL(sec_get_range(&ini, s, "r2", 1, 0, &lo, &hi, &e), 0);
    CU_ASSERT_DOUBLE_EQUAL(lo, -0.1, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(hi, 0.3, 1e-7);
    CU_ASSERT_EQUAL(sec_get_range(&ini, s, "absent_r", 0, 0.5, &lo, &hi, &e), 0);
    CU_ASSERT_DOUBLE_EQUAL(lo, -0.5, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(hi, 0.5, 1e-7);
    CU_ASSERT_FALSE(e.set);
    Err e8 = {0}, e9 = {0};
    CU_ASSERT_EQUAL(sec_get_range(&ini, s, "r3", 1, 0, &lo, &hi, &e8), -1);
    HAS(e8.msg, "t.job:9:");
    CU_ASSERT_EQUAL(sec_get_range(&ini, s, "r4", 1, 0, &lo, &hi, &e9), -1);
    HAS(e9.msg, "t.job:10:");
    ini_free(&ini);
}

static void getter_str(void) {
    IniFile ini;
    Section *s = one_section(&ini, "[s]\nname = hello world\n");
    Err e = {0};
    CU_ASSERT_STRING_EQUAL(sec_get_str(&ini, s, "name", 1, NULL, &e), "hello world");
    CU_ASSERT_STRING_EQUAL(sec_get_str(&ini, s, "other", 0, "dflt", &e), "dflt");
    CU_ASSERT_PTR_NULL(sec_get_str(&ini, s, "none", 0, NULL, &e));
    CU_ASSERT_FALSE(e.set);
    CU_ASSERT_PTR_NULL(sec_get_str(&ini, s, "need", 1, NULL, &e));
    CU_ASSERT_TRUE(e.set);
    HAS(e.msg, "'need'");
    ini_free(&ini);
}

static void check_unused_reports_typo(void) {
    IniFile ini;
    Section *s = one_section(&ini, "[conv2d]\nfilters = 3\n# c\nkernal_size = 3\n");
    Err e = {0};
    int f = 0;
    CU_ASSERT_EQUAL(sec_get_int(&ini, s, "filters", 1, 0, 1, 100, &f, &e), 0);
    CU_ASSERT_EQUAL(sec_check_unused(&ini, s, &e), -1);
    HAS(e.msg, "t.job:4:");
    HAS(e.msg, "kernal_size");
    HAS(e.msg, "unknown key");
    /* once used, no complaint */
    int a, b;
    Err e2 = {0};
    CU_ASSERT_EQUAL(sec_get_pair(&ini, s, "kernal_size", 1, 0, 0, 1, 9, &a, &b, &e2), 0);
    CU_ASSERT_EQUAL(sec_check_unused(&ini, s, &e2), 0);
    CU_ASSERT_FALSE(e2.set);
    ini_free(&ini);
}

/* ---- overrides ---- */

static const char *kv_value(Section *s, const char *key, int *line) {
    for (int i = 0; i < s->n_kv; i++)
        if (!strcmp(s->kv[i].key, key)) {
            if (line) *line = s->kv[i].line;
            return s->kv[i].value;
        }
    return NULL;
}

static void override_apply(void) {
    IniFile ini;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(ini_parse_string(&ini, "o.job",
                                           "[data]\nroot = /x\n[conv2d]\nfilters = 3\n[conv2d]\n"
                                           "filters = 4\n",
                                           &e),
                          0);
    CU_ASSERT_EQUAL(ini_apply_override(&ini, "conv2d_1.filters=9", &e), 0);
    CU_ASSERT_EQUAL(ini_apply_override(&ini, "conv2d.activation=relu", &e), 0);
    CU_ASSERT_EQUAL(ini_apply_override(&ini, "train.epochs=5", &e), 0); /* creates [train] */
    CU_ASSERT_EQUAL(ini_apply_override(&ini, "train.epochs=1", &e), 0); /* replaces */
    CU_ASSERT_EQUAL(ini_apply_override(&ini, "train.save=/a=b", &e), 0);
    CU_ASSERT_FALSE(e.set);
    int line = -5;
    CU_ASSERT_STRING_EQUAL(kv_value(&ini.sec[2], "filters", &line), "9");
    CU_ASSERT_EQUAL(line, 0);
    CU_ASSERT_STRING_EQUAL(kv_value(&ini.sec[1], "filters", NULL), "3");
    CU_ASSERT_STRING_EQUAL(kv_value(&ini.sec[1], "activation", NULL), "relu");
    Section *t = ini_find(&ini, "train");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(t->label, "train");
    CU_ASSERT_EQUAL(t->n_kv, 2);
    CU_ASSERT_STRING_EQUAL(kv_value(t, "epochs", NULL), "1");
    CU_ASSERT_STRING_EQUAL(kv_value(t, "save", NULL), "/a=b");
    /* errors from an overridden value say --set */
    CU_ASSERT_EQUAL(ini_apply_override(&ini, "train.batch_size=abc", &e), 0);
    int bs;
    CU_ASSERT_EQUAL(sec_get_int(&ini, t, "batch_size", 0, 32, 1, 100, &bs, &e), -1);
    HAS(e.msg, "--set train.batch_size");
    HAS(e.msg, "abc");
    ini_free(&ini);
}

static void override_errors(void) {
    IniFile ini;
    Err e0 = {0};
    CU_ASSERT_EQUAL_FATAL(ini_parse_string(&ini, "o.job", "[conv2d]\nfilters = 3\n", &e0), 0);
    const char *bad[] = {"conv2d_1.filters=3", "dense.units=3", "trainepochs=1", "train.epochs",
                         "train.epochs=",      ".epochs=1",     "train.=1",      "epochs=1.5"};
    const char *frag[] = {"conv2d_1",          "dense",
                          "section.key=value", "section.key=value",
                          "empty value",       "section.key=value",
                          "section.key=value", "section.key=value"};
    for (int i = 0; i < 8; i++) {
        Err e = {0};
        int rc = ini_apply_override(&ini, bad[i], &e);
        CU_ASSERT_EQUAL(rc, -1);
        if (rc != -1) printf("\n    override '%s' was accepted\n", bad[i]);
        HAS(e.msg, bad[i]);
        HAS(e.msg, frag[i]);
    }
    CU_ASSERT_EQUAL(ini.n_sec, 1);
    CU_ASSERT_EQUAL(ini.sec[0].n_kv, 1);
    ini_free(&ini);
}

/* ---- [include] ---- */

/* Create tmpdir/sub; its path into buf. */
static const char *subdir(char *buf, size_t n, const char *sub) {
    snprintf(buf, n, "%s/%s", testutil_tmpdir(), sub);
    mkdir(buf, 0755);
    return buf;
}

/* dir/name with text; the path (static, rotated) */
static const char *write_text(const char *dir, const char *name, const char *text) {
    return testutil_write_file(dir, name, text, strlen(text));
}

static void include_splices(void) {
    char dir[512], inner[512];
    subdir(dir, sizeof dir, "incl");
    subdir(inner, sizeof inner, "incl/inc");
    char top[600], base[600], pool[600];
    snprintf(
        top, sizeof top, "%s",
        write_text(dir, "top.job",
                   "[data]\nroot = /x\n[include]\nfile = inc/base.ini\n[conv2d]\nfilters = 8\n"));
    snprintf(base, sizeof base, "%s",
             write_text(dir, "inc/base.ini",
                        "# base\n[conv2d]\nfilters = 4\n[include]\nfile = pool.ini\n"
                        "[conv2d]\nfilters = 5\nkernal = 1\n"));
    snprintf(pool, sizeof pool, "%s",
             write_text(dir, "inc/pool.ini", "[maxpooling2d]\npool_size = 2\n"));
    IniFile ini;
    Err e = {0};
    int rc = ini_parse_file(&ini, top, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(ini.n_sec, 5);
    const char *labels[] = {"data", "conv2d", "max_pooling2d", "conv2d_1", "conv2d_2"};
    const char *files[] = {top, base, pool, base, top};
    const int lines[] = {1, 2, 1, 6, 5};
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_STRING_EQUAL(ini.sec[i].label, labels[i]);
        CU_ASSERT_STRING_EQUAL(ini.sec[i].file, files[i]);
        CU_ASSERT_STRING_EQUAL(ini_section_file(&ini, &ini.sec[i]), files[i]);
        CU_ASSERT_EQUAL(ini.sec[i].line, lines[i]);
    }
    CU_ASSERT_PTR_NULL(ini_find(&ini, "include"));
    CU_ASSERT_STRING_EQUAL(ini.path, top);
    /* errors about included sections and keys name that file and line */
    char want[700];
    int v;
    CU_ASSERT_EQUAL(sec_get_int(&ini, &ini.sec[3], "filters", 1, 0, 1, 9, &v, &e), 0);
    CU_ASSERT_EQUAL(sec_check_unused(&ini, &ini.sec[3], &e), -1);
    snprintf(want, sizeof want, "%s:8:", base);
    HAS(e.msg, want);
    HAS(e.msg, "kernal");
    Err e2 = {0};
    CU_ASSERT_EQUAL(sec_get_int(&ini, &ini.sec[1], "filters", 1, 0, 6, 9, &v, &e2), -1);
    snprintf(want, sizeof want, "%s:3:", base);
    HAS(e2.msg, want);
    Err e3 = {0};
    CU_ASSERT_EQUAL(sec_get_int(&ini, &ini.sec[2], "units", 1, 0, 1, 9, &v, &e3), -1);
    snprintf(want, sizeof want, "%s:1: [maxpooling2d] needs 'units'", pool);
    HAS(e3.msg, want);
    /* --set reaches included sections by label */
    Err e4 = {0};
    CU_ASSERT_EQUAL(ini_apply_override(&ini, "conv2d_1.filters=x", &e4), 0);
    CU_ASSERT_EQUAL(sec_get_int(&ini, &ini.sec[3], "filters", 1, 0, 1, 9, &v, &e4), -1);
    HAS(e4.msg, "--set conv2d_1.filters");
    /* the resolved printout names the file of each included section */
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ini_print_resolved(&ini, f);
    fclose(f);
    HAS(out, "[data]\n");
    snprintf(want, sizeof want, "[conv2d]  # from %s\n", base);
    HAS(out, want);
    snprintf(want, sizeof want, "[maxpooling2d]  # max_pooling2d, from %s\n", pool);
    HAS(out, want);
    snprintf(want, sizeof want, "[conv2d]  # conv2d_1, from %s\n", base);
    HAS(out, want);
    HAS(out, "[conv2d]  # conv2d_2\n");
    free(out);
    ini_free(&ini);
}

/* Parse dir/name, which must fail with every fragment ("@NAME:" stands for "dir/NAME:"). */
static void expect_include_error(const char *dir, const char *name, const char *const *frags) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    IniFile ini;
    Err e = {0};
    CU_ASSERT_EQUAL(ini_parse_file(&ini, path, &e), -1);
    for (int i = 0; frags[i]; i++) {
        char buf[700];
        const char *f = frags[i];
        if (f[0] == '@') {
            snprintf(buf, sizeof buf, "%s/%s", dir, f + 1);
            f = buf;
        }
        HAS(e.msg, f);
    }
    ini_free(&ini);
}

static void include_errors(void) {
    char dir[512];
    subdir(dir, sizeof dir, "inclerr");
    /* a missing file: the including file and line */
    write_text(dir, "miss.job", "[data]\nroot = /x\n\n[include]\nfile = nope.ini\n");
    expect_include_error(dir, "miss.job",
                         (const char *[]){"@miss.job:4:", "@nope.ini", "does not exist", NULL});
    /* cycles: a file including itself, and a -> b -> a */
    write_text(dir, "self.ini", "[include]\nfile = self.ini\n");
    expect_include_error(dir, "self.ini", (const char *[]){"@self.ini:1:", "cycle", NULL});
    write_text(dir, "a.ini", "[conv2d]\nfilters = 1\n[include]\nfile = b.ini\n");
    write_text(dir, "b.ini", "[dense]\nunits = 1\n\n[include]\nfile = a.ini\n");
    expect_include_error(dir, "a.ini", (const char *[]){"@b.ini:4:", "cycle", "@a.ini -> ", NULL});
    /* the section's one key */
    write_text(dir, "nokey.job", "[include]\n[train]\n");
    expect_include_error(dir, "nokey.job",
                         (const char *[]){"@nokey.job:1:", "needs 'file = PATH'", NULL});
    write_text(dir, "other.job", "[include]\npath = a.ini\n");
    expect_include_error(dir, "other.job", (const char *[]){"@other.job:2:", "'path'", NULL});
    write_text(dir, "two.job", "[include]\nfile = a.ini\nfile = b.ini\n");
    expect_include_error(dir, "two.job", (const char *[]){"@two.job:3:", "repeated", NULL});
    /* a syntax error inside an included file names that file */
    write_text(dir, "syn.job", "[data]\n[include]\nfile = syn.ini\n");
    write_text(dir, "syn.ini", "[conv2d]\nfilters 3\n");
    expect_include_error(dir, "syn.job", (const char *[]){"@syn.ini:2:", "key = value", NULL});
    /* nesting: INI_INCLUDE_DEPTH levels are fine, one more is refused */
    for (int k = 0; k <= INI_INCLUDE_DEPTH + 1; k++) {
        char name[32], text[64];
        snprintf(name, sizeof name, "d%d.ini", k);
        snprintf(text, sizeof text, "[conv2d]\nfilters = %d\n[include]\nfile = d%d.ini\n", k + 1,
                 k + 1);
        write_text(dir, name, text);
    }
    char leaf[32];
    snprintf(leaf, sizeof leaf, "d%d.ini", INI_INCLUDE_DEPTH);
    write_text(dir, leaf, "[dense]\nunits = 1\n");
    IniFile ini;
    Err e = {0};
    char path[600];
    snprintf(path, sizeof path, "%s/d0.ini", dir);
    CU_ASSERT_EQUAL(ini_parse_file(&ini, path, &e), 0);
    CU_ASSERT_EQUAL(ini.n_sec, INI_INCLUDE_DEPTH + 1);
    ini_free(&ini);
    char text[64];
    snprintf(text, sizeof text, "[conv2d]\nfilters = 1\n[include]\nfile = d%d.ini\n",
             INI_INCLUDE_DEPTH + 1);
    write_text(dir, leaf, text);
    write_text(dir, "deep.ini", "[dense]\nunits = 1\n");
    expect_include_error(dir, "d0.ini", (const char *[]){"nest deeper than", NULL});
}


TEST_SUITE(ini, {"parse good text: sections, labels, comments, whitespace", parse_good_text},
           {"parse errors name file and line", parse_errors},
           {"same key in two sections is fine", repeated_key_in_other_section_ok},
           {"integer getter rejects junk with FILE:LINE and key", getter_int_rejects_junk},
           {"integer range, required, default", getter_int_range_required_default},
           {"enum error lists the choices", getter_enum_lists_choices},
           {"bool getter", getter_bool},
           {"float getter: fractions and errors", getter_float_fraction},
           {"pair and range getters", getter_pair_and_range}, {"string getter", getter_str},
           {"check_unused reports a typo with its line", check_unused_reports_typo},
           {"overrides replace, add, create [train]", override_apply},
           {"malformed overrides are rejected", override_errors},
           {"[include] splices sections, errors name the included file", include_splices},
           {"[include] errors: missing file, cycles, keys, depth", include_errors})
