/*
** policy.c -- sans-I/O decisions shared by every transport: the clock,
** retry classification, backoff with full jitter, Retry-After and
** rate-limit-reset parsing, the retry decision that combines them, and the
** client-side rate limiter.
** Nothing here does I/O: functions take statuses, header values, the clock
** and random numbers, and answer with what to do next. Every wait they
** answer is clamped to [0, CV_MAX_WAIT].
*/
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cv.h"

#define LIMITER_MT  "converse.Limiter"
#define CV_MAX_WAIT 86400.0          /* no wait is ever longer than a day */

static double clamp_wait(double s) {
  if (!(s > 0)) return 0;            /* negative, zero and NaN */
  return s > CV_MAX_WAIT ? CV_MAX_WAIT : s;
}

/* core.now() -> monotonic seconds */
static int policy_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.backoff(attempt, base, cap, r) -> delay: full jitter, r in [0,1) */
static int policy_backoff(lua_State *L) {
  lua_Number attempt = luaL_checknumber(L, 1);
  lua_Number base = luaL_checknumber(L, 2), cap = luaL_checknumber(L, 3);
  lua_Number r = luaL_checknumber(L, 4);
  lua_Number ceiling = base * pow(2.0, attempt > 1 ? attempt - 1 : 0);
  if (ceiling > cap) ceiling = cap;
  lua_pushnumber(L, clamp_wait(r * ceiling));
  return 1;
}

/* Is a failure of this class worth trying again? Network errors and
** timeouts; statuses 408, 429, 500, 502, 503, 504. */
static int retryable_class(int has_status, lua_Integer status, const char *kind) {
  if (has_status) {
    switch (status) {
      case 408: case 429: case 500: case 502: case 503: case 504: return 1;
      default: return 0;
    }
  }
  return kind != NULL && (strcmp(kind, "network") == 0 || strcmp(kind, "timeout") == 0);
}

/* core.retryable(status_or_nil, kind_or_nil) -> boolean */
static int policy_retryable(lua_State *L) {
  lua_pushboolean(L, retryable_class(lua_type(L, 1) == LUA_TNUMBER, lua_tointeger(L, 1),
                                     luaL_optstring(L, 2, NULL)));
  return 1;
}

static int all_digits(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++) if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

/* Seconds a Retry-After value asks for (delta seconds or an HTTP date),
** or -1 when there is none or it does not parse. */
static double retry_after(const char *v, double now) {
  char tmp[128];
  size_t n;
  if (v == NULL) return -1;
  while (isspace((unsigned char)*v)) v++;
  n = strlen(v);
  if (n == 0 || n >= sizeof tmp) return -1;
  memcpy(tmp, v, n + 1);
  while (n > 0 && isspace((unsigned char)tmp[n - 1])) tmp[--n] = '\0';
  if (all_digits(tmp)) return clamp_wait(strtod(tmp, NULL));
  {
    time_t when = curl_getdate(tmp, NULL);
    if (when == (time_t)-1) return -1;
    return clamp_wait((double)when - now);
  }
}

/* Seconds until a rate-limit window resets. X-RateLimit-Reset is either a
** delta or a unix time; values past one year are read as unix time. */
static double reset_after(const char *v, double now) {
  char *end;
  double d;
  if (v == NULL) return -1;
  d = strtod(v, &end);
  if (end == v || !(d >= 0)) return -1;
  if (d > 31536000.0) d = d - now;
  return clamp_wait(d);
}

static void push_wait(lua_State *L, double d) {
  if (d < 0) lua_pushnil(L); else lua_pushnumber(L, d);
}

/* core.retry_after(value [, now_epoch]) -> seconds to wait | nil */
static int policy_retry_after(lua_State *L) {
  push_wait(L, retry_after(luaL_optstring(L, 1, NULL),
                           luaL_optnumber(L, 2, (lua_Number)time(NULL))));
  return 1;
}

/* core.reset_after(value [, now_epoch]) -> seconds | nil */
static int policy_reset_after(lua_State *L) {
  push_wait(L, reset_after(luaL_optstring(L, 1, NULL),
                           luaL_optnumber(L, 2, (lua_Number)time(NULL))));
  return 1;
}

/* The delay a response's headers ask for, or -1: Retry-After first, then a
** rate-limit reset when the remaining count is 0 (or no Retry-After came). */
static double server_delay(const char *retry, const char *reset, const char *remaining,
                           double now) {
  double d = retry_after(retry, now);
  if (d >= 0) return d;
  if (reset != NULL && (retry == NULL || (remaining && strcmp(remaining, "0") == 0)))
    return reset_after(reset, now);
  return -1;
}

static const char *opt_field_str(lua_State *L, const char *k) {
  const char *s = NULL;
  if (cv_getfield(L, 1, k) == LUA_TSTRING) s = lua_tostring(L, -1);
  lua_pop(L, 1);                 /* the string stays alive in the table */
  return s;
}

static double opt_field_num(lua_State *L, const char *k, double dflt) {
  double v = dflt;
  if (cv_getfield(L, 1, k) == LUA_TNUMBER) v = (double)lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static int opt_field_bool(lua_State *L, const char *k) {
  int v;
  cv_getfield(L, 1, k);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.retry_decision(t) -> "retry", seconds | "raise", reason, retryable
** The one place where a failed attempt is judged. t:
**   status (number or nil), kind ("network", "timeout", "http" ...),
**   permanent (the transport says trying again cannot help), idempotent,
**   attempts (tries made so far, >= 1), retries (retries allowed after the
**   first attempt), elapsed and budget (seconds since the first attempt,
**   and the most that retrying may take), retry_after, reset, remaining
**   (the response's header values), now (unix time, for HTTP dates),
**   base, cap (backoff), random (in [0, 1)).
** Reasons: "permanent", "not_retryable", "not_idempotent", "attempts",
** "budget" (no time left), "delay" (the server's delay outruns the budget).
** `retryable`: the failure is of a kind retried for this request (a
** retryable class, not permanent, an idempotent request), so giving up
** means the attempts or the budget ran out. */
static int policy_retry_decision(lua_State *L) {
  int has_status, cls, permanent, idempotent;
  double attempts, retries, elapsed, budget, delay, now;
  const char *reason = NULL;
  luaL_checktype(L, 1, LUA_TTABLE);
  has_status = cv_getfield(L, 1, "status") == LUA_TNUMBER;
  lua_pop(L, 1);
  cls = retryable_class(has_status, (lua_Integer)opt_field_num(L, "status", 0),
                        opt_field_str(L, "kind"));
  permanent = opt_field_bool(L, "permanent");
  idempotent = opt_field_bool(L, "idempotent");
  attempts = opt_field_num(L, "attempts", 1);
  retries = opt_field_num(L, "retries", 0);
  elapsed = opt_field_num(L, "elapsed", 0);
  budget = opt_field_num(L, "budget", 0);
  now = opt_field_num(L, "now", (double)time(NULL));
  delay = server_delay(opt_field_str(L, "retry_after"), opt_field_str(L, "reset"),
                       opt_field_str(L, "remaining"), now);
  if (delay < 0) {
    double base = opt_field_num(L, "base", 0.5), cap = opt_field_num(L, "cap", 30);
    double ceiling = base * pow(2.0, attempts > 1 ? attempts - 1 : 0);
    delay = clamp_wait(opt_field_num(L, "random", 0) * (ceiling > cap ? cap : ceiling));
  }
  if (permanent) reason = "permanent";
  else if (!cls) reason = "not_retryable";
  else if (!idempotent) reason = "not_idempotent";
  else if (!(attempts <= retries)) reason = "attempts";
  else if (!(elapsed < budget)) reason = "budget";
  else if (elapsed + delay > budget) reason = "delay";
  if (reason != NULL) {
    lua_pushliteral(L, "raise");
    lua_pushstring(L, reason);
    lua_pushboolean(L, cls && !permanent && idempotent);
    return 3;
  }
  lua_pushliteral(L, "retry");
  lua_pushnumber(L, delay);
  return 2;
}

/* ---- sliding-window limiter --------------------------------------------
** At most `limit` requests in any window of `window` seconds, whatever its
** alignment: a request may start only when the limit-th previous start is
** at least `window` old. Stricter than a token bucket with a burst, which
** can put limit+1 requests into one sliding window. */
typedef struct cv_limiter {
  int     limit, head, count;
  double  window, paused_until;
  double  ring[1];                 /* limit entries */
} cv_limiter;

static cv_limiter *check_limiter(lua_State *L) {
  return (cv_limiter *)luaL_checkudata(L, 1, LIMITER_MT);
}

/* core.limiter(limit, window_seconds) */
static int limiter_new(lua_State *L) {
  lua_Integer limit = luaL_checkinteger(L, 1);
  lua_Number window = luaL_checknumber(L, 2);
  cv_limiter *lim;
  if (limit < 1 || limit > 1000000 || !(window > 0))
    return cv_error_raise(L, "usage", "rate limit must be at least 1 request per positive window");
  lim = (cv_limiter *)lua_newuserdatauv(L, sizeof *lim + (size_t)(limit - 1) * sizeof(double), 0);
  lim->limit = (int)limit;
  lim->head = lim->count = 0;
  lim->window = window;
  lim->paused_until = 0;
  luaL_setmetatable(L, LIMITER_MT);
  return 1;
}

/* lim:take(now) -> 0 when a request may start now (and it is counted),
** else the seconds to wait before asking again. */
static int limiter_take(lua_State *L) {
  cv_limiter *lim = check_limiter(L);
  double now = luaL_checknumber(L, 2);
  if (lim->paused_until > now) {
    lua_pushnumber(L, lim->paused_until - now);
    return 1;
  }
  if (lim->count < lim->limit) {
    lim->ring[(lim->head + lim->count) % lim->limit] = now;
    lim->count++;
  } else {
    double oldest = lim->ring[lim->head];
    if (now - oldest < lim->window) {
      lua_pushnumber(L, oldest + lim->window - now);
      return 1;
    }
    lim->ring[lim->head] = now;
    lim->head = (lim->head + 1) % lim->limit;
  }
  lua_pushnumber(L, 0);
  return 1;
}

/* lim:pause_until(t): no request before monotonic time t (after a 429) */
static int limiter_pause(lua_State *L) {
  cv_limiter *lim = check_limiter(L);
  double until = luaL_checknumber(L, 2);
  if (until > lim->paused_until) lim->paused_until = until;
  return 0;
}

static int limiter_tostring(lua_State *L) {
  cv_limiter *lim = check_limiter(L);
  lua_pushfstring(L, "converse.Limiter (%d per %f s)", lim->limit, lim->window);
  return 1;
}

static const luaL_Reg limiter_methods[] = {
  {"take",         limiter_take},
  {"pause_until",  limiter_pause},
  {NULL, NULL}
};

static const luaL_Reg limiter_meta[] = {        /* plain memory: nothing to free */
  {"__tostring",   limiter_tostring},
  {NULL, NULL}
};

static const luaL_Reg policy_funcs[] = {
  {"now",          policy_now},
  {"backoff",      policy_backoff},
  {"retryable",    policy_retryable},
  {"retry_after",  policy_retry_after},
  {"reset_after",  policy_reset_after},
  {"retry_decision", policy_retry_decision},
  {"limiter",      limiter_new},
  {NULL, NULL}
};

void cv_policy_open(lua_State *L) {
  cv_class(L, LIMITER_MT, limiter_meta, limiter_methods);
  luaL_setfuncs(L, policy_funcs, 0);
}
