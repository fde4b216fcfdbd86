/* ini.h: the job-file syntax: INI sections of `key = value` lines.
 *
 * Owns reading a file into sections (in order, repeated section names allowed,
 * one per layer), command-line overrides (`--set section.key=value`), typed
 * getters that validate and remember the resolved value, and the check that
 * every key was used (typos are errors, with the line number).
 *
 * Syntax: `[name]` starts a section; `key = value`; `#` or `;` starts a comment
 * (whole-line, or after whitespace); blank lines ignored.
 *
 * `[include]` with its one key `file = PATH` (relative to the including file's folder) is
 * replaced by the sections of that file, read the same way (includes nest up to
 * INI_INCLUDE_DEPTH; a cycle is an error). Each section remembers the file it came from, and
 * every message about it or its keys names that file and line.
 */
#ifndef CONVNET_INI_H
#define CONVNET_INI_H

#include <stdio.h>

#include "common.h"

typedef struct {
    char *key;
    char *value;
    int line;     /* 0 when it came from the command line */
    int used;     /* read by a getter */
    int resolved; /* 1 when the value is a default filled in by a getter */
} KeyVal;

typedef struct Section {
    char *name;       /* header: "train", "conv2d", ... */
    char *label;      /* unique instance name: "train", "conv2d", "conv2d_1", ... (Keras naming) */
    const char *file; /* the file it was read from (owned by the IniFile; the job file for a
                       * section made by --set) */
    int line;         /* of its header in that file; 0 when made by --set */
    KeyVal *kv;
    int n_kv, cap_kv;
} Section;

typedef struct IniFile {
    char *path;   /* the job file (or the name given to ini_parse_string) */
    char **files; /* path, then every included file in the order read */
    int n_files, cap_files;
    Section *sec;
    int n_sec, cap_sec;
} IniFile;

#define INI_INCLUDE_DEPTH 16 /* [include] nesting limit */

/* Where files are read from: `read` as file_read_text (0 read, 1 absent, -1 error with e set),
 * `canonical` a malloc'd canonical name for cycle detection (NULL: realpath). The default is
 * the file system; tests and the fuzzer serve an in-memory file set. NULL restores it. */
typedef struct {
    int (*read)(const char *path, char **text, size_t *len, Err *e);
    char *(*canonical)(const char *path);
} IniFileSource;
void ini_set_file_source(const IniFileSource *src);

/* Read a file (or text that `name` stands for: its includes are relative to name's folder).
 * 0, or -1 with e naming the file and line. */
int ini_parse_file(IniFile *ini, const char *path, Err *e);
int ini_parse_string(IniFile *ini, const char *name, const char *text, Err *e);
void ini_free(IniFile *ini);

/* The file a section came from, for messages: s->file, or the job file when unset. */
const char *ini_section_file(const IniFile *ini, const Section *s);

/* The name Keras gives layers of section kind `name` ("max_pooling2d" for [maxpooling2d]),
 * from which labels are made; name itself for every other section. */
const char *ini_keras_label_base(const char *name);

/* Apply "label.key=value" (label as in Section.label, e.g. train.epochs or conv2d_1.filters). */
int ini_apply_override(IniFile *ini, const char *assignment, Err *e);

Section *ini_find(IniFile *ini, const char *name); /* first section with that name or NULL */

/* Typed getters. Each marks the key used, checks the value and range, and records the
 * default as the resolved value when the key is absent. `required` keys must be present.
 * Error messages name "FILE:LINE" (or "--set") and the key. 0 or -1. */
int sec_get_long(IniFile *ini, Section *s, const char *key, int required, long def, long lo,
                 long hi, long *out, Err *e);
int sec_get_int(IniFile *ini, Section *s, const char *key, int required, int def, int lo, int hi,
                int *out, Err *e);
int sec_get_float(IniFile *ini, Section *s, const char *key, int required, double def, double lo,
                  double hi, float *out, Err *e);
int sec_get_double(IniFile *ini, Section *s, const char *key, int required, double def, double lo,
                   double hi, double *out, Err *e);
int sec_get_bool(IniFile *ini, Section *s, const char *key, int def, int *out, Err *e);
/* `choices` is a NULL-terminated list; *out is the index of the match. */
int sec_get_enum(IniFile *ini, Section *s, const char *key, int required, int def,
                 const char *const *choices, int *out, Err *e);
/* Returns the string (owned by the section) or def; NULL with e set when required and absent. */
const char *sec_get_str(IniFile *ini, Section *s, const char *key, int required, const char *def,
                        Err *e);
/* One or two positive integers: "3" -> (3,3), "3,2" or "3x2" -> (3,2); (def_a, def_b) when
 * absent. */
int sec_get_pair(IniFile *ini, Section *s, const char *key, int required, int def_a, int def_b,
                 int lo, int hi, int *a, int *b, Err *e);
/* One float x -> (-x, x) as Keras factor arguments, or two "lo,hi". */
int sec_get_range(IniFile *ini, Section *s, const char *key, int required, double def, float *lo,
                  float *hi, Err *e);

/* Error for the first key in s that no getter used: "unknown key". 0 or -1. */
int sec_check_unused(IniFile *ini, Section *s, Err *e);

/* Print every section with its resolved keys (defaults marked, included sections' files named)
 * to f. */
void ini_print_resolved(const IniFile *ini, FILE *f);

/* Hash of every section's resolved keys, skipping keys listed in `ignore` (NULL-terminated:
 * "section.key", "section.*", or "section.key=value" to skip the key only at that value): two
 * ranks with the same hash resolved the same job. */
uint64_t ini_hash(const IniFile *ini, const char *const *ignore);

#endif
