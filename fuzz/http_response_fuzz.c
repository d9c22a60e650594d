/*
** http_response_fuzz.c -- libFuzzer harness for core.http_response, the
** framing parser joined with the body sink and the streaming decoder
** (src/http_response.c; make fuzz-http).
**
** Input: byte 0 = flags (bit 0: HEAD request), byte 1 = piece size - 1,
** the rest = the bytes a server sent, then the peer closes. A transport's
** loop is played: next() until it answers, feeding while wants() says so.
** Properties (a failure traps):
** - fed whole or in pieces, the same records come out, then the same end
**   (no more records, or a network failure with the same message), except
**   when the JSON itself is bad: a json error may then stand for a network
**   failure (bytes that are both bad JSON and cut short, or inflated from a
**   damaged compressed stream, fail on whichever the decoder meets first),
**   and one side may have one record more before it (the decoder parses a
**   record in place when it can -- `2` out of `2No3` -- but once it had to
**   wait for more bytes it waits for the end of the whole token);
** - the loop never gets stuck: once every byte was fed and the peer closed,
**   next() always makes progress (no "give me bytes" forever).
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
  "local core, s, size, head = ...\n"
  "local function run(size)\n"
  "  local r = core.http_response { method = head and 'HEAD' or 'GET', max_error_body = 64,\n"
  "                                 decoder = core.decoder { records = 'data', max_record = 4096 } }\n"
  "  local out, i, closed, stuck = {}, 1, false, 0\n"
  "  local ok, err = pcall(function()\n"
  "    while true do\n"
  "      local rec, kind, msg = r:next()\n"
  "      if rec == false then\n"
  "        if r:wants() then\n"
  "          if i <= #s then r:feed(s:sub(i, i + size - 1)); i = i + size\n"
  "          else r:eof(); closed = true end\n"
  "        elseif closed then\n"
  "          stuck = stuck + 1\n"
  "          if stuck > 1000 then error('STUCK') end\n"
  "        end\n"
  "      elseif rec == nil then\n"
  "        out[#out + 1] = 'end ' .. tostring(kind) .. ' ' .. tostring(msg)\n"
  "        return\n"
  "      elseif rec == core.EMPTY then\n"
  "        out[#out + 1] = 'empty'\n"
  "        return\n"
  "      else\n"
  "        out[#out + 1] = core.json_encode(rec, { sort_keys = true })\n"
  "      end\n"
  "    end\n"
  "  end)\n"
  "  if not ok then\n"
  "    if tostring(err):find('STUCK') then error('STUCK') end\n"
  "    out[#out + 1] = 'raised ' .. tostring(type(err) == 'table' and err.kind or err)\n"
  "  end\n"
  "  r:close()\n"
  "  local last = table.remove(out)\n"
  "  return out, last\n"
  "end\n"
  "local whole, wend = run(#s + 1)\n"
  "local split, send = run(size)\n"
  "local json = wend:find('^raised json') or send:find('^raised json')\n"
  "local short, long = whole, split\n"
  "if #short > #long then short, long = long, short end\n"
  "for i = 1, #short do if short[i] ~= long[i] then error('DISAGREE records') end end\n"
  "if #long > #short + (json and 1 or 0) then error('DISAGREE records') end\n"
  "if wend ~= send then\n"
  "  local function failed(e) return e:find('^raised json') or e:find('^end network') end\n"
  "  if not (json and failed(wend) and failed(send)) then error('DISAGREE end') end\n"
  "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L;
  if (size < 2) return 0;
  L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_loadstring(L, SCRIPT) != LUA_OK) __builtin_trap();
  luaL_requiref(L, "converse.core", luaopen_converse_core, 0);
  lua_pushlstring(L, (const char *)data + 2, size - 2);
  lua_pushinteger(L, 1 + data[1]);
  lua_pushboolean(L, data[0] & 1);
  if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg != NULL && (strstr(msg, "STUCK") || strstr(msg, "DISAGREE"))) __builtin_trap();
  }
  lua_close(L);
  return 0;
}
