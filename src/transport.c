/*
** transport.c -- moving bytes with libcurl's multi interface.
**
** A cv_transport owns one CURLM handle (connection, DNS and TLS session reuse
** for every request of a client). A cv_transfer is one HTTP request on it.
** Response bodies with a 2xx status go straight from libcurl's write
** callback into the cv_transfer's streaming JSON decoder; Lua pulls records
** from the decoder and the multi handle is driven only while the decoder
** needs more bytes. Other bodies (errors) are kept, capped, as raw text.
**
** Invariants:
** - libcurl callbacks never touch a lua_State, so no Lua error can longjmp
**   through a libcurl frame. Errors found there are stashed in the cv_transfer
**   and reported by the Lua-facing method that drives the transfer.
** - Redirects are not followed here: Lua decides where credentials may go.
** - A cv_transfer pauses itself (CURL_WRITEFUNC_PAUSE) when its decoder holds
**   more than HIGH_WATER unread bytes, so memory is bounded by the consumer.
** - cv_transport and Transfers link to each other; closing either is safe in
**   any order, and closing twice is a no-op (__gc and __close share it).
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cv.h"

#define TRANSPORT_MT   "converse.Transport"
#define TRANSFER_MT    "converse.Transfer"

#define HIGH_WATER     (4u << 20)     /* pause the transfer above this */
#define LOW_WATER      (1u << 20)     /* and resume below this */
#define RAW_CAP        (64u << 10)    /* error bodies kept up to this size */

typedef struct cv_transfer cv_transfer;

typedef struct cv_transport {
  CURLM    *multi;
  cv_transfer *transfers;                /* live transfers, linked */
  long      timeout_ms, connect_ms, low_speed_time;
  int       insecure, verbose;
  char     *ca_file, *user_agent;
} cv_transport;

enum { T_RUNNING, T_DONE, T_CLOSED };

struct cv_transfer {
  CURL        *easy;
  cv_transport   *tr;
  cv_transfer    *next, *prev;
  int          tr_ref, dec_ref;       /* registry refs keeping owners alive */
  cv_decoder  *dec;                   /* NULL: body kept raw */
  struct curl_slist *headers;
  int          state;
  CURLcode     result;
  long         status;                /* of the final response */
  int          headers_done, paused, oom;
  size_t       raw_cap;
  uint64_t     bytes;                 /* body bytes received */
  cv_buf       head, raw;             /* header lines, raw body */
  char         errbuf[CURL_ERROR_SIZE];
};

/* ---- small helpers ----------------------------------------------------- */

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

static long opt_ms(lua_State *L, int idx, const char *key, long dflt) {
  long v = dflt;
  if (cv_getfield(L, idx, key) != LUA_TNIL) {
    lua_Number s = luaL_checknumber(L, -1);
    v = s <= 0 ? 0 : (long)(s * 1000 + 0.5);
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

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  cv_transfer *t = (cv_transfer *)ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {       /* a new response */
    const char *sp = memchr(p, ' ', len);
    t->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    t->head.len = 0;
    t->headers_done = 0;
    return len;
  }
  if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {   /* end of headers */
    if (t->status >= 200) t->headers_done = 1;       /* 1xx: another follows */
    return len;
  }
  if (t->head.len + len > (1u << 20) || cv_buf_add(&t->head, p, len) != 0) return 0;
  return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
  cv_transfer *t = (cv_transfer *)ud;
  size_t len = size * n;
  int ok = t->status >= 200 && t->status < 300;
  if (ok && t->dec != NULL) {
    if (cv_decoder_pending(t->dec) > HIGH_WATER) {
      t->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    if (cv_decoder_feed(t->dec, p, len) != 0) return 0;   /* reported by next() */
  } else if (t->raw.len < t->raw_cap) {
    size_t room = t->raw_cap - t->raw.len;
    if (cv_buf_add(&t->raw, p, len < room ? len : room) != 0) {
      t->oom = 1;
      return 0;
    }
  } else if (ok) {
    t->oom = 1;                                       /* raw body over max_body */
    return 0;
  }
  t->bytes += len;
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
    if (t->dec != NULL && t->result == CURLE_OK) cv_decoder_eof(t->dec);
  }
}

/* One round: wait up to wait_ms for activity, then let libcurl work. */
static void drive(cv_transport *tr, int wait_ms) {
  int running = 0;
  curl_multi_perform(tr->multi, &running);
  finish_messages(tr);
  if (wait_ms > 0 && running > 0) {
    curl_multi_poll(tr->multi, NULL, 0, wait_ms, NULL);
    curl_multi_perform(tr->multi, &running);
    finish_messages(tr);
  }
}

static void resume_if_drained(cv_transfer *t) {
  if (t->paused && t->state == T_RUNNING && cv_decoder_pending(t->dec) < LOW_WATER) {
    t->paused = 0;
    curl_easy_pause(t->easy, CURLPAUSE_CONT);   /* may call on_write at once */
  }
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

/* Pushes nil, kind, message, permanent for a failed transfer; returns 4. */
static int push_failure(lua_State *L, cv_transfer *t) {
  const char *msg = t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result);
  lua_pushnil(L);
  if (t->oom) {
    lua_pushliteral(L, "network");
    lua_pushliteral(L, "response body larger than max_body (or out of memory)");
    lua_pushboolean(L, 1);
    return 4;
  }
  switch (t->result) {
    case CURLE_OPERATION_TIMEDOUT: lua_pushliteral(L, "timeout"); break;
    default:                       lua_pushliteral(L, "network"); break;
  }
  lua_pushstring(L, msg);
  lua_pushboolean(L, permanent(t->result));
  return 4;
}

/* ---- cv_transfer ---------------------------------------------------------- */

/* Detach from the transport and free libcurl state; refs are dropped by
** transfer_close, which has a lua_State. */
static void transfer_release(cv_transfer *t) {
  if (t->state == T_CLOSED) return;
  t->state = T_CLOSED;
  if (t->tr != NULL) {
    if (t->tr->multi != NULL) curl_multi_remove_handle(t->tr->multi, t->easy);
    if (t->prev) t->prev->next = t->next; else t->tr->transfers = t->next;
    if (t->next) t->next->prev = t->prev;
    t->tr = NULL;
  }
  if (t->easy) curl_easy_cleanup(t->easy);
  t->easy = NULL;
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  cv_buf_free(&t->head);
  cv_buf_free(&t->raw);
  if (t->dec != NULL) cv_decoder_trim(t->dec);
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

/* t:headers() -> status, {name=value} | nil, kind, message */
static int transfer_headers(lua_State *L) {
  cv_transfer *t = check_transfer(L, 1);
  const char *p, *end;
  while (!t->headers_done && t->state == T_RUNNING) drive(t->tr, 1000);
  if (!t->headers_done) return push_failure(L, t);
  lua_pushinteger(L, t->status);
  lua_newtable(L);
  p = t->head.p;
  end = p ? p + t->head.len : p;
  while (p && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *colon = memchr(p, ':', (size_t)((eol ? eol : end) - p));
    const char *v, *ve = eol ? eol : end;
    if (colon != NULL) {
      luaL_Buffer b;
      const char *k;
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
  return 2;
}

/* t:next([skip]) -> record | nil (end of body) | nil, kind, message
** Records already in the decoder are handed out before a transport failure
** is reported, so a retried page skips as few records as possible. */
static int transfer_next(lua_State *L) {
  cv_transfer *t = check_transfer(L, 1);
  int skip = lua_toboolean(L, 2);
  for (;;) {
    int json = t->dec != NULL && t->headers_done && t->status >= 200 && t->status < 300;
    if (json) {
      int r;
      if (t->state == T_DONE && t->result == CURLE_OK && t->bytes == 0) {
        cv_push_empty(L);
        return 1;
      }
      r = skip ? cv_decoder_skip(L, t->dec) : cv_decoder_next(L, t->dec);
      if (r == CV_DEC_RECORD) {
        resume_if_drained(t);
        if (skip) lua_pushboolean(L, 1);
        return 1;
      }
      if (r == CV_DEC_DONE) { lua_pushnil(L); return 1; }
    }
    if (t->state == T_DONE) {
      if (t->result != CURLE_OK) return push_failure(L, t);
      lua_pushnil(L);                  /* no JSON body to read (non-2xx) */
      return 1;
    }
    if (json) resume_if_drained(t);
    drive(t->tr, 1000);
  }
}

/* t:body() -> raw body text (after completion) | nil, kind, message */
static int transfer_body(lua_State *L) {
  cv_transfer *t = check_transfer(L, 1);
  while (t->state == T_RUNNING) {
    if (t->dec != NULL) resume_if_drained(t);
    drive(t->tr, 1000);
  }
  if (t->result != CURLE_OK) return push_failure(L, t);
  lua_pushlstring(L, t->raw.p ? t->raw.p : "", t->raw.len);
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

/* t:info() -> { status, bytes, connects, count, local_port, time, http_version, done } */
static int transfer_info(lua_State *L) {
  cv_transfer *t = check_transfer(L, 1);
  long connects = 0, port = 0, version = 0;
  double total = 0;
  curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
  curl_easy_getinfo(t->easy, CURLINFO_LOCAL_PORT, &port);
  curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &total);
  curl_easy_getinfo(t->easy, CURLINFO_HTTP_VERSION, &version);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, t->status);      lua_setfield(L, -2, "status");
  lua_pushnumber(L, (lua_Number)t->bytes); lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, connects);       lua_setfield(L, -2, "connects");
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

/* ---- cv_transport --------------------------------------------------------- */

/* tr:request{ method=, url=, headers={"K: V",...}, body=, decoder=, max_body= } */
static int transport_request(lua_State *L) {
  cv_transport *tr = check_transport(L, 1);
  cv_transfer *t;
  const char *method, *url;
  size_t body_len = 0;
  const char *body = NULL;
  int i, n;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "method");
  method = luaL_optstring(L, -1, "GET");
  lua_getfield(L, 2, "url");
  url = luaL_checkstring(L, -1);
  lua_getfield(L, 2, "body");
  if (!lua_isnil(L, -1)) body = luaL_checklstring(L, -1, &body_len);
  /* stack: 3 method, 4 url, 5 body */

  t = (cv_transfer *)lua_newuserdatauv(L, sizeof *t, 0);             /* 6 */
  memset(t, 0, sizeof *t);
  t->state = T_CLOSED;                     /* "closed" until fully set up */
  t->dec_ref = t->tr_ref = LUA_NOREF;
  luaL_setmetatable(L, TRANSFER_MT);

  t->easy = curl_easy_init();
  if (t->easy == NULL) return cv_error_raise(L, "network", "curl_easy_init failed");
  t->state = T_RUNNING;
  t->raw_cap = RAW_CAP;
  if (cv_getfield(L, 2, "max_body") != LUA_TNIL)
    t->raw_cap = (size_t)luaL_checknumber(L, -1);
  lua_pop(L, 1);
  if (cv_getfield(L, 2, "decoder") != LUA_TNIL) {
    t->dec = cv_decoder_check(L, -1);
    t->dec_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    lua_pop(L, 1);
  }
  lua_pushvalue(L, 1);
  t->tr_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  if (cv_getfield(L, 2, "headers") == LUA_TTABLE) {
    n = (int)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      struct curl_slist *s;
      lua_rawgeti(L, -1, i);
      s = curl_slist_append(t->headers, luaL_checkstring(L, -1));
      if (s == NULL) return cv_error_oom(L, "building request headers");
      t->headers = s;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);

  curl_easy_setopt(t->easy, CURLOPT_URL, url);
  curl_easy_setopt(t->easy, CURLOPT_PRIVATE, (void *)t);
  curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, (void *)t);
  curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, (void *)t);
  curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
  curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(t->easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(t->easy, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(t->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(t->easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
  if (tr->timeout_ms) curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, tr->timeout_ms);
  if (tr->connect_ms) curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, tr->connect_ms);
  if (tr->low_speed_time) {
    curl_easy_setopt(t->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(t->easy, CURLOPT_LOW_SPEED_TIME, tr->low_speed_time);
  }
  if (tr->ca_file) curl_easy_setopt(t->easy, CURLOPT_CAINFO, tr->ca_file);
  if (tr->insecure) {
    curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (tr->user_agent) curl_easy_setopt(t->easy, CURLOPT_USERAGENT, tr->user_agent);
  if (tr->verbose) curl_easy_setopt(t->easy, CURLOPT_VERBOSE, 1L);
  if (strcmp(method, "GET") == 0) {
    curl_easy_setopt(t->easy, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(t->easy, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, method);
  }
  if (body != NULL) {
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(t->easy, CURLOPT_COPYPOSTFIELDS, body);
  }
  if (curl_multi_add_handle(tr->multi, t->easy) != CURLM_OK) {
    transfer_release(t);
    return cv_error_raise(L, "network", "cannot start transfer");
  }
  t->tr = tr;
  t->next = tr->transfers;
  if (tr->transfers) tr->transfers->prev = t;
  tr->transfers = t;
  return 1;
}

/* tr:wait(seconds): let every transfer progress for that long. */
static int transport_wait(lua_State *L) {
  cv_transport *tr = check_transport(L, 1);
  lua_Number secs = luaL_checknumber(L, 2);
  struct timespec now, end;
  clock_gettime(CLOCK_MONOTONIC, &end);
  end.tv_sec += (time_t)secs;
  end.tv_nsec += (long)((secs - (lua_Number)(time_t)secs) * 1e9);
  if (end.tv_nsec >= 1000000000L) { end.tv_sec++; end.tv_nsec -= 1000000000L; }
  for (;;) {
    long ms;
    int running = 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long)(end.tv_sec - now.tv_sec) * 1000 + (end.tv_nsec - now.tv_nsec) / 1000000;
    if (ms <= 0) break;
    curl_multi_perform(tr->multi, &running);
    finish_messages(tr);
    curl_multi_poll(tr->multi, NULL, 0, (int)(ms > 1000 ? 1000 : ms), NULL);
  }
  drive(tr, 0);
  return 0;
}

static int transport_close(lua_State *L) {
  cv_transport *tr = (cv_transport *)luaL_checkudata(L, 1, TRANSPORT_MT);
  while (tr->transfers != NULL) transfer_release(tr->transfers);
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
  if (tr->multi == NULL) return cv_error_raise(L, "network", "curl_multi_init failed");
  curl_multi_setopt(tr->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  return 1;
}

static const luaL_Reg transfer_methods[] = {
  {"headers",   transfer_headers},
  {"next",      transfer_next},
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
  cv_class(L, TRANSPORT_MT, transport_meta, transport_methods);
  lua_pushcfunction(L, transport_new);
}
