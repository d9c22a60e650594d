/*
** fuzz_driver.h -- the libFuzzer driver every JSON harness shares (make fuzz).
**
** The property itself is Lua: fuzz/<HARNESS>.lua returns
** function(core, H) -> function(s, flags), H being fuzz/fuzz_common.lua's
** helpers, and raises when the property breaks. The driver keeps one Lua
** state per process, passes each input as flags = its first byte and s =
** the rest, and turns an escaping error into abort() so that libFuzzer
** saves the input as a crash artifact; a full collection after each input
** keeps the state from growing (and LeakSanitizer from rescanning it).
** ASan/UBSan findings in the C core crash on their own. Saved findings live
** in spec/fixtures/json/fuzz/, where spec/json_decode_spec.lua replays all
** three properties on every Lua. Written against the API every Lua shares
** (make fuzz FUZZ_LUA=luajit).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#ifndef FUZZ_DIR
#error "define FUZZ_DIR, the directory of the .lua properties (make fuzz does)"
#endif

int luaopen_converse_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static int property = LUA_NOREF;

/* Print tostring(top) (any Lua version) and crash. */
static void fuzz_fail(void) {
  lua_getglobal(L, "tostring");
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != 0 || lua_tostring(L, -1) == NULL) lua_pushliteral(L, "?");
  fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
  abort();
}

/* Stack: 1 = converse.core, 2 = H; leaves the property in the registry. */
static void fuzz_init(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  lua_pushcfunction(L, luaopen_converse_core);
  lua_pushliteral(L, "converse.core");
  if (lua_pcall(L, 1, 1, 0) != 0) fuzz_fail();
  if (luaL_loadfile(L, FUZZ_DIR "/fuzz_common.lua") != 0) fuzz_fail();
  if (lua_pcall(L, 0, 1, 0) != 0) fuzz_fail();
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 1, 1, 0) != 0) fuzz_fail();
  if (luaL_loadfile(L, FUZZ_DIR "/" HARNESS ".lua") != 0) fuzz_fail();
  if (lua_pcall(L, 0, 1, 0) != 0) fuzz_fail();
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  if (lua_pcall(L, 2, 1, 0) != 0) fuzz_fail();
  property = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL) fuzz_init();
  if (size < 1) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, property);
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  lua_pushinteger(L, data[0]);
  if (lua_pcall(L, 2, 0, 0) != 0) fuzz_fail();
  lua_settop(L, 0);
  /* Free this input's garbage now (closing its decoders): libFuzzer's leak
  ** check then sees no growth, and a C leak still shows. */
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
