/*
** policy.c -- sans-I/O decisions shared by every transport: the clock,
** retry classification, backoff with full jitter, Retry-After and
** rate-limit-reset parsing, and the client-side rate limiter.
** Nothing here does I/O: functions take statuses, header values, the clock
** and random numbers, and answer with what to do next.
*/
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cv.h"

#define LIMITER_MT  "converse.cv_limiter"

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
  lua_pushnumber(L, r * ceiling);
  return 1;
}

/* core.retryable(status_or_nil, kind_or_nil) -> boolean
** Network errors and timeouts, 408, 429, 500, 502, 503, 504. */
static int policy_retryable(lua_State *L) {
  int yes = 0;
  if (lua_type(L, 1) == LUA_TNUMBER) {
    switch ((int)lua_tointeger(L, 1)) {
      case 408: case 429: case 500: case 502: case 503: case 504: yes = 1; break;
      default: break;
    }
  } else {
    const char *kind = luaL_optstring(L, 2, "");
    yes = strcmp(kind, "network") == 0 || strcmp(kind, "timeout") == 0;
  }
  lua_pushboolean(L, yes);
  return 1;
}

static int all_digits(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++) if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

/* core.retry_after(value [, now_epoch]) -> seconds to wait | nil
** value: delta seconds ("120") or an HTTP date. */
static int policy_retry_after(lua_State *L) {
  const char *v = luaL_optstring(L, 1, NULL);
  time_t now = (time_t)luaL_optnumber(L, 2, (lua_Number)time(NULL));
  char tmp[128];
  size_t n;
  if (v == NULL) return 0;
  while (isspace((unsigned char)*v)) v++;
  n = strlen(v);
  if (n == 0 || n >= sizeof tmp) return 0;
  memcpy(tmp, v, n + 1);
  while (n > 0 && isspace((unsigned char)tmp[n - 1])) tmp[--n] = '\0';
  if (all_digits(tmp)) {
    lua_pushnumber(L, strtod(tmp, NULL));
  } else {
    time_t when = curl_getdate(tmp, NULL);
    if (when == (time_t)-1) return 0;
    lua_pushnumber(L, when > now ? (lua_Number)(when - now) : 0);
  }
  return 1;
}

/* core.reset_after(value [, now_epoch]) -> seconds until a rate-limit window
** resets. X-RateLimit-Reset is either a delta or a unix time; values past
** one year are read as unix time. */
static int policy_reset_after(lua_State *L) {
  const char *v = luaL_optstring(L, 1, NULL);
  lua_Number now = luaL_optnumber(L, 2, (lua_Number)time(NULL));
  char *end;
  double d;
  if (v == NULL) return 0;
  d = strtod(v, &end);
  if (end == v || d < 0 || d != d) return 0;
  if (d > 31536000.0) d = d > now ? d - now : 0;
  lua_pushnumber(L, d);
  return 1;
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
  lua_pushfstring(L, "converse.cv_limiter (%d per %f s)", lim->limit, lim->window);
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
  {"limiter",      limiter_new},
  {NULL, NULL}
};

void cv_policy_open(lua_State *L) {
  cv_class(L, LIMITER_MT, limiter_meta, limiter_methods);
  luaL_setfuncs(L, policy_funcs, 0);
}
