/*
** json_internal.h -- what the JSON files share: the parser state, the
** grammar helpers both parsers use (json_decode.c builds Lua values,
** json_raw.c copies minified text), the key cache and the stack window.
**
** Invariants every parser keeps:
** - the text is [base, end); when P->final is 0 the document may go on past
**   end, and reaching end answers "incomplete" (NULL) instead of an error;
** - P->depth is the nesting depth of the container being parsed (0 = top
**   level), never above P->max_depth (<= CV_JSON_DEPTH_MAX);
** - every error is raised by cv_json_error: a "json" error object whose
**   `offset` is the absolute document offset of the byte at fault.
*/
#ifndef CV_JSON_INTERNAL_H
#define CV_JSON_INTERNAL_H

#include <stdarg.h>
#include <string.h>

#include "cv.h"

#define CV_JSON_MAX_STRING ((size_t)64 << 20)
#define CV_HINT_DEPTH      8              /* object/array size hints kept per depth */

/* ---- the key cache ------------------------------------------------------
** One slot per (object depth 1..CV_KEY_DEPTHS, position in the parent mod
** CV_KEY_WAYS) remembers the key sequence of an object seen there.
** Invariant: the n keys of a slot are pairwise distinct decoded strings,
** in the order of one object that had them as its first n keys.
** So an object whose first keys are byte-equal, in order, to the slot's
** needs no duplicate check for them, and its keys are pushed from the
** cache (no hashing, no interning). Slot s's Lua half is the table
** keys[s + 1]: [i] = the decoded key i, [CV_KEY_MAX + i] = its raw text
** when that differs (escapes). k[i].p points into one of those strings,
** which the table keeps alive; n is raised only after both are stored. */
#define CV_KEY_DEPTHS      6
#define CV_KEY_WAYS        4
#define CV_KEY_SLOTS       (CV_KEY_DEPTHS * CV_KEY_WAYS)
#define CV_KEY_MAX         64

typedef struct cv_keyref { const char *p; size_t n; } cv_keyref;
typedef struct cv_keyslot { cv_keyref k[CV_KEY_MAX]; } cv_keyslot;
typedef struct cv_keycache {
  int        n[CV_KEY_SLOTS];            /* keys held per slot (only these are read) */
  cv_keyslot slot[CV_KEY_SLOTS];
} cv_keycache;

/* Levels between two moves of the Lua stack window (cv_json_spill). */
#define CV_JSON_WINDOW     1000

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
  int          keys_idx;    /* absolute stack index of the key cache table */
  cv_keycache *keys;        /* its C half; NULL = no cache */
  int          way;         /* position of the value in its parent (cache slot) */
  int          window;      /* first stack slot of the current window */
  int          spill_at;    /* depth at which the window moves next */
  cv_buf      *scratch;     /* escaped strings, long numbers (owned by a userdata) */
  int         *obj_hint;    /* CV_HINT_DEPTH sizes of the last objects seen */
  int         *arr_hint;
  cv_buf      *out;         /* raw mode: minified text written so far */
  const char  *run;         /* raw mode: start of the input not yet copied to out */
} cv_parser;

/* Fill the fields every parse needs; the rest is zero (no cache, no hints).
** Call it after pushing the caller's fixed slots: the window starts above. */
void cv_json_parser_init(cv_parser *P, lua_State *L, const char *s, size_t n,
                         uint64_t off, int final, int depth);

/* Parse one value at p (whitespace already skipped) and push it.
** Returns the position after the value, or NULL when the text ends before
** the value does and P->final is 0 (nothing useful is left on the stack:
** the caller restores its top). Malformed input raises a "json" error. */
const char *cv_json_value(cv_parser *P, const char *p);
/* p = first byte after an opening quote: validate, push the decoded string. */
const char *cv_json_string(cv_parser *P, const char *p);
/* Raw mode (json_raw.c): validate the value at p exactly as cv_json_value
** would, and push its text with the whitespace outside strings removed.
** Needs P->out (emptied first). Same return convention. */
const char *cv_json_raw(cv_parser *P, const char *p);

/* Raise a "json" error object with field `offset` = the absolute offset of p. */
int cv_json_error(cv_parser *P, const char *p, const char *fmt, ...);
int cv_json_verror(cv_parser *P, const char *p, const char *fmt, va_list ap);
/* The duplicate-key error for the string on top of the stack; at = its quote. */
int cv_json_dup_key(cv_parser *P, const char *at);

/* Incomplete input: NULL while more may come, an error at the real end. */
#define CV_MORE(P, p) \
  ((P)->final ? (cv_json_error((P), (p), "unexpected end of input"), (const char *)NULL) \
              : (const char *)NULL)

/* Options shared by json.decode and the decoder: max_depth, max_string,
** big_integers. Reads the table at idx (0 = none). */
void cv_json_options(lua_State *L, int idx, int *max_depth, size_t *max_string,
                     int *big_string);

/* ---- the Lua stack window ----------------------------------------------
** LuaJIT and Lua 5.1 give a C function at most 8000 stack slots, fewer
** than CV_JSON_DEPTH_MAX levels need. Every CV_JSON_WINDOW levels the
** slots [from, top - keep] move into a table left at `from`, the `keep`
** values on top just above it; unspill puts them back where they were, so
** absolute indexes held by the outer levels stay valid. */
void cv_json_spill(lua_State *L, int from, int keep);
void cv_json_unspill(lua_State *L, int from);

/* ---- the key cache (json_decode.c) ------------------------------------ */
/* The slot of the object at P->depth (entered, P->way = its place in the
** parent), its Lua table pushed; or -1 (nothing pushed) when the object is
** too deep or there is no cache. */
int cv_json_slot_push(cv_parser *P);
/* Store the decoded key on top of the stack as key i of slot s, if the slot
** holds exactly i keys; raw/rawn = its text between the quotes.
** slot_idx = the stack index of the slot's table. */
void cv_json_slot_store(cv_parser *P, int s, int slot_idx, int i, const char *raw,
                        size_t rawn);

/* Is key i of slot s the string at p (after its opening quote)? Then the
** closing quote follows the cached bytes. */
static inline size_t cv_json_slot_hit(const cv_parser *P, int s, int i, const char *p) {
  const cv_keyref *k;
  if (i >= P->keys->n[s]) return 0;
  k = &P->keys->slot[s].k[i];
  if ((size_t)(P->end - p) <= k->n || p[k->n] != '"' || memcmp(p, k->p, k->n) != 0) return 0;
  return k->n + 1;                          /* bytes from p to after the quote */
}

/* ---- grammar helpers shared by both parsers ---------------------------- */

static inline const char *cv_json_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

#define CV_IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)

/* One more level of nesting at p ('[' or '{'). */
static inline void cv_json_enter(cv_parser *P, const char *p) {
  if (++P->depth > P->max_depth)
    cv_json_error(P, p, "nesting deeper than max_depth (%d)", P->max_depth);
  if (!lua_checkstack(P->L, 8)) cv_json_error(P, p, "Lua stack exhausted");
}

/* Length of the valid UTF-8 sequence at s (n bytes available): >0 valid,
** 0 invalid, -1 cut short by the end of the buffer. */
static inline int cv_utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0], lo = 0x80, hi = 0xBF;
  int len;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;               /* no UTF-16 surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;               /* nothing above U+10FFFF */
  } else return 0;
  if (n < 2) return -1;
  if (s[1] < lo || s[1] > hi) return 0;
  if (len >= 3) {
    if (n < 3) return -1;
    if ((s[2] & 0xC0) != 0x80) return 0;
  }
  if (len == 4) {
    if (n < 4) return -1;
    if ((s[3] & 0xC0) != 0x80) return 0;
  }
  return len;
}

/* Does the 8-byte word hold a byte that ends a plain ASCII run:
** '"', '\\', a control character, or a byte >= 0x80? */
static inline int cv_special8(const char *p) {
  uint64_t x, q, b;
  const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
  memcpy(&x, p, 8);
  q = x ^ (ones * '"');
  b = x ^ (ones * '\\');
  return (((x - ones * 0x20) | (q - ones) | (b - ones) | x) & high) != 0;
}

/* Four hex digits at p -> code unit, or -1. */
static inline long cv_hex4(const char *p) {
  long v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    int c = (unsigned char)p[i], d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = (v << 4) | d;
  }
  return v;
}

/* The backslash escape at p (at least 2 bytes available): its code point
** (a surrogate pair joined), *len = its length in the text. Returns -2 when
** the text ends inside it (not final), raises on a bad escape. */
long cv_json_escape(cv_parser *P, const char *p, size_t *len);

/* A number's grammar, shared by both parsers. */
typedef struct cv_number {
  uint64_t m;               /* the significant digits (up to 19) */
  int      neg, is_float, overflow, exp10;
} cv_number;

/* Scan the number at p ('-' or a digit): the position after it, or NULL
** when more digits may follow (not final). Raises on a malformed number. */
static inline const char *cv_json_number(cv_parser *P, const char *p, cv_number *n) {
  const char *s = p, *end = P->end;
  uint64_t m = 0;
  n->neg = n->is_float = n->overflow = n->exp10 = 0;
  if (*p == '-') {
    n->neg = 1;
    if (++p >= end) return CV_MORE(P, p);
  }
  if (*p == '0') {
    p++;
    if (p < end && CV_IS_DIGIT(*p)) cv_json_error(P, s, "number with a leading zero");
  } else if (CV_IS_DIGIT(*p)) {
    do {
      unsigned d = (unsigned)(*p - '0');
      if (m < 1844674407370955161ULL || (m == 1844674407370955161ULL && d <= 5))
        m = m * 10 + d;
      else
        n->overflow = 1;
      p++;
    } while (p < end && CV_IS_DIGIT(*p));
  } else {
    cv_json_error(P, s, "invalid number");
  }
  if (p < end && *p == '.') {
    n->is_float = 1;
    if (++p >= end) return CV_MORE(P, p);
    if (!CV_IS_DIGIT(*p)) cv_json_error(P, p, "digit expected after '.'");
    do {
      if (m < 100000000000000000ULL) { m = m * 10 + (unsigned)(*p - '0'); n->exp10--; }
      else n->overflow = 1;
      p++;
    } while (p < end && CV_IS_DIGIT(*p));
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    int eneg = 0, ev = 0;
    n->is_float = 1;
    if (++p >= end) return CV_MORE(P, p);
    if (*p == '+' || *p == '-') {
      eneg = *p == '-';
      if (++p >= end) return CV_MORE(P, p);
    }
    if (!CV_IS_DIGIT(*p)) cv_json_error(P, p, "digit expected in exponent");
    do {
      if (ev < 100000) ev = ev * 10 + (*p - '0');
      p++;
    } while (p < end && CV_IS_DIGIT(*p));
    n->exp10 += eneg ? -ev : ev;
  }
  if (p >= end && !P->final) return NULL;       /* more digits may follow */
  n->m = m;
  return p;
}

/* The literal `word` (n bytes) at p. */
static inline const char *cv_json_literal(cv_parser *P, const char *p, const char *word,
                                          size_t n) {
  size_t have = (size_t)(P->end - p);
  if (memcmp(p, word, have < n ? have : n) != 0) cv_json_error(P, p, "invalid literal");
  if (have < n) return CV_MORE(P, p);
  return p + n;
}

/* A byte that cannot start a value: raises. */
const char *cv_json_unexpected(cv_parser *P, const char *p);

#endif
