#!/usr/bin/env bash
# Strata developer entry point: installs what the project needs, builds, tests, demos.
#
#   tools/dev.sh demo    set up, build, and run the demo on a local cluster
#   tools/dev.sh test    set up, build with warnings as errors, run every default test
#                        (unit + integration), then the unit and integration suites
#                        again under AddressSanitizer and UndefinedBehaviorSanitizer
#   tools/dev.sh deps    install the Debian packages only
#   tools/dev.sh build   configure and build ./build
#   tools/dev.sh bench   build and run the benchmarks (bench/)
#   tools/dev.sh slow    long soak and scale runs (the 'slow' suite)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential pkg-config meson ninja-build
          libzmq3-dev libczmq-dev libprotobuf-c-dev protobuf-c-compiler
          librocksdb-dev libopenblas-dev libcriterion-dev libjansson-dev libcsv-dev
          valgrind
          python3-zmq python3-protobuf protobuf-compiler)   # examples/storefront.py, in the tests

# Only the benchmarks need these (the PyTorch reference of bench/train).
BENCH_PACKAGES=(python3-torch)

deps() {
    local missing=()
    for p in "${PACKAGES[@]}" "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "dev.sh: installing ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

build() {
    local dir=${1:-build}; shift || true
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" --werror "$@" > "$dir.setup.log" 2>&1 || { cat "$dir.setup.log" >&2; return 1; }
    fi
    ninja -C "$dir" > "$dir.build.log" 2>&1 || { grep -E 'error|warning' "$dir.build.log" >&2; tail -20 "$dir.build.log" >&2; return 1; }
}

# Prints "N passed, N failed, N skipped" over every test case (TAP lines) in the given
# meson logs.
summary() {
    python3 - "$@" <<'PY'
import json, sys
ok = fail = skip = 0
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line)
        cases = [l for l in r.get("stdout", "").splitlines() if l.startswith(("ok ", "not ok "))]
        if not cases:   # a test without TAP output counts as one case
            cases = ["ok " if r.get("result") == "OK" else "not ok "]
        for c in cases:
            if c.startswith("not ok"): fail += 1
            elif "# SKIP" in c: skip += 1
            else: ok += 1
print(f"{ok} passed, {fail} failed, {skip} skipped")
PY
}

run_tests() {
    local dir=$1; shift
    local rc=0
    meson test -C "$dir" --print-errorlogs "$@" || rc=$?
    return $rc
}

case "${1:-test}" in
    deps) deps ;;
    build) deps; build build ;;
    demo)
        deps; build build
        shift || true
        rm -rf strata-demo
        exec build/tools/strata demo --dir strata-demo "$@"
        ;;
    test)
        deps
        build build
        rc=0
        logs=()
        run_tests build --suite unit --suite integration || rc=$?
        logs+=(build/meson-logs/testlog.json)
        echo "optimized: $(summary build/meson-logs/testlog.json)"
        if [ $rc -eq 0 ]; then
            build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=false
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                run_tests build-asan --suite unit --suite integration || rc=$?
            logs+=(build-asan/meson-logs/testlog.json)
            echo "sanitized: $(summary build-asan/meson-logs/testlog.json)"
        fi
        echo "tests: $(summary "${logs[@]}")"
        exit $rc
        ;;
    valgrind)
        deps; build build
        run_tests build --suite unit --setup valgrind
        ;;
    bench)
        deps "${BENCH_PACKAGES[@]}"; build build
        meson test -C build --benchmark --verbose
        ;;
    slow)
        deps; build build
        run_tests build --suite slow
        ;;
    *) echo "usage: tools/dev.sh demo|test|deps|build|bench|valgrind|slow" >&2; exit 2 ;;
esac
