/* ini.c: job-file syntax (sections of key = value, [include] of other files), --set overrides,
 * the resolved printout and the job hash. The typed getters are in ini_get.c. */
#include "ini.h"
#include "config/ini_impl.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Where job and included files are read from: the file system, unless a test or a fuzzer
 * serves them from memory (ini_set_file_source). */
static IniFileSource file_source = {file_read_text, NULL};

void ini_set_file_source(const IniFileSource *src) {
    IniFileSource fs = {file_read_text, NULL};
    file_source = src ? *src : fs;
}

/* Canonical name of a file that was read, for cycle detection (malloc'd, NULL on error). */
static char *canonical(const char *path) {
    return file_source.canonical ? file_source.canonical(path) : realpath(path, NULL);
}

char *ini_trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) *--end = 0;
    return s;
}

/* Section names whose layers Keras names otherwise: {ours, Keras's}. */
static const char *const label_aliases[][2] = {{"maxpooling2d", "max_pooling2d"}};

const char *ini_keras_label_base(const char *name) {
    for (size_t i = 0; i < sizeof label_aliases / sizeof *label_aliases; i++)
        if (!strcmp(name, label_aliases[i][0])) return label_aliases[i][1];
    return name;
}

/* The label a pre-Keras-naming label ("maxpooling2d_1") has now ("max_pooling2d_1") in buf;
 * NULL when label is not an old one. */
static const char *renamed_label(const char *label, char *buf, size_t n) {
    for (size_t i = 0; i < sizeof label_aliases / sizeof *label_aliases; i++) {
        size_t k = strlen(label_aliases[i][0]);
        if (!strncmp(label, label_aliases[i][0], k) && (label[k] == 0 || label[k] == '_')) {
            snprintf(buf, n, "%s%s", label_aliases[i][1], label + k);
            return buf;
        }
    }
    return NULL;
}

static Section *add_section(IniFile *ini, const char *name, const char *file, int line) {
    if (ini->n_sec == ini->cap_sec) {
        ini->cap_sec = ini->cap_sec ? 2 * ini->cap_sec : 16;
        Section *grown = xmalloc((size_t)ini->cap_sec * sizeof *grown);
        if (ini->n_sec) memcpy(grown, ini->sec, (size_t)ini->n_sec * sizeof *grown);
        free(ini->sec);
        ini->sec = grown;
    }
    /* Keras naming: the first conv2d is "conv2d", then "conv2d_1", "conv2d_2", ...; a section
     * whose name is not Keras's ([maxpooling2d]) counts and is named as Keras's (max_pooling2d) */
    const char *base = ini_keras_label_base(name);
    int count = 0;
    for (int i = 0; i < ini->n_sec; i++)
        count += strcmp(ini_keras_label_base(ini->sec[i].name), base) == 0;
    /* the whole name, however long: a cut label could equal another section's */
    size_t ln = strlen(base) + 16;
    char *label = xmalloc(ln);
    if (count == 0)
        snprintf(label, ln, "%s", base);
    else
        snprintf(label, ln, "%s_%d", base, count);
    Section *s = &ini->sec[ini->n_sec++];
    memset(s, 0, sizeof *s);
    s->name = xstrdup(name);
    s->label = label;
    s->file = file;
    s->line = line;
    return s;
}

/* Keep a copy of a file name for the lifetime of the IniFile; returns the copy. */
static const char *add_file(IniFile *ini, const char *path) {
    if (ini->n_files == ini->cap_files) {
        ini->cap_files = ini->cap_files ? 2 * ini->cap_files : 4;
        char **grown = xmalloc((size_t)ini->cap_files * sizeof *grown);
        if (ini->n_files) memcpy(grown, ini->files, (size_t)ini->n_files * sizeof *grown);
        free(ini->files);
        ini->files = grown;
    }
    ini->files[ini->n_files] = xstrdup(path);
    return ini->files[ini->n_files++];
}

KeyVal *ini_find_key(Section *s, const char *key) {
    for (int i = 0; i < s->n_kv; i++)
        if (strcmp(s->kv[i].key, key) == 0) return &s->kv[i];
    return NULL;
}

KeyVal *ini_add_key(Section *s, const char *key, const char *value, int line) {
    if (s->n_kv == s->cap_kv) {
        s->cap_kv = s->cap_kv ? 2 * s->cap_kv : 8;
        KeyVal *grown = xmalloc((size_t)s->cap_kv * sizeof *grown);
        if (s->n_kv) memcpy(grown, s->kv, (size_t)s->n_kv * sizeof *grown);
        free(s->kv);
        s->kv = grown;
    }
    KeyVal *kv = &s->kv[s->n_kv++];
    memset(kv, 0, sizeof *kv);
    kv->key = xstrdup(key);
    kv->value = xstrdup(value);
    kv->line = line;
    return kv;
}

static int valid_name(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

/* The files being read, outermost first, by canonical path (for cycles) and as named. */
typedef struct {
    char *canon[INI_INCLUDE_DEPTH + 1];
    const char *named[INI_INCLUDE_DEPTH + 1];
    int n;
} IncludeChain;

/* An [include] section while its keys are read: it ends at the next header or the end. */
typedef struct {
    int line; /* of the [include] header; 0 when none is open */
    char *path;
} PendingInclude;

static int parse_text(IniFile *ini, const char *name, const char *text, IncludeChain *chain,
                      Err *e);

/* Read the file that [include] (at file:line) names, relative to file's folder, and add its
 * sections where the [include] was. */
static int include_file(IniFile *ini, const char *file, const PendingInclude *inc,
                        IncludeChain *chain, Err *e) {
    if (!inc->path) {
        err_set(e, "%s:%d: [include] needs 'file = PATH'", file, inc->line);
        return -1;
    }
    if (chain->n > INI_INCLUDE_DEPTH) {
        err_set(e, "%s:%d: [include] of %s: includes nest deeper than %d (from %s)", file,
                inc->line, inc->path, INI_INCLUDE_DEPTH, chain->named[0]);
        return -1;
    }
    const char *slash = strrchr(file, '/');
    char *dir = slash ? strndup(file, (size_t)(slash - file) + 1) : xstrdup("");
    CHECK(dir != NULL);
    char *path = path_join(dir, inc->path);
    free(dir);
    char *text = NULL;
    size_t len = 0;
    Err sub = {0};
    int rr = file_source.read(path, &text, &len, &sub);
    int rc = -1;
    char *canon = rr == 0 ? canonical(path) : NULL;
    if (rr == 1)
        err_set(e, "%s:%d: [include] file %s does not exist", file, inc->line, path);
    else if (rr < 0)
        err_set(e, "%s:%d: [include] %s", file, inc->line, sub.msg);
    else if (memchr(text, 0, len))
        err_set(e, "%s:%d: [include] file %s is not a job file (binary content)", file, inc->line,
                path);
    else if (!canon)
        err_set(e, "%s:%d: [include] file %s: %s", file, inc->line, path, strerror(errno));
    else {
        int seen = -1;
        for (int i = 0; i < chain->n && seen < 0; i++)
            if (strcmp(chain->canon[i], canon) == 0) seen = i;
        if (seen >= 0) {
            char cycle[768] = "";
            for (int i = seen; i < chain->n; i++) {
                strncat(cycle, chain->named[i], sizeof cycle - strlen(cycle) - 1);
                strncat(cycle, " -> ", sizeof cycle - strlen(cycle) - 1);
            }
            strncat(cycle, path, sizeof cycle - strlen(cycle) - 1);
            err_set(e, "%s:%d: [include] of %s makes a cycle: %s", file, inc->line, path, cycle);
        } else {
            const char *kept = add_file(ini, path);
            chain->canon[chain->n] = canon;
            chain->named[chain->n] = kept;
            chain->n++;
            rc = parse_text(ini, kept, text, chain, e);
            chain->n--;
        }
    }
    free(canon);
    free(text);
    free(path);
    return rc;
}

/* One line of an open [include] section: only `file = PATH`. */
static int include_key(PendingInclude *inc, const char *file, int line, const char *key,
                       const char *val, Err *e) {
    if (strcmp(key, "file") != 0) {
        err_set(e, "%s:%d: [include] takes one key, 'file = PATH', not '%s'", file, line, key);
        return -1;
    }
    if (inc->path) {
        err_set(e,
                "%s:%d: key 'file' repeated: the [include] of line %d already names %s (one "
                "file per [include])",
                file, line, inc->line, inc->path);
        return -1;
    }
    inc->path = xstrdup(val);
    return 0;
}

/* End the open [include], if any, by reading its file. */
static int close_include(IniFile *ini, const char *file, PendingInclude *inc, IncludeChain *chain,
                         Err *e) {
    if (!inc->line) return 0;
    int rc = include_file(ini, file, inc, chain, e);
    free(inc->path);
    memset(inc, 0, sizeof *inc);
    return rc;
}

static int parse_text(IniFile *ini, const char *name, const char *text, IncludeChain *chain,
                      Err *e) {
    Section *cur = NULL;
    PendingInclude inc = {0};
    int line = 0, rc = 0;
    const char *p = text;
    /* a UTF-8 byte-order mark (Windows editors write one) is not part of the first line */
    if (!strncmp(p, "\xEF\xBB\xBF", 3)) p += 3;
    while (*p && rc == 0) {
        line++;
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *buf = xmalloc(len + 1);
        memcpy(buf, p, len);
        buf[len] = 0;
        p += len + (nl ? 1 : 0);
        /* strip comments: a '#' or ';' at line start or after whitespace */
        for (char *c = buf; *c; c++)
            if ((*c == '#' || *c == ';') && (c == buf || isspace((unsigned char)c[-1]))) {
                *c = 0;
                break;
            }
        char *s = ini_trim(buf);
        if (!*s) {
        } else if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close || close[1]) {
                err_set(e, "%s:%d: malformed section header '%s' (expected [name])", name, line, s);
                rc = -1;
            } else {
                *close = 0;
                char *secname = ini_trim(s + 1);
                if (!valid_name(secname)) {
                    err_set(e, "%s:%d: bad section name '%s'", name, line, secname);
                    rc = -1;
                } else if (close_include(ini, name, &inc, chain, e)) {
                    rc = -1;
                } else if (!strcmp(secname, "include")) {
                    cur = NULL;
                    inc.line = line;
                } else
                    cur = add_section(ini, secname, name, line);
            }
        } else {
            char *eq = strchr(s, '=');
            if (!eq) {
                char q[ERR_QUOTE_MAX];
                err_set(e, "%s:%d: expected 'key = value', got %s", name, line,
                        err_quote(s, q, sizeof q));
                rc = -1;
            } else if (!cur && !inc.line) {
                char q[ERR_QUOTE_MAX];
                err_set(e, "%s:%d: %s appears before any [section]", name, line,
                        err_quote(s, q, sizeof q));
                rc = -1;
            } else {
                *eq = 0;
                char *key = ini_trim(s), *val = ini_trim(eq + 1);
                if (!valid_name(key)) {
                    char q[ERR_QUOTE_MAX];
                    err_set(e, "%s:%d: bad key %s", name, line, err_quote(key, q, sizeof q));
                    rc = -1;
                } else if (cur && ini_find_key(cur, key)) {
                    err_set(e, "%s:%d: key '%s' repeated in [%s] (first at line %d)", name, line,
                            key, cur->name, ini_find_key(cur, key)->line);
                    rc = -1;
                } else if (!*val) {
                    err_set(e, "%s:%d: key '%s' has no value", name, line, key);
                    rc = -1;
                } else if (inc.line)
                    rc = include_key(&inc, name, line, key, val, e);
                else
                    ini_add_key(cur, key, val, line);
            }
        }
        free(buf);
    }
    if (rc == 0) rc = close_include(ini, name, &inc, chain, e);
    free(inc.path);
    return rc;
}

int ini_parse_string(IniFile *ini, const char *name, const char *text, Err *e) {
    memset(ini, 0, sizeof *ini);
    ini->path = xstrdup(name);
    IncludeChain chain = {0};
    chain.canon[0] = canonical(name);
    if (!chain.canon[0]) chain.canon[0] = xstrdup(name); /* text that stands for no file */
    chain.named[0] = add_file(ini, name);
    chain.n = 1;
    int rc = parse_text(ini, chain.named[0], text, &chain, e);
    free(chain.canon[0]);
    /* a failed parse leaves nothing to free (ini_free of it again is harmless) */
    if (rc) ini_free(ini);
    return rc;
}

int ini_parse_file(IniFile *ini, const char *path, Err *e) {
    memset(ini, 0, sizeof *ini);
    char *text = NULL;
    size_t len = 0;
    int rr = file_source.read(path, &text, &len, e);
    if (rr == 1) err_set(e, "cannot open job file %s: %s", path, strerror(ENOENT));
    if (rr) return -1;
    if (memchr(text, 0, len)) {
        err_set(e, "%s: cannot read job file (binary content)", path);
        free(text);
        return -1;
    }
    int rc = ini_parse_string(ini, path, text, e);
    free(text);
    return rc;
}

void ini_free(IniFile *ini) {
    for (int i = 0; i < ini->n_sec; i++) {
        Section *s = &ini->sec[i];
        for (int k = 0; k < s->n_kv; k++) {
            free(s->kv[k].key);
            free(s->kv[k].value);
        }
        free(s->kv);
        free(s->name);
        free(s->label);
    }
    for (int i = 0; i < ini->n_files; i++) free(ini->files[i]);
    free(ini->files);
    free(ini->sec);
    free(ini->path);
    memset(ini, 0, sizeof *ini);
}

const char *ini_section_file(const IniFile *ini, const Section *s) {
    return s->file ? s->file : ini->path;
}

Section *ini_find(IniFile *ini, const char *name) {
    for (int i = 0; i < ini->n_sec; i++)
        if (strcmp(ini->sec[i].name, name) == 0) return &ini->sec[i];
    return NULL;
}

int ini_apply_override(IniFile *ini, const char *assignment, Err *e) {
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq) {
        err_set(e, "--set %s: expected section.key=value (e.g. train.epochs=1)", assignment);
        return -1;
    }
    char label[96], key[96];
    size_t ll = (size_t)(dot - assignment), kl = (size_t)(eq - dot - 1);
    if (ll == 0 || ll >= sizeof label || kl == 0 || kl >= sizeof key) {
        err_set(e, "--set %s: expected section.key=value", assignment);
        return -1;
    }
    memcpy(label, assignment, ll);
    label[ll] = 0;
    memcpy(key, dot + 1, kl);
    key[kl] = 0;
    const char *val = eq + 1;
    if (!*val) {
        err_set(e, "--set %s: empty value", assignment);
        return -1;
    }
    Section *s = NULL;
    for (int i = 0; i < ini->n_sec; i++)
        if (strcmp(ini->sec[i].label, label) == 0) s = &ini->sec[i];
    char renamed[128];
    if (!s && renamed_label(label, renamed, sizeof renamed)) {
        for (int i = 0; i < ini->n_sec; i++)
            if (strcmp(ini->sec[i].label, renamed) == 0) s = &ini->sec[i];
        if (s)
            fprintf(stderr,
                    "convnet-dist: note: --set %s: that layer is now named %s, as Keras "
                    "names it (the old name still works here)\n",
                    assignment, renamed);
    }
    if (!s) {
        /* Settings sections ([train], [data], ...) may be absent from a job; layers may not. */
        static const char *const settings[] = {"train", "data", "checkpoint", "dist", NULL};
        for (int i = 0; settings[i] && !s; i++)
            if (strcmp(label, settings[i]) == 0) s = add_section(ini, label, ini->path, 0);
        if (!s) {
            err_set(e, "--set %s: the job %s has no section '%s'", assignment, ini->path, label);
            return -1;
        }
    }
    KeyVal *kv = ini_find_key(s, key);
    if (kv) {
        free(kv->value);
        kv->value = xstrdup(val);
        kv->line = 0;
    } else
        ini_add_key(s, key, val, 0);
    return 0;
}

void ini_print_resolved(const IniFile *ini, FILE *f) {
    for (int i = 0; i < ini->n_sec; i++) {
        const Section *s = &ini->sec[i];
        const char *file = ini_section_file(ini, s);
        int included = strcmp(file, ini->path) != 0, labelled = strcmp(s->name, s->label) != 0;
        fprintf(f, "[%s]%s%s%s%s%s\n", s->name, labelled || included ? "  # " : "",
                labelled ? s->label : "", labelled && included ? ", " : "", included ? "from " : "",
                included ? file : "");
        for (int k = 0; k < s->n_kv; k++)
            fprintf(f, "  %-20s = %s%s\n", s->kv[k].key, s->kv[k].value,
                    s->kv[k].resolved    ? "   (default)"
                    : s->kv[k].line == 0 ? "   (--set)"
                                         : "");
    }
}

/* The label a section had before Keras naming ("maxpooling2d_1" for max_pooling2d_1 of a
 * [maxpooling2d] section), so that hashes, and with them checkpoints, stay what they were. */
static const char *hashed_label(const Section *s, char *buf, size_t n) {
    const char *base = ini_keras_label_base(s->name);
    size_t k = strlen(base);
    if (base == s->name || strncmp(s->label, base, k) != 0) return s->label;
    snprintf(buf, n, "%s%s", s->name, s->label + k);
    return buf;
}

/* Does `pattern` ("section.key", "section.*" or "section.key=value") match key k of s? */
static int hash_pattern_matches(const char *pattern, const Section *s, int k) {
    const char *dot = strchr(pattern, '.');
    if (!dot || strncmp(pattern, s->name, (size_t)(dot - pattern)) != 0 || s->name[dot - pattern])
        return 0;
    const char *key = dot + 1, *eq = strchr(key, '=');
    if (!eq) return !strcmp(key, "*") || !strcmp(key, s->kv[k].key);
    size_t n = (size_t)(eq - key);
    return strncmp(key, s->kv[k].key, n) == 0 && s->kv[k].key[n] == 0 &&
           !strcmp(eq + 1, s->kv[k].value);
}

uint64_t ini_hash(const IniFile *ini, const char *const *ignore) {
    uint64_t h = HASH_SEED;
    for (int i = 0; i < ini->n_sec; i++) {
        const Section *s = &ini->sec[i];
        char old[160];
        const char *label = hashed_label(s, old, sizeof old);
        h = hash_bytes(h, label, strlen(label) + 1);
        for (int k = 0; k < s->n_kv; k++) {
            int skip = 0;
            for (int j = 0; ignore && ignore[j] && !skip; j++)
                skip = hash_pattern_matches(ignore[j], s, k);
            if (skip) continue;
            h = hash_bytes(h, s->kv[k].key, strlen(s->kv[k].key) + 1);
            /* a default layer name is the label: hashed as the label is */
            const char *value = s->kv[k].resolved && !strcmp(s->kv[k].key, "name") &&
                                        !strcmp(s->kv[k].value, s->label)
                                    ? label
                                    : s->kv[k].value;
            h = hash_bytes(h, value, strlen(value) + 1);
        }
    }
    return h;
}
