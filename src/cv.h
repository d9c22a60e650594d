/*
** cv.h -- types and prototypes shared between the files of converse.core.
** Every symbol exported from one file to another carries the cv_ prefix.
*/
#ifndef CV_H
#define CV_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

#define CV_VERSION        "0.1.0"

/* Functions that raise a Lua error never return (lua_error longjmps). */
#if defined(__GNUC__) || defined(__clang__)
#define CV_NORETURN       __attribute__((noreturn))
#define CV_UNREACHABLE()  __builtin_unreachable()
#else
#define CV_NORETURN
#define CV_UNREACHABLE()  ((void)0)
#endif

/* The module is built with -fvisibility=hidden (Makefile): only
** luaopen_converse_core is exported, so calls between the files of the
** module are direct (no PLT) and may be inlined. */
#if defined(__GNUC__) || defined(__clang__)
#define CV_EXPORT         __attribute__((visibility("default")))
#else
#define CV_EXPORT
#endif

/* JSON nesting: the default limit, and the most any option may ask for.
** The parser and the encoder recurse once per level; CV_JSON_DEPTH_MAX
** keeps that well inside a C stack (an nginx worker's or a coroutine's). */
#define CV_JSON_DEPTH     512
#define CV_JSON_DEPTH_MAX 10000

/* err.code of the one out-of-memory error (kind "json", never retried). */
#define CV_CODE_OOM       "OUT_OF_MEMORY"

/* Registry keys of the shared metatables. */
#define CV_ERROR_MT       "converse.Error"     /* error objects (SPEC 2) */
#define CV_ARRAY_MT       "converse.array"     /* marks a table as a JSON array */

/* ---- converse_core.c ---------------------------------------------------- */
/* Register a userdata class: metamethods `meta`, methods in __index. */
void cv_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);
/* Option `key` of the table at idx, a byte count: dflt when absent, 0 when
** not positive, at most 1e15 (a number is required). */
size_t cv_opt_size(lua_State *L, int idx, const char *key, size_t dflt);
/* Push core.EMPTY, the sentinel for "a 2xx response with an empty body". */
void cv_push_empty(lua_State *L);

/* ---- buffer.c ---------------------------------------------------------- */
/* The growable byte buffer. Never raises: 0 = done, -1 = out of memory
** (the buffer is left as it was). A zeroed cv_buf is an empty buffer. */
typedef struct cv_buf {
  char   *p;
  size_t  len, cap;
} cv_buf;
int     cv_buf_grow(cv_buf *b, size_t extra);      /* the slow half of cv_buf_reserve */
int     cv_buf_add(cv_buf *b, const char *p, size_t n);
void    cv_buf_free(cv_buf *b);
cv_buf *cv_buf_box(lua_State *L);   /* pushes a buffer owned by a userdata (__gc frees it) */
void    cv_buf_open(lua_State *L);  /* registers the box metatable */
/* Make room for `extra` more bytes after b->len. */
static inline int cv_buf_reserve(cv_buf *b, size_t extra) {
  return b->cap - b->len >= extra ? 0 : cv_buf_grow(b, extra);
}
/* Raise the out-of-memory error object: kind "json", code CV_CODE_OOM. */
CV_NORETURN int cv_error_oom(lua_State *L, const char *what);

/* ---- errors.c ---------------------------------------------------------- */
/* Push a new error object {kind=, message=} with the shared metatable. */
void cv_error_push(lua_State *L, const char *kind, const char *msg);
/* Build an error object from a printf-style message and raise it.
** Callers must not hold malloc'd memory that only they can free. */
CV_NORETURN int cv_error_raise(lua_State *L, const char *kind, const char *fmt, ...);
/* A transport's failure as its methods answer it: nil, kind, message,
** permanent (the transport contract, lua/converse/transport/init.lua).
** Returns 4, the number of values pushed. */
int  cv_push_failure(lua_State *L, const char *kind, const char *msg, int permanent);
void cv_errors_open(lua_State *L);     /* creates the metatables */

/* ---- json_encode.c ----------------------------------------------------- */
int cv_json_encode(lua_State *L);      /* core.json_encode(v [, opts]) */

/* ---- json_decode.c ----------------------------------------------------- */
int cv_json_decode(lua_State *L);      /* core.json_decode(s [, opts]) */
void cv_decoder_open(lua_State *L);    /* registers converse.Decoder; pushes core.decoder */

#define CV_DECODER_MT     "converse.Decoder"
typedef struct cv_decoder cv_decoder;
enum { CV_DEC_MORE = 0, CV_DEC_RECORD = 1, CV_DEC_DONE = 2 };
cv_decoder *cv_decoder_new(lua_State *L, int opts_idx);
cv_decoder *cv_decoder_check(lua_State *L, int idx);
int      cv_decoder_feed(cv_decoder *d, const char *p, size_t n);  /* never raises */
size_t   cv_decoder_pending(const cv_decoder *d);
void     cv_decoder_eof(cv_decoder *d);
/* Push the next record: a Lua value, or its JSON text in raw mode. */
int      cv_decoder_next(lua_State *L, cv_decoder *d);
int      cv_decoder_skip(lua_State *L, cv_decoder *d);
void     cv_decoder_push_envelope(lua_State *L, cv_decoder *d);
uint64_t cv_decoder_count(const cv_decoder *d);
void     cv_decoder_reset(cv_decoder *d);
void     cv_decoder_trim(cv_decoder *d);    /* free the input buffers now (no more input) */

/* ---- body.c (where response body bytes go; sans I/O) ------------------- */
#include <zlib.h>

enum { CV_ENC_IDENTITY, CV_ENC_GZIP, CV_ENC_DEFLATE, CV_ENC_UNKNOWN };
enum {
  CV_BODY_OK,                   /* keep handing over bytes */
  CV_BODY_FULL,                 /* an error body reached its cap: read no more */
  CV_BODY_TOO_BIG,              /* a text body went over max_body */
  CV_BODY_DECODER,              /* the decoder refused bytes: its next() says why */
  CV_BODY_OOM,
  CV_BODY_BAD_ENCODING,
  CV_BODY_TRUNCATED_ENCODING,
  CV_BODY_PENDING               /* cv_body_finish: more to inflate once the decoder drains */
};
typedef struct cv_body {
  cv_decoder *dec;              /* 2xx JSON: bytes go here; NULL: kept as text */
  cv_buf      text;             /* text body or error body */
  size_t      text_cap;         /* max_body, or max_error_body for an error body */
  int         error_body, encoding, state, starved;
  size_t      starved_at;       /* the decoder's unread bytes when it said it was starved */
  z_stream    z;
  int         z_on, z_end;
  cv_buf      held;             /* compressed bytes not inflated yet: held.p[used, len) */
  size_t      used;
  uint64_t    wire, decoded;    /* bytes handed over, bytes after decoding */
} cv_body;
/* CV_ENC_* of a Content-Encoding value (n bytes). */
int    cv_body_encoding(const char *name, size_t n);
void   cv_body_init(cv_body *b, cv_decoder *dec, int error_body, size_t text_cap, int encoding);
void   cv_body_free(cv_body *b);
/* May the transport hand over more bytes now? */
int    cv_body_accepts(const cv_body *b);
/* Take n wire bytes (all of them); inflate at most `limit` bytes now. */
void   cv_body_write(cv_body *b, const char *p, size_t n, size_t limit);
/* Inflate held bytes (at most `limit` out) now that the decoder may have room. */
size_t cv_body_pump(cv_body *b, size_t limit);
/* The decoder says it needs more bytes for its next record (1) or not (0). */
void   cv_body_starve(cv_body *b, int starved);
int    cv_body_drained(const cv_body *b);           /* nothing compressed is held */
/* The wire body ended: inflate what is held (at most `limit` bytes now).
** CV_BODY_OK: complete; CV_BODY_PENDING: call again once the decoder drained;
** else why the body is bad. */
int    cv_body_finish(cv_body *b, size_t limit);
const char *cv_body_error(int state);               /* message for a failed state */
/* For the transports' next(): the decoder's next record, pushed (true
** when skipped): CV_DEC_RECORD; its end, nil pushed: CV_DEC_DONE; nothing
** pushed, CV_DEC_MORE: it needs more bytes, which the body now lets in. */
int    cv_body_next(lua_State *L, cv_body *b, int skip);
/* Push the failure of a body that cannot be read on (returns 4); raises
** the out-of-memory error object for CV_BODY_OOM. */
int    cv_body_push_failure(lua_State *L, const cv_body *b);

/* ---- http.c (HTTP/1.1 response framing; sans I/O) ------------------------ */
#define CV_HTTP_HEAD_CAP  ((size_t)256 << 10)   /* head lines (1xx heads too) + trailers */
enum {
  CV_HTTP_NEED_DATA,            /* every byte given was used: give more, or cv_http_eof */
  CV_HTTP_INFO,                 /* a 1xx head was read and skipped */
  CV_HTTP_HEAD,                 /* the final head was read */
  CV_HTTP_BODY,                 /* body bytes at ev.p[0, ev.n), inside the caller's input */
  CV_HTTP_DONE,                 /* the response ended */
  CV_HTTP_ERROR                 /* not a valid response: h->error */
};
typedef struct cv_http_event {
  int         type;
  const char *p;
  size_t      n;
} cv_http_event;
typedef struct cv_http {
  int         state, head_request;
  int         status, minor;    /* of the last status line: 200, HTTP/1.<minor> */
  int         keep_alive;       /* the connection may carry another request afterwards */
  int         chunked, has_length, conn_close, keep_alive_token;
  int         encoding;         /* CV_ENC_* of Content-Encoding */
  uint64_t    length, left;     /* Content-Length; body or chunk bytes still to come */
  uint64_t    received;         /* bytes taken so far */
  size_t      head_bytes;       /* head lines and trailers so far (<= CV_HTTP_HEAD_CAP) */
  cv_buf      line;             /* a line cut by the end of the input */
  cv_buf      fields;           /* the head's fields: "name: value\n", names in lower case */
  const char *error;            /* why the response is invalid (static text) */
  int         permanent;        /* trying again cannot help */
} cv_http;
void   cv_http_init(cv_http *h, int head_request);
void   cv_http_free(cv_http *h);
/* Use bytes of p[0, n) and answer one event (returns the bytes used). */
size_t cv_http_parse(cv_http *h, const char *p, size_t n, cv_http_event *ev);
/* The peer closed the connection: CV_HTTP_DONE or CV_HTTP_ERROR. */
int    cv_http_eof(cv_http *h);
int    cv_http_finished(const cv_http *h);          /* DONE or ERROR */
int    cv_http_in_body(const cv_http *h);           /* after the final head, before DONE */

/* ---- http_response.c (framing + cv_body + decoder, for Lua) ------------- */
void cv_http_open(lua_State *L);   /* sets core.http_response, core.http_parse into the table on top */

/* ---- transport.c ------------------------------------------------------- */
void cv_transport_open(lua_State *L);  /* registers the metatables; pushes core.transport */

/* ---- signals.c (SIGINT/SIGTERM as a flag; see the file's header) ------- */
int  cv_signal_pending(void);          /* 0, or the signal that arrived */
void cv_signals_open(lua_State *L);    /* sets its functions into the table on top */

/* ---- fs.c (fsync, truncate, flock, isatty for the sync layer) ---------- */
void cv_fs_open(lua_State *L);         /* sets its functions into the table on top */

/* ---- paging.c (sans-I/O paging state machine) -------------------------- */
void cv_paging_open(lua_State *L);     /* registers converse.Paging; pushes core.paging */
int  cv_fingerprint(lua_State *L);     /* core.fingerprint(s) -> 16 hex digits */

/* ---- sha256.c ---------------------------------------------------------- */
int  cv_sha256(lua_State *L);          /* core.sha256(s) -> 64 hex digits */

/* ---- policy.c (sans-I/O: retry, backoff, rate limits) ------------------- */
void cv_policy_open(lua_State *L);     /* sets its functions into the table on top */

#endif
