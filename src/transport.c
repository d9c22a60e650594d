/*
** transport.c -- the libcurl transport: moving bytes with libcurl's multi
** interface, behind the contract written down in lua/converse/transport/init.lua.
**
** A Transport owns one CURLM handle (connection, DNS and TLS session reuse
** for every request of a client). A Transfer is one HTTP request on it.
** Body bytes go from libcurl's write callback into the Transfer's cv_body
** (body.c), which decodes gzip/deflate itself and feeds the streaming JSON
** decoder, or keeps the text of a body without decoder or of an error
** response (capped). Lua pulls records from the decoder; the multi handle is
** driven only while the decoder needs more bytes.
**
** Invariants:
** - libcurl callbacks never touch a lua_State, so no Lua error can longjmp
**   through a libcurl frame. What they find is stashed in the Transfer and
**   reported by the Lua-facing method that drives the transfer.
** - Redirects are not followed here: Lua decides where credentials may go.
** - Content decoding is ours (CURLOPT_HTTP_CONTENT_DECODING off, our own
**   Accept-Encoding: gzip, deflate), so that no decompressor ever produces
**   more than cv_body lets it.
** - A Transfer pauses itself while cv_body_accepts() says no, so memory is
**   bounded by the consumer; a starved decoder (a record bigger than the
**   high-water mark) always lets bytes in.
** - Header lines after the final response head are trailers: they never
**   change the status or the headers.
** - No wait blocks longer than SLICE_MS without checking for a trapped
**   signal (signals.c); a pending one ends the wait with "interrupted".
** - Transport and Transfers link to each other; closing either is safe in
**   any order, and closing twice is a no-op (__gc and __close share it).
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cv.h"

#define TRANSPORT_MT     "converse.Transport"
#define TRANSFER_MT      "converse.Transfer"

#define HEAD_CAP         ((size_t)256 << 10)  /* response head (all header lines) */
#define ERROR_BODY_CAP   ((size_t)64 << 10)   /* default max_error_body */
#define ERROR_BODY_SECS  5.0                  /* time an error body may take after its head */
#define PUMP_LIMIT       ((size_t)4 << 20)    /* inflate output per callback */
#define SLICE_MS         200                  /* longest wait between signal checks */
#define RECV_BUFFER      (128L << 10)         /* libcurl's receive buffer */
#define MAX_WAIT_SECS    86400.0
#define IDLE_EASY        8                    /* finished easy handles kept for reuse */

typedef struct cv_transfer cv_transfer;

typedef struct cv_transport {
  CURLM       *multi;
  cv_transfer *transfers;             /* live transfers, linked */
  long         timeout_ms, connect_ms, low_speed_time;
  int          insecure, verbose;
  char        *ca_file, *user_agent;
  unsigned long progress;             /* bumped by every callback that moved data */
  CURL        *idle[IDLE_EASY];       /* easy handles to reuse (their receive buffer too) */
  int          nidle;
} cv_transport;

enum { T_RUNNING, T_DONE, T_CLOSED };
enum { ABORT_NONE, ABORT_HEAD, ABORT_BODY, ABORT_ERROR_BODY_DONE };

struct cv_transfer {
  CURL        *easy;
  cv_transport *tr;
  cv_transfer *next, *prev;
  int          tr_ref, dec_ref;       /* registry refs keeping owners alive */
  cv_decoder  *dec;                   /* for a 2xx body; NULL: keep it as text */
  struct curl_slist *headers;
  int          state;
  CURLcode     result;
  long         status;                /* of the final response */
  int          headers_done, paused, abort, eof_sent, encoding, keep_decoder;
  size_t       max_body, max_error_body;
  double       head_time;             /* monotonic time of the final head */
  cv_buf       head;                  /* header lines of the final response */
  cv_body      body;
  char         errbuf[CURL_ERROR_SIZE];
};

/* ---- small helpers ----------------------------------------------------- */

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int is_2xx(const cv_transfer *t) { return t->status >= 200 && t->status < 300; }

static cv_transport *check_transport(lua_State *L, int idx) {
  cv_transport *tr = (cv_transport *)luaL_checkudata(L, idx, TRANSPORT_MT);
  if (tr->multi == NULL) cv_error_raise(L, "usage", "transport is closed");
  return tr;
}

static cv_transfer *check_transfer(lua_State *L, int idx) {
  cv_transfer *t = (cv_transfer *)luaL_checkudata(L, idx, TRANSFER_MT);
  if (t->state == T_CLOSED) cv_error_raise(L, "usage", "transfer is closed");
  return t;
}

/* Seconds from an option, as milliseconds clamped to [0, MAX_WAIT_SECS]. */
static long opt_ms(lua_State *L, int idx, const char *key, long dflt) {
  long v = dflt;
  if (cv_getfield(L, idx, key) != LUA_TNIL) {
    lua_Number s = luaL_checknumber(L, -1);
    v = !(s > 0) ? 0 : s > MAX_WAIT_SECS ? (long)(MAX_WAIT_SECS * 1000) : (long)(s * 1000 + 0.5);
  }
  lua_pop(L, 1);
  return v;
}

static char *opt_str(lua_State *L, int idx, const char *key) {
  char *s = NULL;
  if (cv_getfield(L, idx, key) == LUA_TSTRING) {
    s = strdup(lua_tostring(L, -1));
    if (s == NULL) { lua_pop(L, 1); cv_error_oom(L, "copying an option"); }
  }
  lua_pop(L, 1);
  return s;
}

/* ---- libcurl callbacks (no Lua here) ----------------------------------- */

/* The final head is complete: decide where its body goes. */
static void start_body(cv_transfer *t) {
  int ok = is_2xx(t);
  t->headers_done = 1;
  t->head_time = mono_now();
  cv_body_free(&t->body);
  cv_body_init(&t->body, ok ? t->dec : NULL, !ok, ok ? t->max_body : t->max_error_body,
               t->encoding);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  cv_transfer *t = (cv_transfer *)ud;
  size_t len = size * n;
  t->tr->progress++;
  if (t->headers_done) return len;                      /* a trailer: never the status */
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {         /* a new response (after a 1xx) */
    const char *sp = memchr(p, ' ', len);
    t->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    t->head.len = 0;
    t->encoding = CV_ENC_IDENTITY;
    return len;
  }
  if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {     /* end of a head */
    if (t->status >= 200) start_body(t);                /* 1xx: another head follows */
    return len;
  }
  if (t->head.len + len > HEAD_CAP || cv_buf_add(&t->head, p, len) != 0) {
    t->abort = ABORT_HEAD;
    return 0;
  }
  if (len > 17 && curl_strnequal(p, "content-encoding:", 17))
    t->encoding = cv_body_encoding(p + 17, len - 17);
  return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
  cv_transfer *t = (cv_transfer *)ud;
  size_t len = size * n;
  if (!t->headers_done) start_body(t);                  /* HTTP/0.9-like: no head */
  if (!cv_body_accepts(&t->body)) {
    if (t->body.state == CV_BODY_OK) {                  /* the consumer is behind */
      t->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    t->abort = t->body.state == CV_BODY_FULL ? ABORT_ERROR_BODY_DONE : ABORT_BODY;
    return 0;
  }
  t->tr->progress++;
  cv_body_write(&t->body, p, len, PUMP_LIMIT);
  if (t->body.state == CV_BODY_FULL) {                  /* enough of an error body */
    t->abort = ABORT_ERROR_BODY_DONE;
    return 0;
  }
  return len;
}

/* ---- driving the multi handle ------------------------------------------ */

static void finish_messages(cv_transport *tr) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(tr->multi, &left)) != NULL) {
    cv_transfer *t = NULL;
    if (m->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    if (t == NULL || t->state != T_RUNNING) continue;
    t->state = T_DONE;
    t->result = m->data.result;
    if (t->abort == ABORT_ERROR_BODY_DONE) t->result = CURLE_OK;   /* we stopped it */
    tr->progress++;
  }
}

/* One round: let libcurl work; when that moved nothing, wait up to wait_ms
** for activity and let it work again. */
static void drive(cv_transport *tr, int wait_ms) {
  int running = 0;
  unsigned long before = tr->progress;
  curl_multi_perform(tr->multi, &running);
  finish_messages(tr);
  if (wait_ms > 0 && running > 0 && tr->progress == before) {
    curl_multi_poll(tr->multi, NULL, 0, wait_ms, NULL);
    curl_multi_perform(tr->multi, &running);
    finish_messages(tr);
  }
}

/* Let a paused transfer go on once its body takes bytes again. */
static void resume_if_ready(cv_transfer *t) {
  if (t->paused && t->state == T_RUNNING && cv_body_accepts(&t->body)) {
    t->paused = 0;
    curl_easy_pause(t->easy, CURLPAUSE_CONT);   /* may call on_write at once */
  }
}

/* The wire is done: inflate what is held and, once all of it went into
** the decoder, tell the decoder the body ended. A bad body is left in
** body.state for push_failure. */
static void settle(cv_transfer *t) {
  int st;
  if (t->state != T_DONE || t->eof_sent || t->result != CURLE_OK) return;
  st = cv_body_finish(&t->body, PUMP_LIMIT);
  if (st == CV_BODY_PENDING) return;
  if (st == CV_BODY_OK && t->body.dec != NULL) cv_decoder_eof(t->body.dec);
  t->eof_sent = 1;
}

/* Failures that trying again cannot mend: a bad URL, a certificate that
** does not verify, a body over max_body. */
static int permanent(CURLcode rc) {
  switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL: case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR: case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS: case CURLE_SSL_CRL_BADFILE:
    case CURLE_FILESIZE_EXCEEDED:
      return 1;
    default:
      return 0;
  }
}

/* The failure of a transfer as nil, kind, message, permanent (returns 4);
** raises the out-of-memory error object. */
static int push_failure(lua_State *L, cv_transfer *t) {
  int bs = t->body.state;
  const char *why = t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result);
  if (t->abort == ABORT_HEAD)
    return cv_push_failure(L, "network", "response head larger than 256 KiB", 1);
  if (bs == CV_BODY_OOM || (t->result == CURLE_OUT_OF_MEMORY && t->headers_done))
    return cv_error_oom(L, "reading the response");
  if (t->abort == ABORT_BODY || bs == CV_BODY_BAD_ENCODING || bs == CV_BODY_TRUNCATED_ENCODING
      || bs == CV_BODY_TOO_BIG)
    return cv_body_push_failure(L, &t->body);
  if (t->result == CURLE_OUT_OF_MEMORY && !t->headers_done)
    return cv_push_failure(L, "network", "response head too large or malformed", 1);
  if (t->result == CURLE_OPERATION_TIMEDOUT)
    return cv_push_failure(L, "timeout", why, 0);
  if (t->result == CURLE_OK)          /* ended without a failure, but not as expected */
    return cv_push_failure(L, "network",
                           "the connection closed before the response was complete", 0);
  return cv_push_failure(L, "network", why, permanent(t->result));
}

static int push_interrupted(lua_State *L) {
  return cv_push_failure(L, "interrupted", "interrupted by a signal", 1);
}

/* ---- Transfer ---------------------------------------------------------- */

/* Detach from the transport and free libcurl state; refs are dropped by
** transfer_close, which has a lua_State. The easy handle goes back to the
** transport for the next request (its 128 KiB receive buffer with it: a
** page of 1,000 rows would otherwise map and fault in a new one); the
** decoder gives its buffers back unless its owner keeps it for reuse. */
static void transfer_release(cv_transfer *t) {
  cv_transport *tr = t->tr;
  if (t->state == T_CLOSED) return;
  t->state = T_CLOSED;
  if (tr != NULL) {
    if (tr->multi != NULL) curl_multi_remove_handle(tr->multi, t->easy);
    if (t->prev) t->prev->next = t->next; else tr->transfers = t->next;
    if (t->next) t->next->prev = t->prev;
    t->tr = NULL;
  }
  if (t->easy != NULL) {
    if (tr != NULL && tr->multi != NULL && tr->nidle < IDLE_EASY) tr->idle[tr->nidle++] = t->easy;
    else curl_easy_cleanup(t->easy);
  }
  t->easy = NULL;
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  cv_buf_free(&t->head);
  cv_body_free(&t->body);
  if (t->dec != NULL && !t->keep_decoder) cv_decoder_trim(t->dec);
  t->dec = NULL;
}

static int transfer_close(lua_State *L) {
  cv_transfer *t = (cv_transfer *)luaL_checkudata(L, 1, TRANSFER_MT);
  transfer_release(t);
  luaL_unref(L, LUA_REGISTRYINDEX, t->dec_ref);     /* no-op on LUA_NOREF */
  luaL_unref(L, LUA_REGISTRYINDEX, t->tr_ref);
  t->dec_ref = t->tr_ref = LUA_NOREF;
  return 0;
}

/* Push the head's header lines as a table: lower-case names, repeats joined. */
static void push_headers(lua_State *L, const cv_buf *head) {
  const char *p = head->p, *end = head->p ? head->p + head->len : NULL;
  lua_newtable(L);
  while (p && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *ve = eol ? eol : end;
    const char *colon = memchr(p, ':', (size_t)(ve - p));
    if (colon != NULL) {
      luaL_Buffer b;
      const char *k, *v;
      for (v = colon + 1; v < ve && (*v == ' ' || *v == '\t'); v++) {}
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      luaL_buffinit(L, &b);
      for (k = p; k < colon; k++)
        luaL_addchar(&b, (char)((*k >= 'A' && *k <= 'Z') ? *k + 32 : *k));
      luaL_pushresult(&b);
      lua_pushvalue(L, -1);
      if (cv_rawget(L, -3) == LUA_TSTRING) {           /* repeated: join */
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, -3);
    }
    p = eol ? eol + 1 : end;
  }
}

/* t:headers() -> status, {name=value} | nil, kind, message, permanent */
static int transfer_headers(lua_State *L) {
  cv_transfer *t = check_transfer(L, 1);
  while (!t->headers_done && t->state == T_RUNNING) {
    if (cv_signal_pending()) return push_interrupted(L);
    drive(t->tr, SLICE_MS);
  }
  if (!t->headers_done || t->abort == ABORT_HEAD) return push_failure(L, t);
  lua_pushinteger(L, t->status);
  push_headers(L, &t->head);
  return 2;
}

/* t:next([skip]) -> record | true | nil | core.EMPTY | nil, kind, message, permanent
** Records already in the decoder are handed out before a transport failure
** is reported, so a retried page skips as few records as possible. */
static int transfer_next(lua_State *L) {
  cv_transfer *t = (cv_transfer *)lua_touserdata(L, 1);   /* once per record: the type */
  int skip = lua_toboolean(L, 2), ok = 0;                 /* by the metatable in upvalue 1 */
  if (t != NULL && lua_getmetatable(L, 1)) {
    ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
  }
  if (!ok || t->state == T_CLOSED) t = check_transfer(L, 1);   /* raises the usual error */
  for (;;) {
    int json = t->dec != NULL && t->headers_done && is_2xx(t) && t->abort != ABORT_HEAD;
    if (json) {
      settle(t);
      if (t->body.state != CV_BODY_OK && t->body.state != CV_BODY_DECODER)
        return push_failure(L, t);
      if (t->eof_sent && t->body.decoded == 0) {       /* a 2xx without a body */
        cv_push_empty(L);
        return 1;
      }
      if (cv_body_next(L, &t->body, skip) != CV_DEC_MORE) return 1;
      if (cv_body_pump(&t->body, PUMP_LIMIT) > 0) continue;
      if (t->state == T_DONE && t->result == CURLE_OK && !t->eof_sent) continue;
    }
    if (t->state == T_DONE) {
      if (t->result != CURLE_OK || t->abort == ABORT_HEAD || !t->headers_done)
        return push_failure(L, t);
      lua_pushnil(L);                  /* no JSON body to read (non-2xx) */
      return 1;
    }
    if (cv_signal_pending()) return push_interrupted(L);
    resume_if_ready(t);
    drive(t->tr, SLICE_MS);
  }
}

/* t:body() -> the body as text | nil, kind, message, permanent
** An error body is read up to max_error_body, for ERROR_BODY_SECS at most. */
static int transfer_body(lua_State *L) {
  cv_transfer *t = check_transfer(L, 1);
  while (t->state == T_RUNNING) {
    if (cv_signal_pending()) return push_interrupted(L);
    if (t->headers_done && !is_2xx(t) && mono_now() - t->head_time > ERROR_BODY_SECS) {
      curl_multi_remove_handle(t->tr->multi, t->easy);   /* enough waiting: use what came */
      t->state = T_DONE;
      t->result = CURLE_OK;
      break;
    }
    resume_if_ready(t);
    drive(t->tr, SLICE_MS);
  }
  if (t->result != CURLE_OK || t->abort == ABORT_HEAD) return push_failure(L, t);
  while (cv_body_finish(&t->body, PUMP_LIMIT) == CV_BODY_PENDING) {}
  if (t->body.state == CV_BODY_TOO_BIG || t->body.state == CV_BODY_OOM
      || (t->body.state == CV_BODY_BAD_ENCODING && is_2xx(t)))
    return push_failure(L, t);
  lua_pushlstring(L, t->body.text.p ? t->body.text.p : "", t->body.text.len);
  return 1;
}

/* t:envelope() -> table of the top-level fields around the records */
static int transfer_envelope(lua_State *L) {
  cv_transfer *t = check_transfer(L, 1);
  if (t->dec == NULL) { lua_newtable(L); return 1; }
  cv_decoder_push_envelope(L, t->dec);
  return 1;
}

/* t:done() -> true once every byte has arrived (or the transfer failed) */
static int transfer_done(lua_State *L) {
  cv_transfer *t = check_transfer(L, 1);
  if (t->state == T_RUNNING) drive(t->tr, 0);
  lua_pushboolean(L, t->state == T_DONE);
  return 1;
}

/* t:info() -> { status, bytes, connects, reused, count, local_port, time, http_version, done } */
static int transfer_info(lua_State *L) {
  cv_transfer *t = check_transfer(L, 1);
  long connects = 0, port = 0, version = 0;
  double total = 0;
  curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
  curl_easy_getinfo(t->easy, CURLINFO_LOCAL_PORT, &port);
  curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &total);
  curl_easy_getinfo(t->easy, CURLINFO_HTTP_VERSION, &version);
  lua_createtable(L, 0, 9);
  lua_pushinteger(L, t->status);      lua_setfield(L, -2, "status");
  lua_pushnumber(L, (lua_Number)t->body.wire); lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, connects);       lua_setfield(L, -2, "connects");
  lua_pushboolean(L, connects == 0);  lua_setfield(L, -2, "reused");
  lua_pushinteger(L, port);           lua_setfield(L, -2, "local_port");
  lua_pushnumber(L, total);           lua_setfield(L, -2, "time");
  lua_pushinteger(L, version);        lua_setfield(L, -2, "http_version");
  lua_pushnumber(L, t->dec ? (lua_Number)cv_decoder_count(t->dec) : 0);
  lua_setfield(L, -2, "count");
  lua_pushboolean(L, t->state == T_DONE); lua_setfield(L, -2, "done");
  return 1;
}

static int transfer_tostring(lua_State *L) {
  cv_transfer *t = (cv_transfer *)luaL_checkudata(L, 1, TRANSFER_MT);
  lua_pushfstring(L, "converse.Transfer (%s)",
                  t->state == T_CLOSED ? "closed" : t->state == T_DONE ? "done" : "running");
  return 1;
}

/* ---- Transport --------------------------------------------------------- */

static void setup_easy(cv_transport *tr, cv_transfer *t, const char *url, const char *method,
                       const char *body, size_t body_len) {
  CURL *e = t->easy;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)t);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)t);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)t);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);   /* body.c decodes */
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, RECV_BUFFER);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  if (tr->timeout_ms) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, tr->timeout_ms);
  if (tr->connect_ms) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, tr->connect_ms);
  if (tr->low_speed_time) {
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, tr->low_speed_time);
  }
  if (tr->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, tr->ca_file);
  if (tr->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (tr->user_agent) curl_easy_setopt(e, CURLOPT_USERAGENT, tr->user_agent);
  if (tr->verbose) curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
  if (strcmp(method, "GET") == 0) curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  else if (strcmp(method, "HEAD") == 0) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  else curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  if (body != NULL) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
  }
}

static void add_header(lua_State *L, cv_transfer *t, const char *line) {
  struct curl_slist *s;
  if (strpbrk(line, "\r\n") != NULL)
    cv_error_raise(L, "usage", "header lines must not contain line breaks");
  s = curl_slist_append(t->headers, line);
  if (s == NULL) cv_error_oom(L, "building request headers");
  t->headers = s;
}

/* tr:request{ method=, url=, headers={"K: V",...}, body=, decoder=, max_body=,
**             max_error_body= } -> transfer */
static int transport_request(lua_State *L) {
  cv_transport *tr = check_transport(L, 1);
  cv_transfer *t;
  const char *method, *url, *body = NULL;
  size_t body_len = 0, url_len;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "method");
  method = luaL_optstring(L, -1, "GET");
  lua_getfield(L, 2, "url");
  url = luaL_checklstring(L, -1, &url_len);
  lua_getfield(L, 2, "body");
  if (!lua_isnil(L, -1)) body = luaL_checklstring(L, -1, &body_len);
  /* stack: 3 method, 4 url, 5 body */
  if (strpbrk(method, " \t\r\n") != NULL || strlen(url) != url_len
      || strpbrk(url, " \t\r\n") != NULL)
    return cv_error_raise(L, "usage", "method and url must not contain spaces or line breaks");

  t = (cv_transfer *)lua_newuserdatauv(L, sizeof *t, 0);             /* 6 */
  memset(t, 0, sizeof *t);
  t->state = T_CLOSED;                     /* "closed" until fully set up */
  t->dec_ref = t->tr_ref = LUA_NOREF;
  luaL_setmetatable(L, TRANSFER_MT);

  if (tr->nidle > 0) {
    t->easy = tr->idle[--tr->nidle];
    curl_easy_reset(t->easy);                /* keeps connections and buffers */
  } else {
    t->easy = curl_easy_init();
  }
  if (t->easy == NULL) return cv_error_oom(L, "starting a transfer");
  t->state = T_RUNNING;
  t->max_body = cv_opt_size(L, 2, "max_body", (size_t)256 << 20);
  t->max_error_body = cv_opt_size(L, 2, "max_error_body", ERROR_BODY_CAP);
  if (cv_getfield(L, 2, "decoder") != LUA_TNIL) {
    t->dec = cv_decoder_check(L, -1);
    t->dec_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    lua_pop(L, 1);
  }
  cv_getfield(L, 2, "keep_decoder");
  t->keep_decoder = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, 1);
  t->tr_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  add_header(L, t, "Accept-Encoding: gzip, deflate");
  if (cv_getfield(L, 2, "headers") == LUA_TTABLE) {
    int i, n = (int)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      add_header(L, t, luaL_checkstring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);

  setup_easy(tr, t, url, method, body, body_len);
  if (curl_multi_add_handle(tr->multi, t->easy) != CURLM_OK) {
    transfer_release(t);
    return cv_error_oom(L, "starting a transfer");
  }
  t->tr = tr;
  t->next = tr->transfers;
  if (tr->transfers) tr->transfers->prev = t;
  tr->transfers = t;
  return 1;
}

/* tr:wait(seconds) -> true, or false when a trapped signal cut it short.
** Every transfer progresses meanwhile. Clamped to [0, one day]. */
static int transport_wait(lua_State *L) {
  cv_transport *tr = check_transport(L, 1);
  lua_Number secs = luaL_checknumber(L, 2);
  double end;
  if (!(secs > 0)) secs = 0;
  if (secs > MAX_WAIT_SECS) secs = MAX_WAIT_SECS;
  end = mono_now() + secs;
  for (;;) {
    double left = end - mono_now();
    int running = 0;
    if (cv_signal_pending()) { lua_pushboolean(L, 0); return 1; }
    if (left <= 0) break;
    curl_multi_perform(tr->multi, &running);
    finish_messages(tr);
    curl_multi_poll(tr->multi, NULL, 0, left * 1000 > SLICE_MS ? SLICE_MS : (int)(left * 1000) + 1,
                    NULL);
  }
  drive(tr, 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int transport_close(lua_State *L) {
  cv_transport *tr = (cv_transport *)luaL_checkudata(L, 1, TRANSPORT_MT);
  while (tr->transfers != NULL) transfer_release(tr->transfers);
  while (tr->nidle > 0) curl_easy_cleanup(tr->idle[--tr->nidle]);
  if (tr->multi) curl_multi_cleanup(tr->multi);
  tr->multi = NULL;
  free(tr->ca_file);
  free(tr->user_agent);
  tr->ca_file = tr->user_agent = NULL;
  return 0;
}

static int transport_tostring(lua_State *L) {
  cv_transport *tr = (cv_transport *)luaL_checkudata(L, 1, TRANSPORT_MT);
  lua_pushfstring(L, "converse.Transport (%s)", tr->multi ? "open" : "closed");
  return 1;
}

/* core.transport{ timeout=, connect_timeout=, low_speed_time=, ca_file=,
**                 insecure=, user_agent=, verbose= } */
static int transport_new(lua_State *L) {
  cv_transport *tr;
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  luaL_checktype(L, 1, LUA_TTABLE);
  tr = (cv_transport *)lua_newuserdatauv(L, sizeof *tr, 0);
  memset(tr, 0, sizeof *tr);                 /* "closed" until multi exists */
  luaL_setmetatable(L, TRANSPORT_MT);
  tr->timeout_ms = opt_ms(L, 1, "timeout", 0);
  tr->connect_ms = opt_ms(L, 1, "connect_timeout", 10000);
  tr->low_speed_time = (opt_ms(L, 1, "low_speed_time", 0) + 999) / 1000;   /* whole seconds, rounded up */
  cv_getfield(L, 1, "insecure");
  tr->insecure = lua_toboolean(L, -1);
  cv_getfield(L, 1, "verbose");
  tr->verbose = lua_toboolean(L, -1);
  lua_pop(L, 2);
  tr->ca_file = opt_str(L, 1, "ca_file");
  tr->user_agent = opt_str(L, 1, "user_agent");
  tr->multi = curl_multi_init();
  if (tr->multi == NULL) return cv_error_oom(L, "starting the transport");
  curl_multi_setopt(tr->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  return 1;
}

static const luaL_Reg transfer_methods[] = {      /* and next (cv_transport_open) */
  {"headers",   transfer_headers},
  {"body",      transfer_body},
  {"envelope",  transfer_envelope},
  {"done",      transfer_done},
  {"info",      transfer_info},
  {"close",     transfer_close},
  {NULL, NULL}
};

static const luaL_Reg transfer_meta[] = {
  {"__gc",       transfer_close},
  {"__close",    transfer_close},
  {"__tostring", transfer_tostring},
  {NULL, NULL}
};

static const luaL_Reg transport_methods[] = {
  {"request",   transport_request},
  {"wait",      transport_wait},
  {"close",     transport_close},
  {NULL, NULL}
};

static const luaL_Reg transport_meta[] = {
  {"__gc",       transport_close},
  {"__close",    transport_close},
  {"__tostring", transport_tostring},
  {NULL, NULL}
};

void cv_transport_open(lua_State *L) {
  curl_global_init(CURL_GLOBAL_DEFAULT);     /* refcounted, thread-safe in 7.84+ */
  cv_class(L, TRANSFER_MT, transfer_meta, transfer_methods);
  luaL_getmetatable(L, TRANSFER_MT);         /* next, with the metatable as upvalue */
  lua_getfield(L, -1, "__index");
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, transfer_next, 1);
  lua_setfield(L, -2, "next");
  lua_pop(L, 2);
  cv_class(L, TRANSPORT_MT, transport_meta, transport_methods);
  lua_pushcfunction(L, transport_new);
}
