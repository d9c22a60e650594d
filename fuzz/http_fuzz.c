/*
** http_fuzz.c -- libFuzzer harness for the HTTP/1.1 framing parser
** (src/http.c; make fuzz-http).
**
** Input: byte 0 = flags (bit 0: the request was HEAD; bit 1: the peer
** closes after the last byte), bytes 1..4 = seed of the split points, the
** rest = the bytes a server sent. The bytes are parsed whole, then split at
** pseudo-random points (pieces of 1..N bytes), then one byte at a time.
** Properties (a failure traps):
** - the three runs give the same events: the same heads (status, fields,
**   keep-alive), the same body bytes (concatenated between other events),
**   the same end (done, or the same error);
** - every call uses bytes only as it says, and after done or error uses none;
** - memory stays bounded: the line buffer within CV_HTTP_HEAD_CAP, the
**   fields within twice that (": " is added to "name:value"), head bytes
**   within the cap.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct trace {
  cv_buf out;      /* events, serialized */
  cv_buf body;     /* body bytes since the last other event */
} trace;

static void check(int ok) { if (!ok) __builtin_trap(); }

static void add(trace *t, const void *p, size_t n) { check(cv_buf_add(&t->out, (const char *)p, n) == 0); }

static void flush_body(trace *t) {
  if (t->body.len == 0) return;
  add(t, "B", 1);
  add(t, &t->body.len, sizeof t->body.len);
  add(t, t->body.p, t->body.len);
  t->body.len = 0;
}

static void record(trace *t, const cv_http *h, const cv_http_event *ev) {
  if (ev->type == CV_HTTP_BODY) {
    check(ev->n > 0);
    check(cv_buf_add(&t->body, ev->p, ev->n) == 0);
    return;
  }
  flush_body(t);
  add(t, &ev->type, sizeof ev->type);
  if (ev->type == CV_HTTP_INFO || ev->type == CV_HTTP_HEAD) add(t, &h->status, sizeof h->status);
  if (ev->type == CV_HTTP_HEAD) {
    add(t, &h->keep_alive, sizeof h->keep_alive);
    add(t, &h->encoding, sizeof h->encoding);
    add(t, &h->fields.len, sizeof h->fields.len);
    add(t, h->fields.p, h->fields.len);
  }
  if (ev->type == CV_HTTP_DONE) add(t, &h->keep_alive, sizeof h->keep_alive);
  if (ev->type == CV_HTTP_ERROR) add(t, &h->error, sizeof h->error);   /* static text */
}

static void bounded(const cv_http *h) {
  check(h->line.len <= CV_HTTP_HEAD_CAP);
  check(h->head_bytes <= CV_HTTP_HEAD_CAP);
  check(h->fields.len <= 2 * CV_HTTP_HEAD_CAP);
}

static uint32_t next_rand(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

/* Parse p[0, n) in pieces: whole (mode 0), random sizes (1), bytes (2). */
static void run(trace *t, const char *p, size_t n, int head, int eof, int mode, uint32_t seed) {
  cv_http h;
  size_t off = 0;
  int ended = 0;
  cv_http_init(&h, head);
  while (off < n && !ended) {
    size_t piece = mode == 0 ? n - off : mode == 2 ? 1 : 1 + next_rand(&seed) % 97;
    size_t end = off + piece > n ? n : off + piece, at = off;
    for (;;) {
      cv_http_event ev;
      size_t used = cv_http_parse(&h, p + at, end - at, &ev);
      check(used <= end - at);
      bounded(&h);
      at += used;
      if (ev.type == CV_HTTP_NEED_DATA) { check(at == end); break; }
      record(t, &h, &ev);
      if (ev.type == CV_HTTP_DONE || ev.type == CV_HTTP_ERROR) {
        cv_http_event again;
        check(cv_http_parse(&h, p + at, end - at, &again) == 0 && again.type == ev.type);
        ended = 1;
        break;
      }
    }
    off = end;
  }
  if (!ended && eof) {
    cv_http_event ev = { 0, NULL, 0 };
    ev.type = cv_http_eof(&h);
    check(ev.type == CV_HTTP_DONE || ev.type == CV_HTTP_ERROR);
    record(t, &h, &ev);
  }
  flush_body(t);
  cv_http_free(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  trace a, b, c;
  uint32_t seed;
  int head, eof;
  const char *p = (const char *)data + 5;
  if (size < 5) return 0;
  head = data[0] & 1;
  eof = (data[0] >> 1) & 1;
  memcpy(&seed, data + 1, sizeof seed);
  if (seed == 0) seed = 1;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&c, 0, sizeof c);
  run(&a, p, size - 5, head, eof, 0, seed);
  run(&b, p, size - 5, head, eof, 1, seed);
  run(&c, p, size - 5, head, eof, 2, seed);
  check(a.out.len == b.out.len && (a.out.len == 0 || memcmp(a.out.p, b.out.p, a.out.len) == 0));
  check(a.out.len == c.out.len && (a.out.len == 0 || memcmp(a.out.p, c.out.p, a.out.len) == 0));
  cv_buf_free(&a.out); cv_buf_free(&a.body);
  cv_buf_free(&b.out); cv_buf_free(&b.body);
  cv_buf_free(&c.out); cv_buf_free(&c.body);
  return 0;
}
