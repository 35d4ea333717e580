# The two commands a new user types: `make demo` and `make test`. Both install what is
# missing (Debian packages, the wolfSSL build) through scripts/bootstrap.sh first.
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build build-asan demo test test-plain test-asan bench bench-policy clean

all: build

deps:
	@scripts/bootstrap.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DZT_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)

demo: build
	@./build/ztproxy demo

# Every test, once on the normal build and once under ASan+UBSan with leak checking.
test: test-plain test-asan

test-plain: build
	cd build && ctest --output-on-failure -j 2

test-asan: build-asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j 2

# The benchmark harness against haproxy and the direct path (bench/README.md); it
# installs haproxy, nginx and wrk through scripts/bootstrap.sh --bench itself.
bench: build
	bench/run.sh

# ns per policy decision at 10, 1,000 and 100,000 rules (bench/policy_bench.c).
bench-policy: build
	build/bench/policy_bench

clean:
	rm -rf build build-asan
