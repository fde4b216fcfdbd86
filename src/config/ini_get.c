/* ini_get.c: the typed getters of a job-file section (sec_get_*): each parses a value at its full
 * length, checks its range, marks the key used and records defaults for the resolved printout;
 * sec_check_unused reports the keys no getter took. Messages name FILE:LINE or the --set. */
#include "ini.h"
#include "config/ini_impl.h"

#include <stdlib.h>
#include <string.h>

/* "FILE:LINE" or "--set" for messages */
static const char *where(const IniFile *ini, const Section *s, const KeyVal *kv, char *buf,
                         size_t n) {
    if (kv && kv->line == 0)
        snprintf(buf, n, "--set %s.%s", s->label, kv->key);
    else
        snprintf(buf, n, "%s:%d", ini_section_file(ini, s), kv ? kv->line : s->line);
    return buf;
}

/* Look a key up and mark it used; NULL when absent. */
static KeyVal *take(Section *s, const char *key) {
    KeyVal *kv = ini_find_key(s, key);
    if (kv) kv->used = 1;
    return kv;
}

static void record_default(Section *s, const char *key, const char *value) {
    KeyVal *kv = ini_add_key(s, key, value, -1);
    kv->used = 1;
    kv->resolved = 1;
}

static int missing(IniFile *ini, Section *s, const char *key, Err *e) {
    if (s->line == 0) /* the section exists only because of a --set */
        err_set(e, "%s: [%s] (created by --set) needs '%s'", ini->path, s->name, key);
    else
        err_set(e, "%s:%d: [%s] needs '%s'", ini_section_file(ini, s), s->line, s->name, key);
    return -1;
}

int sec_get_long(IniFile *ini, Section *s, const char *key, int required, long def, long lo,
                 long hi, long *out, Err *e) {
    KeyVal *kv = take(s, key);
    char w[1024]; /* "FILE:LINE": the file may be a long included path */
    if (!kv) {
        if (required) return missing(ini, s, key, e);
        *out = def;
        char v[32];
        snprintf(v, sizeof v, "%ld", def);
        record_default(s, key, v);
        return 0;
    }
    long v;
    if (parse_long(kv->value, &v) != 0) {
        char q[ERR_QUOTE_MAX];
        err_set(e, "%s: '%s' must be an integer, got %s", where(ini, s, kv, w, sizeof w), key,
                err_quote(kv->value, q, sizeof q));
        return -1;
    }
    if (v < lo || v > hi) {
        err_set(e, "%s: '%s' = %ld is out of range [%ld, %ld]", where(ini, s, kv, w, sizeof w), key,
                v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int sec_get_int(IniFile *ini, Section *s, const char *key, int required, int def, int lo, int hi,
                int *out, Err *e) {
    long v;
    if (sec_get_long(ini, s, key, required, def, lo, hi, &v, e)) return -1;
    *out = (int)v;
    return 0;
}

int sec_get_double(IniFile *ini, Section *s, const char *key, int required, double def, double lo,
                   double hi, double *out, Err *e) {
    KeyVal *kv = take(s, key);
    char w[1024];
    if (!kv) {
        if (required) return missing(ini, s, key, e);
        *out = def;
        char v[40];
        snprintf(v, sizeof v, "%.9g", def);
        record_default(s, key, v);
        return 0;
    }
    double v;
    if (parse_double(kv->value, &v) != 0) {
        char q[ERR_QUOTE_MAX];
        err_set(e, "%s: '%s' must be a number, got %s", where(ini, s, kv, w, sizeof w), key,
                err_quote(kv->value, q, sizeof q));
        return -1;
    }
    if (v < lo || v > hi) {
        err_set(e, "%s: '%s' = %g is out of range [%g, %g]", where(ini, s, kv, w, sizeof w), key, v,
                lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int sec_get_float(IniFile *ini, Section *s, const char *key, int required, double def, double lo,
                  double hi, float *out, Err *e) {
    double v;
    if (sec_get_double(ini, s, key, required, def, lo, hi, &v, e)) return -1;
    *out = (float)v;
    return 0;
}

int sec_get_enum(IniFile *ini, Section *s, const char *key, int required, int def,
                 const char *const *choices, int *out, Err *e) {
    KeyVal *kv = take(s, key);
    char w[1024];
    if (!kv) {
        if (required) return missing(ini, s, key, e);
        *out = def;
        record_default(s, key, choices[def]);
        return 0;
    }
    for (int i = 0; choices[i]; i++)
        if (strcmp(kv->value, choices[i]) == 0) {
            *out = i;
            return 0;
        }
    char list[512] = "";
    for (int i = 0; choices[i]; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, choices[i], sizeof list - strlen(list) - 1);
    }
    char q[ERR_QUOTE_MAX];
    err_set(e, "%s: '%s' = %s is not one of: %s", where(ini, s, kv, w, sizeof w), key,
            err_quote(kv->value, q, sizeof q), list);
    return -1;
}

int sec_get_bool(IniFile *ini, Section *s, const char *key, int def, int *out, Err *e) {
    static const char *const choices[] = {"false", "true", NULL};
    return sec_get_enum(ini, s, key, 0, def ? 1 : 0, choices, out, e);
}

const char *sec_get_str(IniFile *ini, Section *s, const char *key, int required, const char *def,
                        Err *e) {
    KeyVal *kv = take(s, key);
    if (kv) return kv->value;
    if (required) {
        missing(ini, s, key, e);
        return NULL;
    }
    if (!def) return NULL;
    record_default(s, key, def);
    return ini_find_key(s, key)->value;
}

int sec_get_pair(IniFile *ini, Section *s, const char *key, int required, int def_a, int def_b,
                 int lo, int hi, int *a, int *b, Err *e) {
    KeyVal *kv = take(s, key);
    char w[1024];
    if (!kv) {
        if (required) return missing(ini, s, key, e);
        *a = def_a;
        *b = def_b;
        char v[32];
        snprintf(v, sizeof v, "%d,%d", def_a, def_b);
        record_default(s, key, v);
        return 0;
    }
    /* the whole value: a copy cut to a fixed buffer would drop trailing junk unseen */
    char *buf = xstrdup(kv->value);
    char *sep = strpbrk(buf, ",x");
    long x, y;
    int ok;
    if (sep) {
        *sep = 0;
        ok = parse_long(ini_trim(buf), &x) == 0 && parse_long(ini_trim(sep + 1), &y) == 0;
    } else {
        ok = parse_long(ini_trim(buf), &x) == 0;
        y = x;
    }
    free(buf);
    if (!ok || x < lo || x > hi || y < lo || y > hi) {
        char q[ERR_QUOTE_MAX];
        err_set(e, "%s: '%s' must be one or two integers in [%d, %d] (e.g. 3 or 3,3), got %s",
                where(ini, s, kv, w, sizeof w), key, lo, hi, err_quote(kv->value, q, sizeof q));
        return -1;
    }
    *a = (int)x;
    *b = (int)y;
    return 0;
}

int sec_get_range(IniFile *ini, Section *s, const char *key, int required, double def, float *lo,
                  float *hi, Err *e) {
    KeyVal *kv = take(s, key);
    char w[1024];
    if (!kv) {
        if (required) return missing(ini, s, key, e);
        *lo = (float)-def;
        *hi = (float)def;
        char v[48];
        snprintf(v, sizeof v, "%g", def);
        record_default(s, key, v);
        return 0;
    }
    char *buf = xstrdup(kv->value);
    char *sep = strchr(buf, ',');
    double x, y;
    int ok;
    if (sep) {
        *sep = 0;
        ok = parse_double(ini_trim(buf), &x) == 0 && parse_double(ini_trim(sep + 1), &y) == 0 &&
             x <= y;
    } else {
        ok = parse_double(ini_trim(buf), &y) == 0 && y >= 0;
        x = -y;
    }
    free(buf);
    if (!ok) {
        char q[ERR_QUOTE_MAX];
        err_set(e,
                "%s: '%s' must be a number x >= 0 (meaning -x..x) or 'lo,hi' with lo <= hi, got %s",
                where(ini, s, kv, w, sizeof w), key, err_quote(kv->value, q, sizeof q));
        return -1;
    }
    *lo = (float)x;
    *hi = (float)y;
    return 0;
}

int sec_check_unused(IniFile *ini, Section *s, Err *e) {
    for (int i = 0; i < s->n_kv; i++)
        if (!s->kv[i].used) {
            char w[1024];
            char q[ERR_QUOTE_MAX];
            err_set(e, "%s: unknown key %s in [%s]", where(ini, s, &s->kv[i], w, sizeof w),
                    err_quote(s->kv[i].key, q, sizeof q), s->name);
            return -1;
        }
    return 0;
}
