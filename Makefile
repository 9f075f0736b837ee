# turnpike — the two commands a new user needs: `make run` and `make test`.
# Both install missing Debian packages first (apt-get, needs root or sudo).

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
PY         := /usr/bin/python3
CONFIG     ?= examples/turnpike.yaml
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

DEB_BUILD  := build-essential cmake pkg-config libevent-dev libyaml-dev libpcre2-dev \
              libjansson-dev libssl-dev libcrypt-dev libhiredis-dev
DEB_TEST   := libcmocka-dev python3-pytest python3-requests python3-websockets \
              python3-jwt python3-cryptography \
              clang libclang-rt-14-dev libnss-wrapper valgrind redis-server
DEB_BENCH  := wrk nginx-light haproxy python3-jwt python3-cryptography

.PHONY: all deps deps-test build build-asan run demo-backends test unit integration \
        integration-asan fuzz-replay fuzz clean check-banned perf-guard

all: build

# Install only what is missing, so repeated runs are quick and offline-safe.
deps:
	@missing=""; for p in $(DEB_BUILD); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

deps-test: deps
	@missing=""; for p in $(DEB_TEST); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps-test
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTP_SANITIZE=ON \
	      -DCMAKE_C_COMPILER=clang >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# Starts two demo backends on 127.0.0.1:9001/9002 and turnpike on the example config (port 8000).
# The backends are stopped however turnpike ends (Ctrl-C, SIGTERM, a bad config).
run: build
	@bash -c '$(PY) examples/demo_backend.py 9001 demo-a & a=$$!; \
	  $(PY) examples/demo_backend.py 9002 demo-b & b=$$!; \
	  trap "kill $$a $$b 2>/dev/null" EXIT; trap "exit 0" INT TERM; sleep 0.5; \
	  echo "turnpike on http://localhost:8000 - try: curl localhost:8000/demo/hello"; \
	  $(BUILD)/turnpike -c $(CONFIG)'

check-banned:
	@! grep -nE '\b(sprintf|vsprintf|strcpy|strcat|atoi|atol|strtok|gets)\s*\(' \
	    $$(git ls-files 'src/*.c' 'src/*.h' 'include/*.h') || \
	  (echo "banned function used (see STYLE.md)"; exit 1)

unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

integration: build
	TURNPIKE_BIN=$(BUILD)/turnpike $(PY) -m pytest -q tests/integration

integration-asan: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)
	TURNPIKE_BIN=$(ASAN_BUILD)/turnpike TURNPIKE_ASAN=1 $(PY) -m pytest -q tests/integration

# CPU instructions per proxied request (callgrind: immune to machine noise) must stay within
# the committed baseline's margin. Re-baseline with:
#   $(PY) bench/instructions.py --turnpike $(BUILD)/turnpike --write bench/instructions.baseline
perf-guard: build
	$(PY) bench/instructions.py --turnpike $(BUILD)/turnpike --check bench/instructions.baseline

# Everything: release build, unit tests and fuzz-corpus replay, integration tests, the
# instruction-count guard, then the whole suite again on an ASan+UBSan build.
test: deps-test check-banned unit integration perf-guard integration-asan

# libFuzzer runs (not part of `make test`; the corpora are replayed by ctest). New inputs go
# to build-fuzz/new-*, so the committed seed corpora stay curated.
fuzz: deps-test
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DTP_FUZZ=ON -DTP_SANITIZE=ON >/dev/null
	cmake --build build-fuzz -j $(JOBS)
	for t in http_parser path config; do mkdir -p build-fuzz/new-$$t; \
	  build-fuzz/fuzz_$$t -max_total_time=60 build-fuzz/new-$$t tests/fuzz/corpus/$$t || exit 1; done
	@echo "new inputs are in build-fuzz/new-*; add the interesting ones to tests/fuzz/corpus/ by hand"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz

# Side-by-side benchmark against NGINX and HAProxy (installs wrk, nginx-light, haproxy if
# missing); writes bench/RESULTS.md. Extra options: make bench BENCH_ARGS="--rounds 5".
.PHONY: bench
bench: build
	$(PY) bench/run.py $(BENCH_ARGS)
