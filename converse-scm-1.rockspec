rockspec_format = "3.0"
package = "converse"
version = "scm-1"
source = {
   url = "git+https://example.invalid/converse.git",
}
description = {
   summary = "Pull, sync and enrich conversation data from conversation-analytics REST APIs",
   detailed = [[
      converse is a Lua library with a C core (libcurl transport, streaming
      JSON codec, paging) for the Converz, AgentX/DeepConverse, ConverseIQ
      and Converra APIs, plus a generic client for any JSON API and a local
      mock server that emulates all of them.
   ]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.1",
   "lua-cjson",
   "luasocket",
   "argparse",          -- bin/converse (the sqlite sink also needs luasql-sqlite3)
}
external_dependencies = {
   CURL = { library = "curl" },
}
build = {
   type = "make",
   build_variables = {
      LUA = "$(LUA)",
      CFLAGS = "$(CFLAGS)",
      LIBFLAG = "$(LIBFLAG)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      CURL_INCDIR = "$(CURL_INCDIR)",
      CURL_LIBDIR = "$(CURL_LIBDIR)",
      BUILD_PREFIX = "rock-",
   },
   install_variables = {
      INST_LIBDIR = "$(LIBDIR)",
      INST_LUADIR = "$(LUADIR)",
      INST_BINDIR = "$(BINDIR)",
      LUA = "$(LUA)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      BUILD_PREFIX = "rock-",
   },
}
