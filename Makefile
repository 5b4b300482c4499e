#   hgp - build, test, run. `make help` lists the targets.
#
#   Release binaries go to bin/. Tests build a second, sanitized copy
#   (AddressSanitizer + UndefinedBehaviorSanitizer) in build/san/ and run
#   everything against that, so `make run` never picks up a slow build.

SAN ?= 0
CC ?= cc
PKGS := libczmq libzmq hiredis msgpack rdkafka
WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -std=gnu11
INC := -Ilib -Ischemas

ifeq ($(SAN),1)
  OUT := build/san
  BIN := build/san/bin
  OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
         -fno-sanitize-recover=undefined
else
  OUT := build/rel
  BIN := bin
  OPT := -O2 -g
endif

CFLAGS_ALL = $(WARN) $(OPT) $(INC) $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LDLIBS_ALL = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread $(LDLIBS)

LIB_SRC := schemas/hgp_codec.c lib/hgp_config.c lib/hgp_process.c lib/hgp_keyspace.c lib/hgp_args.c lib/hgp_client.c \
           lib/hgp_discovery.c lib/hgp_redis.c lib/hgp_eventlog.c lib/hgp_ledger.c lib/hgp_worker.c \
           lib/hgp_keys.c lib/hgp_mux.c lib/hgp_prom.c lib/hgp_exporter.c lib/hgp_announcer.c lib/hgp_trace.c lib/hgp_views.c
LIB_OBJ := $(LIB_SRC:%.c=$(OUT)/obj/%.o)
LIB_A   := $(OUT)/libhgp.a

BROKER_SRC  := bus/hgp_entries.c bus/hgp_actors.c bus/hgp_announced.c bus/hgp_router.c bus/hgp_broker.c \
               bus/hgp_broker_main.c
KEYS_SRC    := bus/hgp_keys_main.c
COUNTER_SRC := actors/counter/hgp_counter.c actors/counter/hgp_counter_main.c
CLI_SRC     := cli/hgp_cli.c cli/hgp_cli_counter.c cli/hgp_cli_broker.c \
               cli/hgp_cli_json.c cli/hgp_bench.c cli/hgp_replay.c
MOCK_SRC    := kafka/hgp_kafka_mock.c
ANALYTICS_SRC := actors/analytics/hgp_sums.c actors/analytics/hgp_analytics.c \
                 actors/analytics/hgp_analytics_main.c
GATEWAY_SRC := gateway/hgp_gateway.c gateway/hgp_http.c gateway/hgp_http_parser.c gateway/hgp_apikeys.c gateway/hgp_ratelimit.c gateway/hgp_breaker.c gateway/hgp_callstats.c gateway/hgp_json.c gateway/hgp_metrics.c gateway/hgp_gateway_main.c

BINS := $(BIN)/hgp-broker $(BIN)/hgp-counter $(BIN)/hgp-analytics $(BIN)/hgp \
        $(BIN)/hgp-kafka-mock $(BIN)/hgp-gateway $(BIN)/hgp-keys

.PHONY: all deps test test-compose unit integration fuzz bench bench-curve bench-sustained bench-scaling loadtest run clean help
all: $(BINS)

help:
	@echo "make          build bin/hgp-broker bin/hgp-counter bin/hgp-analytics bin/hgp bin/hgp-kafka-mock bin/hgp-gateway bin/hgp-keys"
	@echo "make deps     install missing Debian packages (see DEVELOPERS.md)"
	@echo "make test     deps, sanitized build, unit + fuzz-smoke + integration tests"
	@echo "make bench    release build; hgp bench at window 1, 16, 128, event log off/async/sync; wrk vs hello-world"
	@echo "make bench-curve    release build, bench and bench_http with bus/curve 0 and 1 (what CURVE costs)"
	@echo "make bench-scaling  release build, hgp bench with 1, 2, 4 counter actors"
	@echo "make bench-sustained  release build, make run's stack with analytics, 5 blocks of 100k increments: does the rate hold?"
	@echo "make loadtest  release build, five levels (1k@10 .. 100k@1000) on make run's stack, hello-world and webdis: loadtest/report.md, report.png"
	@echo "make test-compose  docker.io + docker-compose (Debian), build the image, run tests/compose against the compose stack"
	@echo "make run      deps, build, start redis + kafka mock + broker + 2 counters + analytics + gateway"

$(OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

#   Lua scripts: each .lua next to its owner becomes a generated C file in
#   $(OUT)/gen defining const char hgp_lua_<name> [] (lib/hgp_lua.h), in
#   libhgp.a; the index (hgp_lua_scripts, every script) is for test_lua
LUA_SRC := $(sort $(wildcard lib/*.lua actors/*/*.lua))
LUA_GEN := $(LUA_SRC:%.lua=$(OUT)/gen/%.lua.c) $(OUT)/gen/lua_index.c
$(LIB_A): $(LUA_GEN:$(OUT)/gen/%.c=$(OUT)/obj/gen/%.o)

$(OUT)/gen/%.lua.c: %.lua scripts/lua_embed.sh
	@mkdir -p $(dir $@)
	scripts/lua_embed.sh $< > $@.tmp && mv $@.tmp $@
$(OUT)/gen/lua_index.c: $(LUA_SRC) scripts/lua_embed.sh
	@mkdir -p $(dir $@)
	scripts/lua_embed.sh --index $(LUA_SRC) > $@.tmp && mv $@.tmp $@
$(OUT)/obj/gen/%.o: $(OUT)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BIN)/hgp-broker: $(BROKER_SRC:%.c=$(OUT)/obj/%.o) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL)

$(BIN)/hgp-keys: $(KEYS_SRC:%.c=$(OUT)/obj/%.o) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL)

$(BIN)/hgp-counter: $(COUNTER_SRC:%.c=$(OUT)/obj/%.o) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL)

#   bin/hgp writes its --json output with jansson, like the gateway
$(BIN)/hgp: $(CLI_SRC:%.c=$(OUT)/obj/%.o) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -ljansson -lm

$(BIN)/hgp-analytics: $(ANALYTICS_SRC:%.c=$(OUT)/obj/%.o) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -lm

$(BIN)/hgp-kafka-mock: $(MOCK_SRC:%.c=$(OUT)/obj/%.o) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL)
#   The HTTP gateway links jansson and civetweb (no .pc file on Debian)
$(BIN)/hgp-gateway: $(GATEWAY_SRC:%.c=$(OUT)/obj/%.o) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -ljansson -lm

#   Unit tests (cmocka) and the fuzz-smoke driver
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BIN)/tests/%)

$(BIN)/tests/%: $(OUT)/obj/tests/unit/%.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -lcmocka

#   test_broker_*: the broker's classes (entry pool, actor table, loop)
BUS_OBJ := $(patsubst %.c,$(OUT)/obj/%.o,bus/hgp_entries.c bus/hgp_actors.c bus/hgp_announced.c bus/hgp_router.c \
           bus/hgp_broker.c)
$(OUT)/obj/tests/unit/test_broker_%.o: INC += -Ibus
$(BIN)/tests/test_broker_%: $(OUT)/obj/tests/unit/test_broker_%.o $(BUS_OBJ) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -lcmocka

#   test_lua also runs the analytics actor's sums (hgp_sums) against the scripts
$(OUT)/obj/tests/unit/test_lua.o: INC += -Iactors/analytics
$(BIN)/tests/test_lua: $(OUT)/obj/tests/unit/test_lua.o $(OUT)/obj/actors/analytics/hgp_sums.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -lcmocka -lm

#   test_json also needs the gateway's JSON decoder; test_fuzz_json is the
#   gateway's fuzz harness run as a smoke test (tests/fuzz/fuzz_json.c)
UNIT_BINS += $(BIN)/tests/test_fuzz_json
$(OUT)/obj/tests/unit/test_json.o $(OUT)/obj/tests/fuzz/fuzz_json.o: INC += -Igateway
$(OUT)/obj/tests/fuzz/fuzz_json.o: CFLAGS += -DHGP_FUZZ_SMOKE_MAIN
$(BIN)/tests/test_json: $(OUT)/obj/tests/unit/test_json.o $(OUT)/obj/gateway/hgp_json.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -ljansson -lcmocka -lm
$(BIN)/tests/test_fuzz_json: $(OUT)/obj/tests/fuzz/fuzz_json.o $(OUT)/obj/gateway/hgp_json.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -ljansson -lm

#   test_cli_json: bin/hgp's JSON output helpers
$(OUT)/obj/tests/unit/test_cli_json.o: INC += -Icli
$(BIN)/tests/test_cli_json: $(OUT)/obj/tests/unit/test_cli_json.o $(OUT)/obj/cli/hgp_cli_json.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -ljansson -lcmocka -lm

#   test_fuzz_http and test_http_parser: the gateway's HTTP parser
UNIT_BINS += $(BIN)/tests/test_fuzz_http
$(OUT)/obj/tests/unit/test_http_parser.o $(OUT)/obj/tests/fuzz/fuzz_http.o: INC += -Igateway
$(OUT)/obj/tests/fuzz/fuzz_http.o: CFLAGS += -DHGP_FUZZ_SMOKE_MAIN
$(BIN)/tests/test_http_parser: $(OUT)/obj/tests/unit/test_http_parser.o $(OUT)/obj/gateway/hgp_http_parser.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -lcmocka
$(BIN)/tests/test_fuzz_http: $(OUT)/obj/tests/fuzz/fuzz_http.o $(OUT)/obj/gateway/hgp_http_parser.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL)

$(BIN)/tests/fuzz_smoke: $(OUT)/obj/tests/fuzz/fuzz_codec.o $(OUT)/obj/tests/fuzz/fuzz_smoke.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL)

deps:
	@scripts/deps.sh

test: deps
	$(MAKE) SAN=1 all $(patsubst bin/%,build/san/bin/%,$(UNIT_BINS)) build/san/bin/tests/fuzz_smoke
	$(MAKE) all
	scripts/test.sh build/san/bin

#   The compose stack (docker-compose.yml + docker-compose.test.yml) in
#   Docker: starts dockerd if none runs (and stops it), makes
#   debian:bookworm-slim with debootstrap when missing, builds hgp:local
test-compose:
	@scripts/deps.sh --compose
	/usr/bin/python3 -m pytest -v -p no:cacheprovider tests/compose

#   libFuzzer build of the same harness (needs clang): make fuzz FUZZ_SECONDS=60
FUZZ_SECONDS ?= 60
fuzz: $(LUA_GEN)
	@mkdir -p build/fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined $(INC) \
	    $(shell pkg-config --cflags $(PKGS)) tests/fuzz/fuzz_codec.c $(LIB_SRC) $(LUA_GEN) \
	    -o build/fuzz/fuzz_codec $(shell pkg-config --libs $(PKGS))
	build/fuzz/fuzz_codec -max_total_time=$(FUZZ_SECONDS) -max_len=4096 tests/fuzz/corpus

bench: all
	scripts/bench.sh
	scripts/bench_http.sh

#   What CURVE costs: bench.sh and bench_http.sh with bus/curve 0 and 1
bench-curve: all
	scripts/bench_curve.sh

#   make run's stack with analytics: does the rate hold as the log grows?
bench-sustained: all
	scripts/bench_sustained.sh

bench-scaling: all
	scripts/bench_scaling.sh

#   The seed's five-level load test: make run's stack, hello-world and
#   webdis at 1k@10 ... 100k@1000; loadtest/report.md and report.png
loadtest: all
	scripts/loadtest.sh

run: deps all
	scripts/run.sh

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
