/* ini_impl.h: what src/ini.c (the parser) shares with src/ini_get.c (the typed getters).
 * Private to those two files. */
#ifndef CONVNET_INI_IMPL_H
#define CONVNET_INI_IMPL_H

#include "ini.h"

/* s with leading and trailing white space removed (in place). */
char *ini_trim(char *s);
/* The key's entry in section s, or NULL. */
KeyVal *ini_find_key(Section *s, const char *key);
/* Appends key = value (line 0: from --set, -1: a recorded default). */
KeyVal *ini_add_key(Section *s, const char *key, const char *value, int line);

#endif
