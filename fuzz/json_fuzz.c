/*
** json_fuzz.c -- libFuzzer harness for the JSON codec (make fuzz).
** Each input is decoded whole (core.json_decode), then fed to a streaming
** decoder in chunks whose sizes come from the input's first byte, with and
** without a records path. Both must agree on success; a successful decode
** must re-encode and decode back to the same text.
*/
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int luaopen_converse_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *SCRIPT =
  "local core, s, step = ...\n"
  "local ok1, v = pcall(core.json_decode, s)\n"
  "local d = core.decoder({ whole = true })\n"
  "local ok2 = pcall(function()\n"
  "  local n = 0\n"
  "  for i = 1, #s, step do d:feed(s:sub(i, i + step - 1)); while d:next() ~= nil do n = n + 1 end end\n"
  "  d:finish()\n"
  "  while true do local r, st = d:next(); if r == nil then assert(st == 'done') break end n = n + 1 end\n"
  "  assert(n == 1)\n"
  "end)\n"
  "if ok1 ~= ok2 then error('whole and streaming disagree') end\n"
  "if ok1 then\n"
  "  local ok3, t = pcall(core.json_encode, v, { sort_keys = true })\n"
  "  if ok3 then\n"
  "    local w = core.json_decode(t)\n"
  "    assert(core.json_encode(w, { sort_keys = true }) == t, 'round trip')\n"
  "  end\n"
  "end\n"
  "local r = core.decoder({ records = 'data' })\n"
  "pcall(function()\n"
  "  for i = 1, #s, step do r:feed(s:sub(i, i + step - 1)); while r:next() ~= nil do end end\n"
  "  r:finish(); while r:next() ~= nil do end\n"
  "end)\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L;
  int step;
  if (size < 1) return 0;
  step = 1 + data[0] % 17;
  L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_loadstring(L, SCRIPT) != LUA_OK) __builtin_trap();
  luaL_requiref(L, "converse.core", luaopen_converse_core, 0);
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  lua_pushinteger(L, step);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg && (strstr(msg, "disagree") || strstr(msg, "round trip") || strstr(msg, "assert")))
      __builtin_trap();
  }
  lua_close(L);
  return 0;
}
