/*
** signals.c -- SIGINT/SIGTERM as a flag the blocking loops can see.
**
** The command line traps the two signals (core.trap_signals()); a handler
** only records which signal came. Every loop of the libcurl transport that
** waits (for headers, body bytes, or a Retry-After) waits in slices and
** answers "interrupted" as soon as cv_signal_pending() says so, so control
** is back in Lua within a fraction of a second and the caller can finish
** or drop its page, write its checkpoint and exit.
**
** The flag is the one piece of mutable global state in the C core: a
** signal handler can do nothing else portably than write a volatile
** sig_atomic_t. Library users who never call trap_signals keep the
** interpreter's own handling.
*/
#include <signal.h>
#include <string.h>

#include "cv.h"

static volatile sig_atomic_t pending_signal = 0;

static void on_signal(int sig) { pending_signal = sig; }

int cv_signal_pending(void) { return (int)pending_signal; }

/* core.trap_signals(): SIGINT and SIGTERM set the flag from now on. */
static int signals_trap(lua_State *L) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;                  /* no SA_RESTART: a blocking poll returns EINTR */
  if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
    return cv_error_raise(L, "usage", "cannot install signal handlers");
  return 0;
}

/* core.signal() -> the pending signal's name ("SIGINT", "SIGTERM") or nil */
static int signals_pending(lua_State *L) {
  int sig = cv_signal_pending();
  if (sig == SIGINT) lua_pushliteral(L, "SIGINT");
  else if (sig == SIGTERM) lua_pushliteral(L, "SIGTERM");
  else lua_pushnil(L);
  return 1;
}

/* core.clear_signal(): forget a signal that has been dealt with. */
static int signals_clear(lua_State *L) {
  (void)L;
  pending_signal = 0;
  return 0;
}

/* core.raise_signal(name): deliver SIGINT or SIGTERM to this process (tests). */
static int signals_raise(lua_State *L) {
  static const char *const names[] = { "SIGINT", "SIGTERM", NULL };
  int which = luaL_checkoption(L, 1, NULL, names);
  raise(which == 0 ? SIGINT : SIGTERM);
  return 0;
}

void cv_signals_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"trap_signals",  signals_trap},
    {"signal",        signals_pending},
    {"clear_signal",  signals_clear},
    {"raise_signal",  signals_raise},
    {NULL, NULL}
  };
  luaL_setfuncs(L, funcs, 0);
}
