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

/* Registry keys of the shared metatables. */
#define CV_ERROR_MT       "converse.Error"     /* error objects (SPEC 2) */
#define CV_ARRAY_MT       "converse.array"     /* marks a table as a JSON array */

/* ---- converse_core.c ---------------------------------------------------- */
/* Register a userdata class: metamethods `meta`, methods in __index. */
void cv_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);

/* ---- errors.c ---------------------------------------------------------- */
/* Push a new error object {kind=, message=} with the shared metatable. */
void cv_error_push(lua_State *L, const char *kind, const char *msg);
/* Build an error object from a printf-style message and raise it.
** Callers must not hold malloc'd memory that only they can free. */
int cv_error_raise(lua_State *L, const char *kind, const char *fmt, ...);
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
int      cv_decoder_next(lua_State *L, cv_decoder *d);
int      cv_decoder_skip(lua_State *L, cv_decoder *d);
void     cv_decoder_push_envelope(lua_State *L, cv_decoder *d);
uint64_t cv_decoder_count(const cv_decoder *d);
void     cv_decoder_reset(cv_decoder *d);
void     cv_decoder_trim(cv_decoder *d);    /* free the input buffers now (no more input) */

/* ---- transport.c ------------------------------------------------------- */
void cv_transport_open(lua_State *L);  /* registers the metatables; pushes core.transport */

/* ---- paging.c (sans-I/O paging state machine) -------------------------- */
void cv_paging_open(lua_State *L);     /* registers converse.Paging; pushes core.paging */

/* ---- policy.c (sans-I/O: retry, backoff, rate limits) ------------------- */
void cv_policy_open(lua_State *L);     /* sets its functions into the table on top */

#endif
