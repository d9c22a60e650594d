/*
** http.c -- HTTP/1.1 response framing, sans I/O (cv_http).
**
** Bytes in, events out, in the manner of h11: cv_http_parse() takes
** whatever bytes arrived, uses some of them and answers with one event:
**   CV_HTTP_NEED_DATA  every byte given was used: give more, or cv_http_eof()
**   CV_HTTP_INFO       a 1xx head was read and skipped (another head follows)
**   CV_HTTP_HEAD       the final head was read: status, minor, fields, framing
**   CV_HTTP_BODY       body bytes (de-chunked, still content-encoded); ev.p
**                      points into the caller's input, nothing is copied
**   CV_HTTP_DONE       the response ended; keep_alive says whether the
**                      connection may carry another request
**   CV_HTTP_ERROR      not a valid response; h->error says why
** The same bytes give the same events however they are split (the fuzz
** harness fuzz/http_fuzz.c checks this). Nothing here touches a socket or
** a lua_State, and nothing raises.
**
** Framing (RFC 9112 section 6.3): no body for a HEAD request, 204 and 304;
** else Transfer-Encoding chunked (a Content-Length beside it is ignored and
** the connection is not reused); else Content-Length; else the body runs
** to the end of the connection (never reused). A Transfer-Encoding other
** than chunked, conflicting Content-Lengths, field names that are not
** tokens and a 101 are errors: they are how responses get smuggled.
** Trailers are read (a line without a colon is an error, as libcurl has
** it) and dropped: they never change the status or the fields.
**
** Memory: only a line cut by the end of the input is buffered, plus the
** final head's fields; head lines (of 1xx heads too) and trailers together
** stay within CV_HTTP_HEAD_CAP, a chunk-size line within LINE_CAP.
*/
#include <string.h>

#include "cv.h"

#define LINE_CAP   ((size_t)4096)          /* chunk-size lines, chunk ends */
#define SIZE_MAX62 ((uint64_t)1 << 62)     /* largest Content-Length or chunk */

enum {
  H_STATUS,        /* before or in a status line */
  H_FIELDS,        /* field lines of a head */
  H_BODY_NONE,     /* the head said: no body; DONE comes next */
  H_BODY_LENGTH,   /* Content-Length body: `left` bytes to go */
  H_CHUNK_SIZE,    /* a chunk-size line */
  H_CHUNK_DATA,    /* chunk data: `left` bytes to go */
  H_CHUNK_END,     /* the line end after chunk data */
  H_TRAILERS,      /* trailer lines after the last chunk */
  H_BODY_CLOSE,    /* body delimited by the end of the connection */
  H_DONE,
  H_ERROR
};

/* ---- small helpers ----------------------------------------------------- */

static int is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Case-insensitive equality of s[0,n) and the lower-case word w. */
static int word_is(const char *s, size_t n, const char *w) {
  size_t i;
  if (strlen(w) != n) return 0;
  for (i = 0; i < n; i++) if (lower((unsigned char)s[i]) != (unsigned char)w[i]) return 0;
  return 1;
}

static int fail(cv_http *h, const char *why, int permanent) {
  h->state = H_ERROR;
  h->error = why;
  h->permanent = permanent;
  h->keep_alive = 0;
  return CV_HTTP_ERROR;
}

void cv_http_init(cv_http *h, int head_request) {
  memset(h, 0, sizeof *h);
  h->state = H_STATUS;
  h->head_request = head_request;
  h->encoding = CV_ENC_IDENTITY;
}

void cv_http_free(cv_http *h) {
  cv_buf_free(&h->line);
  cv_buf_free(&h->fields);
}

int cv_http_finished(const cv_http *h) {
  return h->state == H_DONE || h->state == H_ERROR;
}

int cv_http_in_body(const cv_http *h) {
  return h->state >= H_BODY_NONE && h->state <= H_BODY_CLOSE;
}

/* ---- lines ------------------------------------------------------------- */

/* The next complete line of p[0,n), without its LF and one CR before it.
** Returns 1 (*s, *len set; valid until h->line is reset), 0 when the input
** ended first (all of it buffered), -1 when the line outgrows `cap`, -2 out
** of memory. *used: input bytes taken either way. */
static int get_line(cv_http *h, const char *p, size_t n, size_t cap,
                    const char **s, size_t *len, size_t *used) {
  const char *nl = (const char *)memchr(p, '\n', n);
  size_t take = nl ? (size_t)(nl - p) + 1 : n;
  *used = take;
  if (h->line.len + take > cap) return -1;
  if (nl == NULL || h->line.len > 0) {
    if (cv_buf_add(&h->line, p, take) != 0) return -2;
    if (nl == NULL) return 0;
    *s = h->line.p;
    *len = h->line.len;
  } else {
    *s = p;
    *len = take;
  }
  (*len)--;
  if (*len > 0 && (*s)[*len - 1] == '\r') (*len)--;
  return 1;
}

/* ---- heads ------------------------------------------------------------- */

/* "HTTP/1.x SSS[ reason]" */
static int status_line(cv_http *h, const char *s, size_t n) {
  int i, status = 0;
  if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' '
      || (n > 12 && s[12] != ' '))
    return fail(h, "malformed status line (not an HTTP/1.x response)", 0);
  for (i = 9; i < 12; i++) {
    if (s[i] < '0' || s[i] > '9') return fail(h, "malformed status line (not an HTTP/1.x response)", 0);
    status = status * 10 + (s[i] - '0');
  }
  if (status < 100) return fail(h, "malformed status line (status below 100)", 0);
  if (status == 101) return fail(h, "unexpected 101 Switching Protocols", 1);
  h->status = status;
  h->minor = s[7] - '0';
  h->fields.len = 0;
  h->state = H_FIELDS;
  return CV_HTTP_NEED_DATA;
}

/* Trim spaces and tabs around s[0,*n). */
static const char *trim(const char *s, size_t *n) {
  while (*n > 0 && (*s == ' ' || *s == '\t')) { s++; (*n)--; }
  while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t')) (*n)--;
  return s;
}

/* A field line of a head: kept as "name: value\n" with the name in lower
** case; an obs-fold continuation joins the previous value with a space. */
static int field_line(cv_http *h, const char *s, size_t n) {
  size_t k = 0, vn;
  const char *v;
  if (s[0] == ' ' || s[0] == '\t') {                  /* obs-fold (RFC 9112 5.2) */
    if (h->fields.len == 0) return fail(h, "malformed response head (continuation line first)", 0);
    v = trim(s, &n);
    h->fields.len--;                                  /* drop the "\n" */
    if ((n > 0 && (cv_buf_add(&h->fields, " ", 1) != 0 || cv_buf_add(&h->fields, v, n) != 0))
        || cv_buf_add(&h->fields, "\n", 1) != 0)
      return fail(h, "out of memory reading the response head", 0);
    return CV_HTTP_NEED_DATA;
  }
  while (k < n && is_tchar((unsigned char)s[k])) k++;
  if (k == 0 || k == n || s[k] != ':')
    return fail(h, "malformed response head (a field line is not \"name: value\")", 0);
  vn = n - k - 1;
  v = trim(s + k + 1, &vn);
  if (cv_buf_reserve(&h->fields, k + vn + 3) != 0)
    return fail(h, "out of memory reading the response head", 0);
  {
    char *o = h->fields.p + h->fields.len;
    size_t i;
    for (i = 0; i < k; i++) o[i] = (char)lower((unsigned char)s[i]);
    o[k] = ':';
    o[k + 1] = ' ';
    if (vn > 0) memcpy(o + k + 2, v, vn);
    o[k + 2 + vn] = '\n';
    h->fields.len += k + vn + 3;
  }
  return CV_HTTP_NEED_DATA;
}

/* The next comma-separated element of s[*i, n), trimmed; 0 at the end. */
static int next_item(const char *s, size_t n, size_t *i, const char **item, size_t *len) {
  size_t a;
  while (*i < n && (s[*i] == ',' || s[*i] == ' ' || s[*i] == '\t')) (*i)++;
  if (*i >= n) return 0;
  a = *i;
  while (*i < n && s[*i] != ',') (*i)++;
  *len = *i - a;
  *item = trim(s + a, len);
  return 1;
}

/* Content-Length: digits, or a list of equal values ("5, 5"). */
static int content_length(cv_http *h, const char *v, size_t n) {
  size_t i = 0, len;
  const char *item;
  while (next_item(v, n, &i, &item, &len)) {
    uint64_t x = 0;
    size_t j;
    if (len == 0) return fail(h, "malformed Content-Length", 0);
    for (j = 0; j < len; j++) {
      if (item[j] < '0' || item[j] > '9') return fail(h, "malformed Content-Length", 0);
      x = x * 10 + (uint64_t)(item[j] - '0');
      if (x > SIZE_MAX62) return fail(h, "Content-Length too large", 1);
    }
    if (h->has_length && x != h->length) return fail(h, "conflicting Content-Length values", 0);
    h->has_length = 1;
    h->length = x;
  }
  if (!h->has_length) return fail(h, "malformed Content-Length", 0);
  return CV_HTTP_NEED_DATA;
}

/* Transfer-Encoding: "chunked" only (RFC 9112 6.1: chunked must be last,
** and nothing else is asked for). */
static int transfer_encoding(cv_http *h, const char *v, size_t n) {
  size_t i = 0, len;
  const char *item;
  while (next_item(v, n, &i, &item, &len)) {
    if (!word_is(item, len, "chunked") || h->chunked)
      return fail(h, "response uses a Transfer-Encoding other than chunked", 1);
    h->chunked = 1;
  }
  return CV_HTTP_NEED_DATA;
}

static void connection(cv_http *h, const char *v, size_t n) {
  size_t i = 0, len;
  const char *item;
  while (next_item(v, n, &i, &item, &len)) {
    if (word_is(item, len, "close")) h->conn_close = 1;
    else if (word_is(item, len, "keep-alive")) h->keep_alive_token = 1;
  }
}

/* Read the framing fields of a complete final head. */
static int interpret(cv_http *h) {
  const char *p = h->fields.p, *end;
  int encodings = 0;
  if (p == NULL) return CV_HTTP_NEED_DATA;            /* no fields at all */
  end = p + h->fields.len;
  while (p < end) {
    const char *nl = (const char *)memchr(p, '\n', (size_t)(end - p));
    const char *colon = (const char *)memchr(p, ':', (size_t)(nl - p));
    size_t k = (size_t)(colon - p), vn = (size_t)(nl - colon) - 2;
    const char *v = colon + 2;
    int rc = CV_HTTP_NEED_DATA;
    if (k == 14 && memcmp(p, "content-length", 14) == 0) rc = content_length(h, v, vn);
    else if (k == 17 && memcmp(p, "transfer-encoding", 17) == 0) rc = transfer_encoding(h, v, vn);
    else if (k == 10 && memcmp(p, "connection", 10) == 0) connection(h, v, vn);
    else if (k == 16 && memcmp(p, "content-encoding", 16) == 0) {
      h->encoding = ++encodings > 1 ? CV_ENC_UNKNOWN : cv_body_encoding(v, vn);
    }
    if (rc == CV_HTTP_ERROR) return rc;
    p = nl + 1;
  }
  return CV_HTTP_NEED_DATA;
}

/* The empty line that ends a head. */
static int end_of_head(cv_http *h) {
  if (h->status < 200) {                              /* 1xx: another head follows */
    h->state = H_STATUS;
    h->fields.len = 0;
    return CV_HTTP_INFO;
  }
  h->has_length = h->chunked = h->conn_close = h->keep_alive_token = 0;
  h->encoding = CV_ENC_IDENTITY;
  if (interpret(h) == CV_HTTP_ERROR) return CV_HTTP_ERROR;
  h->keep_alive = h->minor == 0 ? h->keep_alive_token && !h->conn_close : !h->conn_close;
  if (h->head_request || h->status == 204 || h->status == 304) {
    h->state = H_BODY_NONE;
  } else if (h->chunked) {
    h->state = H_CHUNK_SIZE;
    if (h->has_length) h->keep_alive = 0;             /* both framings: do not trust the rest */
  } else if (h->has_length) {
    h->left = h->length;
    h->state = h->length == 0 ? H_BODY_NONE : H_BODY_LENGTH;
  } else {
    h->state = H_BODY_CLOSE;
    h->keep_alive = 0;
  }
  return CV_HTTP_HEAD;
}

/* ---- chunks ------------------------------------------------------------ */

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* "1a3f[;ext...]" */
static int chunk_size(cv_http *h, const char *s, size_t n) {
  uint64_t x = 0;
  size_t i = 0;
  int d;
  while (i < n && (d = hexval((unsigned char)s[i])) >= 0) {
    if (x > (SIZE_MAX62 >> 4)) return fail(h, "chunk size too large", 0);
    x = (x << 4) | (uint64_t)d;
    i++;
  }
  if (i == 0) return fail(h, "malformed chunked body (bad chunk size)", 0);
  while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
  if (i < n && s[i] != ';') return fail(h, "malformed chunked body (bad chunk size)", 0);
  if (x == 0) {
    h->state = H_TRAILERS;
  } else {
    h->left = x;
    h->state = H_CHUNK_DATA;
  }
  return CV_HTTP_NEED_DATA;
}

/* "name: value"; the name is not checked (trailers are dropped unread). */
static int trailer_line(cv_http *h, const char *s, size_t n) {
  const char *colon = (const char *)memchr(s, ':', n);
  if (colon == NULL || colon == s || s[0] == ' ' || s[0] == '\t')
    return fail(h, "malformed trailer in a chunked body", 0);
  return CV_HTTP_NEED_DATA;
}

/* ---- the parser -------------------------------------------------------- */

/* One complete line in a line state: what it means. */
static int line(cv_http *h, const char *s, size_t n) {
  if (memchr(s, '\0', n) != NULL || memchr(s, '\r', n) != NULL)
    return fail(h, "malformed response (NUL or CR inside a line)", 0);
  switch (h->state) {
    case H_STATUS:
      if (n == 0) return CV_HTTP_NEED_DATA;           /* stray empty lines before it */
      return status_line(h, s, n);
    case H_FIELDS:
      return n == 0 ? end_of_head(h) : field_line(h, s, n);
    case H_CHUNK_SIZE:
      return chunk_size(h, s, n);
    case H_CHUNK_END:
      if (n != 0) return fail(h, "malformed chunked body (no line end after a chunk)", 0);
      h->state = H_CHUNK_SIZE;
      return CV_HTTP_NEED_DATA;
    default:                                          /* H_TRAILERS */
      if (n == 0) { h->state = H_DONE; return CV_HTTP_DONE; }
      return trailer_line(h, s, n);
  }
}

size_t cv_http_parse(cv_http *h, const char *p, size_t n, cv_http_event *ev) {
  size_t used = 0;
  ev->type = CV_HTTP_NEED_DATA;
  ev->p = NULL;
  ev->n = 0;
  for (;;) {
    const char *s = NULL;
    size_t len = 0, u = 0, cap;
    int rc, head_line;
    switch (h->state) {
      case H_DONE:
        ev->type = CV_HTTP_DONE;
        return used;
      case H_ERROR:
        ev->type = CV_HTTP_ERROR;
        return used;
      case H_BODY_NONE:
        h->state = H_DONE;
        ev->type = CV_HTTP_DONE;
        return used;
      case H_BODY_LENGTH: case H_CHUNK_DATA: case H_BODY_CLOSE: {
        size_t take = n - used;
        if (take == 0) return used;
        if (h->state != H_BODY_CLOSE && take > h->left) take = (size_t)h->left;
        ev->type = CV_HTTP_BODY;
        ev->p = p + used;
        ev->n = take;
        h->received += take;
        if (h->state != H_BODY_CLOSE) {
          h->left -= take;
          if (h->left == 0) h->state = h->state == H_CHUNK_DATA ? H_CHUNK_END : H_BODY_NONE;
        }
        return used + take;
      }
      default:
        break;
    }
    if (used == n) return used;                       /* NEED_DATA */
    head_line = h->state == H_STATUS || h->state == H_FIELDS || h->state == H_TRAILERS;
    cap = head_line ? CV_HTTP_HEAD_CAP - h->head_bytes : LINE_CAP;
    rc = get_line(h, p + used, n - used, cap, &s, &len, &u);
    used += u;
    h->received += u;
    if (rc == 0) return used;
    if (rc == -2) { ev->type = fail(h, "out of memory reading the response", 0); return used; }
    if (rc == -1) {
      ev->type = head_line
        ? fail(h, h->state == H_TRAILERS ? "response trailers too large (head and trailers over 256 KiB)"
                                         : "response head larger than 256 KiB", 1)
        : fail(h, "malformed chunked body (chunk-size line too long)", 0);
      return used;
    }
    if (head_line) h->head_bytes += h->line.len > 0 ? h->line.len : u;
    rc = line(h, s, len);
    h->line.len = 0;
    if (rc != CV_HTTP_NEED_DATA) {
      ev->type = rc;
      return used;
    }
  }
}

int cv_http_eof(cv_http *h) {
  switch (h->state) {
    case H_DONE: case H_BODY_NONE: case H_BODY_CLOSE:
      h->state = H_DONE;
      h->keep_alive = 0;
      return CV_HTTP_DONE;
    case H_ERROR:
      return CV_HTTP_ERROR;
    case H_STATUS:
      if (h->received == 0) return fail(h, "the connection closed before the response", 0);
      return fail(h, "the connection closed in the response head", 0);
    case H_FIELDS:
      return fail(h, "the connection closed in the response head", 0);
    default:
      return fail(h, "the connection closed before the response was complete", 0);
  }
}
