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

/* Out of line: keeps cv_json_value a small dispatcher (cheap to call). */
#if defined(__GNUC__) || defined(__clang__)
#define CV_JSON_NOINLINE __attribute__((noinline))
#else
#define CV_JSON_NOINLINE
#endif
#define CV_HINT_DEPTH      8              /* object/array size hints kept per depth */

/* ---- the key cache ------------------------------------------------------
** One slot per (object depth 1..CV_KEY_DEPTHS, position in the parent mod
** CV_KEY_WAYS) learns the keys of the objects seen there, as Lua strings,
** and the shape of those objects: which key came first, which key followed
** which, last time. Each key of an object is predicted from the key before
** it; a key whose raw text is byte-equal to its prediction is pushed from
** the cache: no scanning, hashing or interning. Any other key is decoded,
** looked up among the slot's keys by its string, and the prediction it
** broke is learned again.
** Invariants: the n keys of a slot are pairwise distinct decoded strings;
** while an object is being parsed its slot only grows (keys are appended,
** never changed or removed), so the object's bit set `seen` of the slot's
** keys it has had is exact, and a cached key is a duplicate iff its bit is
** set. A key that is not in the slot (the slot is full) is checked the
** slow way, against the object's table (raw mode: a set of such keys).
** Slot s's Lua half is the table keys[s + 1]: [j + 1] = the decoded key j,
** [CV_KEY_MAX + j + 1] = its raw text when that differs (escapes), [key] =
** j, and [0] = the userdata holding the C half (cv_keyslot), which the
** cv_keycache points to. k[j].p points into one of those strings, which the
** table keeps alive; n is raised only after they are stored.
**
** The value cache: short string values (at most CV_VAL_MAX bytes, no
** escapes) of members whose values repeat (campaign, vendor, department)
** are pushed from a direct-mapped table of recent values, again with no
** hashing or interning by Lua. Each key scores its values: +1 per hit, -1
** per miss or value that cannot be cached; at 0 its values are no longer
** looked up (unique values such as ids and timestamps stop costing after
** CV_VSCORE_START of them). Array elements share the score of the member
** holding the array. Its Lua half: keys[CV_KEY_VALUES] = [h + 1] = the
** value in entry h, keys[CV_KEY_VALUES + 1] = the userdata (cv_valcache). */
#define CV_KEY_DEPTHS      6
#define CV_KEY_WAYS        4
#define CV_KEY_SLOTS       (CV_KEY_DEPTHS * CV_KEY_WAYS)
#define CV_KEY_MAX         64                    /* keys per slot: bits of `seen` */
#define CV_KEY_INLINE      24                    /* raw text + '"' compared a word at a time */
#define CV_KEY_MT          (CV_KEY_SLOTS + 1)    /* keys[]: the array metatable (decoders) */
#define CV_KEY_VALUES      (CV_KEY_SLOTS + 2)    /* keys[]: the value cache (two entries) */

#define CV_VAL_BITS        8
#define CV_VAL_ENTRIES     (1 << CV_VAL_BITS)
#define CV_VAL_MAX         40                    /* Lua 5.4's longest short string */
#define CV_VSCORE_START    16
#define CV_VSCORE_MAX      64

typedef struct cv_keyref {
  uint64_t    w[3], m[3];    /* n < CV_KEY_INLINE: raw text and '"' (w), the bytes that count (m) */
  const char *p;             /* raw text, n bytes (into a string of the slot table) */
  uint32_t    n;
  int16_t     next;          /* the key that followed this one last time; -1: none */
  uint8_t     vscore;        /* value cache: > 0 while this key's values are looked up */
} cv_keyref;

typedef struct cv_keyslot {
  int       n;               /* keys held */
  int       first;           /* the first key of the last object; -1: none */
  int       stale;           /* full, and its last object mostly missed: start again */
  cv_keyref k[CV_KEY_MAX];
} cv_keyslot;

typedef struct cv_keycache {
  cv_keyslot *slot[CV_KEY_SLOTS];              /* NULL until the slot is first used */
} cv_keycache;

typedef struct cv_valref {
  uint32_t n1;               /* length + 1; 0 = empty */
  char     b[CV_VAL_MAX + 8];  /* the value, zeros after it */
} cv_valref;
typedef struct cv_valcache { cv_valref v[CV_VAL_ENTRIES]; } cv_valcache;

/* What an object's keys have been so far (see parse_key). */
typedef struct cv_objkeys {
  cv_keyslot *S;             /* the slot's C half */
  int      s;                /* the slot, or -1 (no cache) */
  int      sidx;             /* stack index of the slot's table */
  int      pred;             /* the key predicted next, or -1 */
  int      last;             /* the slot's index of the previous key, or -1 */
  int      misses, count;    /* keys not predicted; keys */
  uint64_t seen;             /* bit j: the object had key j of the slot */
} cv_objkeys;

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
  int          vals_idx;    /* absolute stack index of the value cache's strings */
  cv_valcache *vals;        /* its C half; NULL = no value cache */
  cv_keyref   *vkey;        /* the member whose value is parsed now (value cache), or NULL */
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
/* Start the keys of the object at P->depth (entered; P->way = its place in
** the parent): o->s = its slot with the slot's table pushed (o->sidx), or
** -1 with nothing pushed (too deep, or no cache). */
void cv_json_keys_begin(cv_parser *P, cv_objkeys *o);
/* The object ended. */
void cv_json_keys_end(cv_parser *P, cv_objkeys *o);
/* The key at p (after its quote) was not the prediction; it was decoded
** to the string on top of the stack and ends at q (after its quote).
** Find it in the slot, or add it; learn where it came. Returns 1 when it
** is a duplicate of a cached key, -1 when the slot does not hold it (the
** caller checks it), 0 otherwise. */
int cv_json_key_missed(cv_parser *P, cv_objkeys *o, const char *p, const char *q);

/* Push the value cache's strings table (keys[CV_KEY_VALUES] of the key
** cache table at keys_idx, made when missing); returns its C half. */
cv_valcache *cv_json_vals_push(lua_State *L, int keys_idx);

/* The first k bytes of a word, in memory order (k = 0..8). */
typedef union cv_head { unsigned char c[8]; uint64_t u; } cv_head;
extern const cv_head cv_heads[9];

/* Are the n bytes at p those at w? p is readable for n rounded up to 8
** bytes; w holds zeros after its n bytes up to there. */
static inline int cv_words_eq(const char *p, const char *w, size_t n) {
  uint64_t a, b;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&a, p + i, 8);
    memcpy(&b, w + i, 8);
    if (a != b) return 0;
  }
  if (i == n) return 1;
  memcpy(&a, p + i, 8);
  memcpy(&b, w + i, 8);
  return (a & cv_heads[n - i].u) == b;
}

/* Is the key at p (after its opening quote) the cached key k? The bytes
** from p to after its closing quote when the raw text matches, else 0. */
static inline size_t cv_json_key_hit(const cv_parser *P, const cv_keyref *k, const char *p) {
  size_t n = k->n;
  if (n < CV_KEY_INLINE && P->end - p >= CV_KEY_INLINE) {    /* text and quote, 3 words */
    uint64_t a, b, c;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    memcpy(&c, p + 16, 8);
    return (((a ^ k->w[0]) & k->m[0]) | ((b ^ k->w[1]) & k->m[1]) | ((c ^ k->w[2]) & k->m[2]))
           == 0 ? n + 1 : 0;
  }
  if ((size_t)(P->end - p) <= n || p[n] != '"' || memcmp(p, k->p, n) != 0) return 0;
  return n + 1;
}

/* ---- grammar helpers shared by both parsers ---------------------------- */

static inline const char *cv_json_ws(const char *p, const char *end) {
  if (p < end && (unsigned char)*p > ' ') return p;      /* the usual case: none */
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
** 0 invalid, -1 cut short by the end of the buffer.
** cv_utf8_lead[c] describes a lead byte c: the sequence's length (0: c
** cannot lead one), the range [lo, lo + span] of its second byte, and the
** test of its third and fourth bytes (s[2] | s[3] << 8, masked: mask,
** equal to val). With 4 bytes available every test is made at once, with
** no branch on the length (valid text takes every branch the same way). */
typedef struct cv_u8lead {
  unsigned char  len, lo, span;
  unsigned short mask, val;
} cv_u8lead;
extern const cv_u8lead cv_utf8_lead[256];

static inline int cv_utf8_seq(const unsigned char *s, size_t n) {
  const cv_u8lead *t = &cv_utf8_lead[s[0]];
  unsigned len = t->len;
  if (len == 0) return 0;
  if (n >= 4) {
    unsigned tail = (unsigned)s[2] | (unsigned)s[3] << 8;
    if ((unsigned)(s[1] - t->lo) > t->span || (tail & t->mask) != t->val) return 0;
    return (int)len;
  }
  if (n < 2) return -1;
  if ((unsigned)(s[1] - t->lo) > t->span) return 0;
  if (len >= 3) {
    if (n < 3) return -1;
    if ((s[2] & 0xC0) != 0x80) return 0;
  }
  if (len == 4) return -1;                  /* n < 4 */
  return (int)len;
}

/* ---- plain runs of string text ------------------------------------------
** A plain byte is printable ASCII other than '"' and '\\'; anything else
** ('"', '\\', a control character, a byte >= 0x80) ends a plain run.
** cv_plain_mask(p) looks at the CV_BLOCK bytes at p at once (SSE2: 16,
** else one 64-bit word) and is 0 when all are plain; otherwise
** CV_PLAIN_AT(m, p) is the offset of the first byte that is not. */
static inline int cv_plain_byte(unsigned char c) {
  return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#include <emmintrin.h>
#define CV_BLOCK 16
typedef unsigned cv_mask;
static inline cv_mask cv_plain_mask(const char *p) {
  __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
  __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                                        _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
                           _mm_cmplt_epi8(x, _mm_set1_epi8(0x20)));   /* signed: < 0x20 or >= 0x80 */
  return (cv_mask)_mm_movemask_epi8(m);
}
/* Copy the block at p to o (CV_BLOCK bytes). */
static inline void cv_block_copy(char *o, const char *p) {
  _mm_storeu_si128((__m128i *)(void *)o, _mm_loadu_si128((const __m128i *)(const void *)p));
}
#define CV_PLAIN_AT(m, p)  ((size_t)__builtin_ctz(m))
#else
#define CV_BLOCK 8
typedef uint64_t cv_mask;
/* The high bit of each byte that is not plain. The lowest such byte is
** exact (no borrow reaches it from below), which is all CV_PLAIN_AT reads. */
static inline cv_mask cv_plain_mask(const char *p) {
  uint64_t x, q, b;
  const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
  memcpy(&x, p, 8);
  q = x ^ (ones * '"');
  b = x ^ (ones * '\\');
  return ((x - ones * 0x20) | (q - ones) | (b - ones) | x) & high;
}
static inline void cv_block_copy(char *o, const char *p) { memcpy(o, p, 8); }
#if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) \
    && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define CV_PLAIN_AT(m, p)  ((size_t)__builtin_ctzll(m) >> 3)
#else
static inline size_t cv_plain_at(const char *p) {
  size_t i = 0;
  while (cv_plain_byte((unsigned char)p[i])) i++;   /* the mask says one is not */
  return i;
}
#define CV_PLAIN_AT(m, p)  cv_plain_at(p)
#endif
#endif

/* The first byte in [p, end) that is not plain, or end. */
static inline const char *cv_json_plain(const char *p, const char *end) {
  while (end - p >= CV_BLOCK) {
    cv_mask m = cv_plain_mask(p);
    if (m != 0) return p + CV_PLAIN_AT(m, p);
    p += CV_BLOCK;
  }
  while (p < end && cv_plain_byte((unsigned char)*p)) p++;
  return p;
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

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ \
    && (defined(__GNUC__) || defined(__clang__))
#define CV_SWAR_DIGITS 1
/* Digits 8 bytes at a time (first digit in the lowest byte). How many of
** the bytes of x are digits before the first that is not (0..8): every
** byte below that one is a digit, so no carry reaches it. */
static inline unsigned cv_digit_run(uint64_t x) {
  uint64_t nd = ((x & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL)
              | (((x + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL);
  return nd == 0 ? 8 : (unsigned)__builtin_ctzll(nd) >> 3;
}

/* The value of the first k (1..8) digits of x, and 10^k in *scale
** (fast_float's parse_eight_digits, on k digits shifted up behind zeros). */
static inline uint64_t cv_digits_value(uint64_t x, unsigned k, uint64_t *scale) {
  static const uint64_t POW[9] = { 1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                   100000000 };
  x -= 0x3030303030303030ULL;                /* digits are >= '0': no borrow below them */
  if (k < 8) x <<= 8 * (8 - k);
  x = x * 10 + (x >> 8);
  x = (((x & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32)))
       + (((x >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32;
  *scale = POW[k];
  return x;
}
#endif

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
#ifdef CV_SWAR_DIGITS
    while (m < 100000000000ULL && end - p >= 8) {  /* the loop below, up to 8 digits at once */
      uint64_t x, scale, v;
      unsigned k;
      memcpy(&x, p, 8);
      if ((k = cv_digit_run(x)) == 0) break;
      v = cv_digits_value(x, k, &scale);
      m = m * scale + v;
      p += k;
      if (k < 8) break;
    }
#endif
    while (p < end && CV_IS_DIGIT(*p)) {
      unsigned d = (unsigned)(*p - '0');
      if (m < 1844674407370955161ULL || (m == 1844674407370955161ULL && d <= 5))
        m = m * 10 + d;
      else
        n->overflow = 1;
      p++;
    }
  } else {
    cv_json_error(P, s, "invalid number");
  }
  if (p < end && *p == '.') {
    n->is_float = 1;
    if (++p >= end) return CV_MORE(P, p);
    if (!CV_IS_DIGIT(*p)) cv_json_error(P, p, "digit expected after '.'");
#ifdef CV_SWAR_DIGITS
    while (m < 1000000000ULL && end - p >= 8) {
      uint64_t x, scale, v;
      unsigned k;
      memcpy(&x, p, 8);
      if ((k = cv_digit_run(x)) == 0) break;
      v = cv_digits_value(x, k, &scale);
      m = m * scale + v;
      n->exp10 -= (int)k;
      p += k;
      if (k < 8) break;
    }
#endif
    while (p < end && CV_IS_DIGIT(*p)) {
      if (m < 100000000000000000ULL) { m = m * 10 + (unsigned)(*p - '0'); n->exp10--; }
      else n->overflow = 1;
      p++;
    }
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
