# converse -- build, test, bench.
#   make                 build build/lua5.4/converse/core.so
#   make LUA=luajit      build build/luajit/converse/core.so (OpenResty's LuaJIT 2.1)
#   make LUA=lua5.1      likewise for lua5.1, lua5.2, lua5.3 (build/<abi>/)
#   make test            install deps if missing, build every Lua, run the spec suite on each
#   make demo            resumable sync of AgentX into SQLite against the mock (scripts/demo.sh)
#   make asan            spec suite under AddressSanitizer + UBSan (Lua 5.4)
#   make valgrind        spec suite under valgrind (Lua 5.4)
#   make bench           benchmarks (bench/): decoder and end-to-end, each against the floor
#   make bench-json      JSON decode benchmark only (bench/json.lua, and bench/instr.lua in
#                        instructions), Lua 5.4 and LuaJIT
#   make bench-e2e       end-to-end paging from a local nginx only (bench/e2e.lua)
#   make bench-floor     build the floor module (bench/floor.c -> build/<abi>/bench/floor.so)
#   make bench-sync      converse sync into SQLite vs a hand-written script (bench/sync.lua)
#   make bench-scale     1/2/4/8 workers on the PostgreSQL queue, with and without a shared rate limit
#   make fuzz            libFuzzer on the JSON codec (clang), FUZZ_SECONDS per harness
#   make lint            cppcheck and clang-tidy on src/ (checks in .clang-tidy)
#   make bench-nginx     the cosocket transport inside nginx vs the naive resty way
#   make nginx-screenshot  screenshot of the nginx dashboard example (build/nginx-dashboard.png)
# LuaRocks passes CFLAGS, LIBFLAG, LUA_INCDIR, INST_LIBDIR, INST_LUADIR.

LUA        ?= lua5.4
LUA_NAME   := $(notdir $(LUA))
ifneq ($(filter luajit%,$(LUA_NAME)),)
LUA_INCDIR ?= /usr/include/luajit-2.1
else
LUA_INCDIR ?= /usr/include/$(LUA_NAME)
endif
# The build directory is named after the Lua ABI read from the headers
# (lua5.1 ... lua5.4, luajit), so objects of one Lua never mix with another's.
LUA_ABI    := $(if $(wildcard $(LUA_INCDIR)/luajit.h),luajit,$(shell sed -n \
              's/^\#define LUA_VERSION_NUM[^0-9]*\([0-9]\)0\([0-9]\).*/lua\1.\2/p' $(LUA_INCDIR)/lua.h 2>/dev/null))
BUILD_PREFIX ?=
BUILD      ?= build/$(BUILD_PREFIX)$(or $(LUA_ABI),$(LUA_NAME))
CFLAGS     ?= -O2 -g
LIBFLAG    ?= -shared
CURL_INCDIR ?= /usr/include
CURL_LIBDIR ?= /usr/lib
WARN        = -std=c99 -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes \
              -Wstrict-prototypes -Wpointer-arith -Wcast-qual
ALL_CFLAGS  = $(CFLAGS) $(WARN) -fPIC -D_POSIX_C_SOURCE=200809L \
              -I$(LUA_INCDIR) -I$(CURL_INCDIR)
LIBS        = -L$(CURL_LIBDIR) -lcurl -lz -lm

SRCS   := $(wildcard src/*.c)
OBJS   := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS))
CORE    = $(BUILD)/converse/core.so

INST_LIBDIR ?= $(DESTDIR)/usr/local/lib/lua/5.4
INST_LUADIR ?= $(DESTDIR)/usr/local/share/lua/5.4
INST_BINDIR ?= $(DESTDIR)/usr/local/bin

.PHONY: all both all-luas deps test ci demo asan valgrind bench bench-json bench-e2e bench-floor floor bench-sync \
        bench-scale fuzz lint install clean

all: $(CORE)

$(BUILD)/obj/%.o: src/%.c src/cv.h src/compat.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fvisibility=hidden -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

LUAS ?= lua5.4 luajit lua5.1 lua5.2 lua5.3

all-luas:
	@for l in $(LUAS); do $(MAKE) --no-print-directory LUA=$$l || exit 1; done

both:
	$(MAKE) LUAS="lua5.4 luajit" all-luas

deps:
	@scripts/deps.sh

test: deps all-luas
	@LUAS="$(LUAS)" scripts/test.sh

ci: test

demo: deps all
	@scripts/demo.sh

asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	        LDFLAGS="-fsanitize=address,undefined"
	@scripts/test.sh --asan

valgrind: all
	@scripts/test.sh --valgrind

# The floor (bench/floor.c): the tables a decoder builds, built with no
# parsing; every benchmark reports against it. One module per Lua ABI.
FLOOR_LUAS ?= lua5.4 luajit
floor: $(BUILD)/bench/floor.so
$(BUILD)/bench/floor.so: bench/floor.c src/compat.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc $(LIBFLAG) $(LDFLAGS) -o $@ bench/floor.c

bench-floor:
	@for l in $(FLOOR_LUAS); do $(MAKE) --no-print-directory LUA=$$l floor || exit 1; done

bench: deps both bench-floor
	@bench/run.sh

bench-json: deps both bench-floor
	@bench/json.sh

bench-e2e: deps both bench-floor
	@bench/e2e.sh

bench-sync: deps both
	@CONVERSE_LUA=lua5.4 lua5.4 bench/sync.lua

bench-scale: deps both
	@CONVERSE_LUA=lua5.4 lua5.4 bench/scale.lua

# libFuzzer + ASan + UBSan on the JSON codec (clang), one harness per property
# (fuzz/*.lua): json_fuzz (whole vs streaming decodes agree),
# json_fuzz_roundtrip (decode -> encode -> decode gives the same values),
# json_fuzz_raw (raw mode agrees with table mode). Each runs FUZZ_SECONDS,
# seeded with JSONTestSuite's y_ files and the saved findings; corpus and crash
# artifacts in build/fuzz/<harness>/ (build/fuzz/<lua>/<harness>/ for another
# FUZZ_LUA: luajit, lua5.1 ...). Fails when any harness finds a crash.
FUZZ_SECONDS ?= 60
FUZZ_LUA     ?= lua5.4
FUZZERS      ?= json_fuzz json_fuzz_roundtrip json_fuzz_raw
ifneq ($(filter luajit%,$(FUZZ_LUA)),)
FUZZ_LUA_INC  = /usr/include/luajit-2.1
FUZZ_LUA_LIB  = -lluajit-5.1
else
FUZZ_LUA_INC  = /usr/include/$(FUZZ_LUA)
FUZZ_LUA_LIB  = -l$(FUZZ_LUA)
endif
FUZZ_OUT      = build/fuzz$(if $(filter lua5.4,$(FUZZ_LUA)),,/$(FUZZ_LUA))
FUZZ_CFLAGS   = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -I$(FUZZ_LUA_INC) -Isrc -DFUZZ_DIR='"$(CURDIR)/fuzz"' -DCV_BORROW_MIN=1 -DCV_PIECE_MIN=2
fuzz:
	@rc=0; for h in $(FUZZERS); do \
	  mkdir -p $(FUZZ_OUT)/bin $(FUZZ_OUT)/$$h/corpus || exit 1; \
	  for f in spec/fixtures/jsontestsuite/test_parsing/y_*.json; do \
	    [ -f "$$f" ] && { printf '\003'; cat "$$f"; } > $(FUZZ_OUT)/$$h/corpus/$$(basename $$f); done; \
	  cp spec/fixtures/json/fuzz/* $(FUZZ_OUT)/$$h/corpus/ 2>/dev/null; \
	  echo "clang ... fuzz/$$h.c -o $(FUZZ_OUT)/bin/$$h"; \
	  clang $(FUZZ_CFLAGS) src/*.c fuzz/$$h.c $(FUZZ_LUA_LIB) -lcurl -lz -lm -o $(FUZZ_OUT)/bin/$$h || exit 1; \
	  $(FUZZ_OUT)/bin/$$h -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=20 \
	    -artifact_prefix=$(FUZZ_OUT)/$$h/ $(FUZZ_OUT)/$$h/corpus || rc=1; \
	done; exit $$rc

# libFuzzer + ASan + UBSan on the HTTP/1.1 framing parser (src/http.c): the
# same events whole, split at random points and byte by byte; no crash;
# bounded buffers. And on core.http_response (framing + body + decoder): the
# same records and end whole or in pieces, never stuck. Seeded with the
# fixtures of spec/fixtures/http (findings are added there). FUZZ_SECONDS
# each; `make fuzz` runs them too.
fuzz: fuzz-http
.PHONY: fuzz-http
fuzz-http:
	@mkdir -p build/fuzz/http-corpus build/fuzz/http-response-corpus
	@for f in spec/fixtures/http/*.http; do [ -f "$$f" ] || continue; \
	  { printf '\002\001\002\003\004'; cat "$$f"; } > build/fuzz/http-corpus/$$(basename $$f); \
	  { printf '\000\006'; cat "$$f"; } > build/fuzz/http-response-corpus/$$(basename $$f); done
	clang -g -O1 -fsanitize=fuzzer,address,undefined -I/usr/include/lua5.4 -Isrc \
	  src/*.c fuzz/http_fuzz.c -llua5.4 -lcurl -lz -lm -o build/fuzz/http_fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -I/usr/include/lua5.4 -Isrc \
	  src/*.c fuzz/http_response_fuzz.c -llua5.4 -lcurl -lz -lm -o build/fuzz/http_response_fuzz
	build/fuzz/http_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -rss_limit_mb=1024 \
	  -artifact_prefix=build/fuzz/http- build/fuzz/http-corpus
	build/fuzz/http_response_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -rss_limit_mb=1024 \
	  -timeout=10 -artifact_prefix=build/fuzz/http-response- build/fuzz/http-response-corpus

# Inside nginx (docs/nginx.md): the dashboard example's screenshot (headless
# Chromium; installs Debian's chromium when missing) and the benchmark of the
# cosocket transport against the naive resty way (figures in the README).
.PHONY: nginx-screenshot bench-nginx
nginx-screenshot: deps
	@$(MAKE) --no-print-directory LUA=luajit
	@command -v chromium >/dev/null 2>&1 || { s=""; [ "$$(id -u)" -ne 0 ] && s=sudo; \
	  DEBIAN_FRONTEND=noninteractive $$s apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	SCREENSHOT=$(CURDIR)/build/nginx-dashboard.png examples/nginx/run.sh screenshot

bench-nginx: deps
	@$(MAKE) --no-print-directory LUA=luajit
	CONVERSE_LUA=luajit CONVERSE_BUILD=build/luajit luajit bench/nginx.lua

# Static analysis; all must be clean. cppcheck: warnings, style,
# performance and portability. clang-tidy: the checks in .clang-tidy (the
# analyzer, bugprone-*, cert-*), every warning an error. luacheck (when
# installed: Debian's lua-check) on the Lua code, settings in .luacheckrc.
lint:
	@if command -v luacheck >/dev/null; then luacheck -q lua spec bin bench examples; fi
	cppcheck --enable=warning,style,performance,portability --std=c99 --error-exitcode=1 \
	  --inline-suppr --quiet --suppress=missingIncludeSystem -Isrc -I$(LUA_INCDIR) src/*.c
	clang-tidy --quiet src/*.c -- -std=c99 -D_POSIX_C_SOURCE=200809L -I$(LUA_INCDIR) -Isrc

install: $(CORE)
	install -d $(INST_LIBDIR)/converse $(INST_LUADIR)/converse $(INST_BINDIR)
	install -m 0755 $(CORE) $(INST_LIBDIR)/converse/core.so
	cd lua && find converse -name '*.lua' -exec install -D -m 0644 {} $(INST_LUADIR)/{} \;
	install -m 0755 bin/converse $(INST_BINDIR)/converse

clean:
	rm -rf build
