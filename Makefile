# converse -- build, test, bench.
#   make                 build build/lua5.4/converse/core.so
#   make LUA=luajit      build build/luajit/converse/core.so (OpenResty's LuaJIT 2.1)
#   make test            install deps if missing, build both, run the spec suite on both
#   make demo            run the demo
#   make asan            spec suite under AddressSanitizer + UBSan (Lua 5.4)
#   make valgrind        spec suite under valgrind (Lua 5.4)
#   make bench           benchmarks (bench/)
#   make fuzz            libFuzzer on the JSON codec (clang)
# LuaRocks passes CFLAGS, LIBFLAG, LUA_INCDIR, INST_LIBDIR, INST_LUADIR.

LUA        ?= lua5.4
ifeq ($(LUA),luajit)
LUA_INCDIR ?= /usr/include/luajit-2.1
LUA_NAME    = luajit
else
LUA_INCDIR ?= /usr/include/lua5.4
LUA_NAME    = lua5.4
endif

BUILD      ?= build/$(LUA_NAME)
CFLAGS     ?= -O2 -g
LIBFLAG    ?= -shared
CURL_INCDIR ?= /usr/include
CURL_LIBDIR ?= /usr/lib
WARN        = -std=c99 -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes \
              -Wstrict-prototypes -Wpointer-arith -Wcast-qual
ALL_CFLAGS  = $(CFLAGS) $(WARN) -fPIC -D_POSIX_C_SOURCE=200809L \
              -I$(LUA_INCDIR) -I$(CURL_INCDIR)
LIBS        = -L$(CURL_LIBDIR) -lcurl -lm

SRCS   := $(wildcard src/*.c)
OBJS   := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS))
CORE    = $(BUILD)/converse/core.so

INST_LIBDIR ?= $(DESTDIR)/usr/local/lib/lua/5.4
INST_LUADIR ?= $(DESTDIR)/usr/local/share/lua/5.4
INST_BINDIR ?= $(DESTDIR)/usr/local/bin

.PHONY: all both deps test ci demo asan valgrind bench bench-json fuzz install clean

all: $(CORE)

$(BUILD)/obj/%.o: src/%.c src/cv.h src/compat.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

both:
	$(MAKE) LUA=lua5.4
	$(MAKE) LUA=luajit

deps:
	@scripts/deps.sh

test: deps both
	@scripts/test.sh

ci: test

demo: deps all
	@scripts/demo.sh

asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	        LDFLAGS="-fsanitize=address,undefined"
	@scripts/test.sh --asan

valgrind: all
	@scripts/test.sh --valgrind

bench: deps both
	@bench/run.sh

bench-json: deps both
	@bench/json.sh

# libFuzzer + ASan + UBSan on the JSON codec (needs clang): whole vs streaming
# agreement and encode/decode round trips, seeded with JSONTestSuite's y_ files.
FUZZ_SECONDS ?= 120
fuzz:
	@mkdir -p build/fuzz/corpus
	@for f in ../shared/jsontestsuite/test_parsing/y_*.json; do \
	  [ -f "$$f" ] && { printf '\003'; cat "$$f"; } > build/fuzz/corpus/$$(basename $$f); done; true
	clang -g -O1 -fsanitize=fuzzer,address,undefined -I/usr/include/lua5.4 -Isrc \
	  src/*.c fuzz/json_fuzz.c -llua5.4 -lcurl -lm -o build/fuzz/json_fuzz
	build/fuzz/json_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  -artifact_prefix=build/fuzz/ build/fuzz/corpus

install: $(CORE)
	install -d $(INST_LIBDIR)/converse $(INST_LUADIR)/converse $(INST_BINDIR)
	install -m 0755 $(CORE) $(INST_LIBDIR)/converse/core.so
	cd lua && find converse -name '*.lua' -exec install -D -m 0644 {} $(INST_LUADIR)/{} \;
	install -m 0755 bin/converse $(INST_BINDIR)/converse

clean:
	rm -rf build
