/*
** body.c -- where the bytes of a response body go (cv_body), sans I/O,
** shared by the libcurl transport and the nginx transport's framing parser.
**
** A transport hands over the body's wire bytes (de-chunked, still
** content-encoded) and asks cv_body_accepts() before each hand-over. The
** body decodes gzip/deflate itself (zlib) in bounded steps and routes the
** result: a 2xx body into its streaming JSON decoder, or kept as text (a
** 2xx body without decoder, up to max_body; an error body, up to
** max_error_body, after which it asks for no more bytes). For both
** transports' next() it also pulls the decoder's records (cv_body_next:
** the decoder's need for bytes goes into the flow control below) and
** words a bad body's failure (cv_body_push_failure).
**
** Memory is bounded whatever the server sends:
** - compressed bytes are held only until the decoder has room: at most one
**   hand-over (the transport stops handing over while any are held);
** - inflating produces at most `limit` bytes per call (the caller's bound
**   on the work of one C call), and only while the decoder holds less than
**   HIGH_WATER unread bytes -- or, when it is starved (it said it cannot
**   produce the next record without more bytes: a record larger than
**   HIGH_WATER), less than twice what it held when it said so; each time
**   it says so again the bound doubles, until the record completes or the
**   decoder's max_record stops it;
** - an error body is cut at its cap.
** So a 4 GiB gzip bomb costs what the decoder's limits allow, a response
** never stalls because a single record is larger than the high-water
** mark, and the bytes the decoder reads next were written moments before
** (256 KiB stay in a core's L2 cache on common CPUs; a backlog of
** megabytes would be read back from memory).
*/
#include <string.h>

#include "cv.h"

#define HIGH_WATER  ((size_t)256 << 10)   /* decoder backlog that stops the flow */

int cv_body_encoding(const char *name, size_t n) {
  while (n > 0 && (*name == ' ' || *name == '\t')) { name++; n--; }
  while (n > 0 && strchr(" \t\r\n", name[n - 1]) != NULL) n--;
  if (n == 0 || (n == 8 && strncmp(name, "identity", 8) == 0)) return CV_ENC_IDENTITY;
  if ((n == 4 && strncmp(name, "gzip", 4) == 0) || (n == 6 && strncmp(name, "x-gzip", 6) == 0))
    return CV_ENC_GZIP;
  if (n == 7 && strncmp(name, "deflate", 7) == 0) return CV_ENC_DEFLATE;
  return CV_ENC_UNKNOWN;
}

void cv_body_init(cv_body *b, cv_decoder *dec, int error_body, size_t text_cap, int encoding) {
  memset(b, 0, sizeof *b);
  b->dec = dec;
  b->error_body = error_body;
  b->text_cap = text_cap;
  b->encoding = encoding;
  if (encoding == CV_ENC_UNKNOWN) b->state = CV_BODY_BAD_ENCODING;
}

void cv_body_free(cv_body *b) {
  if (b->z_on) inflateEnd(&b->z);
  b->z_on = 0;
  cv_buf_free(&b->held);
  cv_buf_free(&b->text);
  b->dec = NULL;
}

static int decoder_has_room(const cv_body *b) {
  size_t pending = cv_decoder_pending(b->dec);
  return pending < HIGH_WATER || (b->starved && pending / 2 < b->starved_at);
}

int cv_body_accepts(const cv_body *b) {
  if (b->state != CV_BODY_OK) return 0;
  if (b->held.len > 0) return 0;
  return b->dec == NULL || decoder_has_room(b);
}

/* Decoded bytes to their destination. */
static void deliver(cv_body *b, const char *p, size_t n) {
  b->decoded += n;
  if (b->dec != NULL) {
    if (cv_decoder_feed(b->dec, p, n) != 0) b->state = CV_BODY_DECODER;  /* next() says why */
    return;
  }
  if (b->text.len + n > b->text_cap) {
    size_t room = b->text_cap - b->text.len;
    if (cv_buf_add(&b->text, p, room) != 0) { b->state = CV_BODY_OOM; return; }
    b->state = b->error_body ? CV_BODY_FULL : CV_BODY_TOO_BIG;
    return;
  }
  if (cv_buf_add(&b->text, p, n) != 0) b->state = CV_BODY_OOM;
}

static int start_inflate(cv_body *b) {
  /* 15 + 32: zlib or gzip header, detected; -15: raw deflate (see pump) */
  if (inflateInit2(&b->z, b->encoding == CV_ENC_GZIP ? 15 + 16 : 15 + 32) != Z_OK) {
    b->state = CV_BODY_OOM;
    return -1;
  }
  b->z_on = 1;
  return 0;
}

size_t cv_body_pump(cv_body *b, size_t limit) {
  char out[16384];
  size_t made = 0;
  if (b->held.len == 0 || b->state != CV_BODY_OK) return 0;
  if (!b->z_on && start_inflate(b) != 0) return 0;
  while (b->used < b->held.len && b->state == CV_BODY_OK && made < limit) {
    int rc;
    size_t got;
    if (b->dec != NULL && !decoder_has_room(b)) break;
    if (b->z_end) {
      /* bytes after the end of the compressed stream: another gzip member
      ** is legal; anything else is not */
      if (b->encoding == CV_ENC_GZIP && inflateReset(&b->z) == Z_OK) b->z_end = 0;
      else { b->state = CV_BODY_BAD_ENCODING; break; }
    }
    b->z.next_in = (unsigned char *)b->held.p + b->used;
    b->z.avail_in = (uInt)(b->held.len - b->used);
    b->z.next_out = (unsigned char *)out;
    b->z.avail_out = sizeof out;
    rc = inflate(&b->z, Z_NO_FLUSH);
    b->used = b->held.len - b->z.avail_in;
    got = sizeof out - b->z.avail_out;
    if (rc == Z_STREAM_END) b->z_end = 1;
    else if (rc == Z_MEM_ERROR) b->state = CV_BODY_OOM;
    else if (rc != Z_OK && !(rc == Z_BUF_ERROR && got == 0)) b->state = CV_BODY_BAD_ENCODING;
    if (got > 0) deliver(b, out, got);
    made += got;
    if (rc == Z_BUF_ERROR) break;                /* the input ends mid-stream: wait for more */
  }
  if (b->used == b->held.len) b->held.len = b->used = 0;
  return made;
}

void cv_body_write(cv_body *b, const char *p, size_t n, size_t limit) {
  b->wire += n;
  if (b->state != CV_BODY_OK || n == 0) return;
  if (b->encoding == CV_ENC_IDENTITY) { deliver(b, p, n); return; }
  if (cv_buf_add(&b->held, p, n) != 0) { b->state = CV_BODY_OOM; return; }
  cv_body_pump(b, limit);
}

int cv_body_drained(const cv_body *b) {
  return b->held.len == 0;
}

int cv_body_finish(cv_body *b, size_t limit) {
  if (b->state != CV_BODY_OK) return b->state;
  if (b->held.len > 0) {                                   /* still to inflate */
    size_t made = cv_body_pump(b, limit);
    if (b->state != CV_BODY_OK) return b->state;
    if (b->held.len > 0) {
      if (made > 0 || (b->dec != NULL && !decoder_has_room(b))) return CV_BODY_PENDING;
      b->state = CV_BODY_TRUNCATED_ENCODING;               /* input ends mid-stream */
      return b->state;
    }
  }
  if (b->encoding != CV_ENC_IDENTITY && b->wire > 0 && !b->z_end)
    b->state = CV_BODY_TRUNCATED_ENCODING;
  return b->state;
}

void cv_body_starve(cv_body *b, int starved) {
  b->starved = starved;
  b->starved_at = starved && b->dec != NULL ? cv_decoder_pending(b->dec) : 0;
}

/* ---- for the transports' Lua methods ---------------------------------- */

int cv_body_next(lua_State *L, cv_body *b, int skip) {
  int r = skip ? cv_decoder_skip(L, b->dec) : cv_decoder_next(L, b->dec);
  if (r == CV_DEC_RECORD) {
    cv_body_starve(b, 0);
    if (skip) lua_pushboolean(L, 1);
  } else if (r == CV_DEC_DONE) {
    lua_pushnil(L);
  } else {
    cv_body_starve(b, 1);
  }
  return r;
}

int cv_body_push_failure(lua_State *L, const cv_body *b) {
  if (b->state == CV_BODY_OOM) return cv_error_oom(L, "reading the response");
  if (b->encoding == CV_ENC_UNKNOWN)
    return cv_push_failure(L, "network",
                           "response uses a Content-Encoding that was not asked for", 1);
  return cv_push_failure(L, "network", cv_body_error(b->state), b->state == CV_BODY_TOO_BIG);
}

const char *cv_body_error(int state) {
  switch (state) {
    case CV_BODY_TOO_BIG:            return "response body larger than max_body";
    case CV_BODY_OOM:                return "out of memory reading the response body";
    case CV_BODY_BAD_ENCODING:       return "response body is not valid for its Content-Encoding";
    case CV_BODY_TRUNCATED_ENCODING: return "compressed response body ends before its end";
    default:                         return NULL;
  }
}
