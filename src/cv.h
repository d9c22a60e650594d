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

#endif
