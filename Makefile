# ngx_vaquero_module
#
#   make            build build/ngx_http_vaquero_module.so against the packaged nginx
#   make deps       install the Debian packages the build, tests and demo need
#   make test       deps, build, SDK unit tests, integration tests (prove t/),
#                   then all of them again on an ASan+UBSan build (test-sanitize)
#   make demo       deps, build, FastAPI behind nginx with the module, traces shown
#   make sdk-test   the SDK unit tests alone (and the fuzz targets on generated inputs)
#   make fuzz       the fuzz targets under libFuzzer, FUZZ_SECONDS each (needs clang)
#   make bench      what tracing costs nginx: wrk, 2 scenarios x 8 variants,
#                   interleaved rounds, spans counted by a sink (tools/bench.py)
#   make bench-micro     ns per operation of the request path's pieces, and
#                        the encoders' spans per second (one core)
#   make bench-exporter  spans per second of one exporter thread (loopback)
#   make bench-encode    spans per second and bytes per span of each encoder
#   make soak       a few minutes of traffic, 30 reloads and a flapping
#                   collector; then counters, leaks and memory are checked

SHELL       := /bin/bash
NGINX_SRC   ?= /usr/share/nginx/src
BUILD       := build
NGX_BUILD   := $(BUILD)/nginx
MODULE      := $(BUILD)/ngx_http_vaquero_module.so
PYTHON      := /usr/bin/python3

DEB_PACKAGES := gcc make perl nginx nginx-dev libcurl4-openssl-dev \
                libjansson-dev libpcre2-dev libssl-dev zlib1g-dev \
                python3-fastapi python3-uvicorn curl wrk \
                protobuf-compiler python3-protobuf openssl

CFLAGS      ?= -O2 -g
SDK_CFLAGS  := -std=gnu11 -Wall -Wextra -Werror $(CFLAGS) -Isdk/include
SDK_SRCS    := $(wildcard sdk/src/*.c)
SDK_HDRS    := $(wildcard sdk/include/vaquero/*.h sdk/src/*.h)
SDK_TESTS   := ids tracecontext sampler span queue encode otlp exporter resources \
               transport http_response http
SDK_TEST_BINS := $(SDK_TESTS:%=$(BUILD)/sdk/test_%)
SDK_FUZZERS := span tracecontext sampler otlp http_response
FUZZ_SECONDS ?= 60
MODULE_SRCS := $(wildcard ngx_vaquero_module/*.c ngx_vaquero_module/*.h)

# the sanitizer build: the module, and the SDK tests, with ASan and UBSan
SAN_FLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer
SAN_BUILD   := $(BUILD)/san
SAN_MODULE  := $(SAN_BUILD)/ngx_http_vaquero_module.so
SAN_SDK_BINS := $(SDK_TESTS:%=$(SAN_BUILD)/sdk/test_%) \
                $(SDK_FUZZERS:%=$(SAN_BUILD)/sdk/fuzz_%)

.PHONY: all deps sdk-test fuzz test test-sanitize demo bench bench-exporter \
        bench-encode bench-micro soak clean

all: $(MODULE)

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
	        || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# a private copy of nginx-dev's tree, configured as the packaged binary was
$(NGX_BUILD)/objs/Makefile: config
	rm -rf $(NGX_BUILD)
	mkdir -p $(BUILD)
	cp -a $(NGINX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR) \
	        --builddir=objs > ../configure.log

# installed as a new file, never over the old one: a running nginx maps it
$(MODULE): $(NGX_BUILD)/objs/Makefile $(SDK_SRCS) $(SDK_HDRS) $(MODULE_SRCS)
	$(MAKE) -C $(NGX_BUILD) -f objs/Makefile modules
	cp $(NGX_BUILD)/objs/ngx_http_vaquero_module.so $@.tmp && mv -f $@.tmp $@

$(BUILD)/sdk/test_%: sdk/tests/test_%.c sdk/tests/*.h $(SDK_SRCS) $(SDK_HDRS)
	@mkdir -p $(BUILD)/sdk
	$(CC) $(SDK_CFLAGS) -o $@ $< $(SDK_SRCS) -lcurl -lz -ljansson -lpthread

# fuzz targets, built as plain programs that run them on generated inputs
$(BUILD)/sdk/fuzz_%: sdk/tests/fuzz_%.c $(SDK_SRCS) $(SDK_HDRS)
	@mkdir -p $(BUILD)/sdk
	$(CC) $(SDK_CFLAGS) -DVQ_FUZZ_DRIVER -o $@ $< $(SDK_SRCS) -lcurl -lz -ljansson -lpthread

# ... and with libFuzzer (clang), ASan and UBSan
$(BUILD)/fuzz/fuzz_%: sdk/tests/fuzz_%.c $(SDK_SRCS) $(SDK_HDRS)
	@mkdir -p $(BUILD)/fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Isdk/include -o $@ $< \
	    $(SDK_SRCS) -lcurl -lz -ljansson -lpthread

sdk-test: $(SDK_TEST_BINS) $(SDK_FUZZERS:%=$(BUILD)/sdk/fuzz_%)
	@rc=0; for t in $^; do $$t || rc=1; done; exit $$rc

fuzz: $(SDK_FUZZERS:%=$(BUILD)/fuzz/fuzz_%)
	@for f in $^; do \
	    mkdir -p $(BUILD)/fuzz/corpus-$$(basename $$f); \
	    $$f -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz/corpus-$$(basename $$f) || exit 1; \
	done

$(SAN_BUILD)/nginx/objs/Makefile: config
	rm -rf $(SAN_BUILD)/nginx
	mkdir -p $(SAN_BUILD)
	cp -a $(NGINX_SRC) $(SAN_BUILD)/nginx
	cd $(SAN_BUILD)/nginx && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR) \
	        --with-cc-opt="$(SAN_FLAGS)" --with-ld-opt="$(SAN_FLAGS)" \
	        --builddir=objs > ../configure.log

$(SAN_MODULE): $(SAN_BUILD)/nginx/objs/Makefile $(SDK_SRCS) $(SDK_HDRS) $(MODULE_SRCS)
	$(MAKE) -C $(SAN_BUILD)/nginx -f objs/Makefile modules
	cp $(SAN_BUILD)/nginx/objs/ngx_http_vaquero_module.so $@.tmp && mv -f $@.tmp $@

$(SAN_BUILD)/sdk/test_%: sdk/tests/test_%.c sdk/tests/*.h $(SDK_SRCS) $(SDK_HDRS)
	@mkdir -p $(SAN_BUILD)/sdk
	$(CC) $(SDK_CFLAGS) $(SAN_FLAGS) -o $@ $< $(SDK_SRCS) -lcurl -lz -ljansson -lpthread

$(SAN_BUILD)/sdk/fuzz_%: sdk/tests/fuzz_%.c $(SDK_SRCS) $(SDK_HDRS)
	@mkdir -p $(SAN_BUILD)/sdk
	$(CC) $(SDK_CFLAGS) $(SAN_FLAGS) -DVQ_FUZZ_DRIVER -o $@ $< $(SDK_SRCS) \
	    -lcurl -lz -ljansson -lpthread

# the same tests again, on the sanitizer build: the SDK tests stop at the
# first finding; the module is loaded into the packaged nginx with the ASan
# runtime preloaded, and each test fails on a report in nginx's logs
test-sanitize: $(SAN_MODULE) $(SAN_SDK_BINS)
	@rc=0; for t in $(SAN_SDK_BINS); do \
	    ASAN_OPTIONS=detect_leaks=1 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $$t || rc=1; \
	done; exit $$rc
	TEST_NGINX_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	VAQUERO_MODULE=$(CURDIR)/$(SAN_MODULE) prove -I t/lib t/

test: deps
	$(MAKE) all
	$(MAKE) sdk-test
	prove -v -I t/lib t/
	$(MAKE) test-sanitize

demo: deps
	$(MAKE) all
	$(PYTHON) tools/demo.py

$(BUILD)/sdk/bench_exporter: sdk/bench/bench_exporter.c $(SDK_SRCS) $(SDK_HDRS)
	@mkdir -p $(BUILD)/sdk
	$(CC) $(SDK_CFLAGS) -o $@ $< $(SDK_SRCS) -lcurl -lz -lpthread

$(BUILD)/sdk/bench_encode: sdk/bench/bench_encode.c $(SDK_SRCS) $(SDK_HDRS)
	@mkdir -p $(BUILD)/sdk
	$(CC) $(SDK_CFLAGS) -o $@ $< $(SDK_SRCS) -lcurl -lz -ljansson -lpthread

# the request path's pieces: ns per operation, heap allocations counted
$(BUILD)/sdk/bench_micro: sdk/bench/bench_micro.c $(SDK_SRCS) $(SDK_HDRS)
	@mkdir -p $(BUILD)/sdk
	$(CC) $(SDK_CFLAGS) -DVQ_BENCH_COUNT_ALLOCS -o $@ $< $(SDK_SRCS) \
	    -lcurl -lz -ljansson -lpthread \
	    -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign

# make bench's span sink, and the proof that it counts exactly
$(BUILD)/sdk/bench_sink: sdk/bench/bench_sink.c
	@mkdir -p $(BUILD)/sdk
	$(CC) $(SDK_CFLAGS) -o $@ $< -lz

$(BUILD)/sdk/bench_sink_check: sdk/bench/bench_sink_check.c \
        sdk/bench/bench_sink.c $(SDK_SRCS) $(SDK_HDRS)
	@mkdir -p $(BUILD)/sdk
	$(CC) $(SDK_CFLAGS) -o $@ $< $(SDK_SRCS) -lcurl -lz -ljansson -lpthread

# spans per second and bytes per span of each encoder, one core
bench-encode: $(BUILD)/sdk/bench_encode
	$(BUILD)/sdk/bench_encode

bench-micro: $(BUILD)/sdk/bench_micro $(BUILD)/sdk/bench_encode
	$(BUILD)/sdk/bench_micro
	$(BUILD)/sdk/bench_encode

# what tracing costs nginx: wrk, interleaved rounds, spans counted (needs wrk)
bench: all $(BUILD)/sdk/bench_sink $(BUILD)/sdk/bench_sink_check
	$(PYTHON) tools/bench.py

# reloads, a flapping collector, then leaks and accounting (needs wrk)
soak: all
	$(PYTHON) tools/soak.py

# one exporter thread's throughput to a loopback collector
bench-exporter: $(BUILD)/sdk/bench_exporter
	tools/bench-exporter.sh

clean:
	rm -rf $(BUILD)
