/*
** json_internal.h -- the JSON value parser shared by json_decode.c (whole
** texts) and json_stream.c (the streaming decoder).
*/
#ifndef CV_JSON_INTERNAL_H
#define CV_JSON_INTERNAL_H

#include <stdarg.h>

#include "cv.h"

#define CV_JSON_MAX_STRING ((size_t)64 << 20)
#define CV_HINT_DEPTH      8              /* object/array size hints kept per depth */

typedef struct cv_parser {
  lua_State   *L;
  const char  *base;        /* start of the text being parsed */
  const char  *end;         /* one past the last byte available */
  uint64_t     base_off;    /* absolute document offset of base */
  int          final;       /* 1: end is the end of the document */
  int          depth, max_depth;
  size_t       max_string;
  int          big_string;  /* integers outside the exact range -> decimal text */
  int          array_mt;    /* absolute stack index of the array metatable */
  cv_buf      *scratch;     /* escaped strings, long numbers (owned by a userdata) */
  int         *obj_hint;    /* CV_HINT_DEPTH sizes of the last objects seen */
  int         *arr_hint;
} cv_parser;

/* Parse one value at p (whitespace already skipped) and push it.
** Returns the position after the value, or NULL when the text ends before
** the value does and P->final is 0 (nothing useful is left on the stack:
** the caller restores its top). Malformed input raises a "json" error. */
const char *cv_json_value(cv_parser *P, const char *p);

/* Raise a "json" error object with field `offset` = the absolute offset of p. */
int cv_json_error(cv_parser *P, const char *p, const char *fmt, ...);
int cv_json_verror(cv_parser *P, const char *p, const char *fmt, va_list ap);

static inline const char *cv_json_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

/* Options shared by json.decode and the decoder: max_depth, max_string,
** big_integers. Reads the table at idx (0 = none). */
void cv_json_options(lua_State *L, int idx, int *max_depth, size_t *max_string,
                     int *big_string);

#endif
