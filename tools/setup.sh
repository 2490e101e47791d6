#!/usr/bin/env bash
# setup.sh: install what qrecon needs on Debian 12, build it, and run the demo or the test suite.
#
#   tools/setup.sh demo   install, build, and run the whole pipeline on the embedded default
#   tools/setup.sh test   install, build, and run the whole test suite (also under ASan/UBSan, and
#                         the clang-format check); this is exactly what CI runs
#   tools/setup.sh build  install and build only
#   tools/setup.sh tokenizer-refs   install the pinned npm references of the tokenizer tests only
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
jobs=$(nproc 2>/dev/null || echo 2)

# Packages for building and running qrecon, and (test_packages) for the test suite only.
build_packages=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libscalapack-openmpi-dev
    libhdf5-openmpi-dev hdf5-tools libopenblas-dev liblapacke-dev libjansson-dev libxxhash-dev python3
    libpcre2-dev libutf8proc-dev)
test_packages=(clang-format librsvg2-bin slurm-wlm munge tmux)

log() { printf '== %s\n' "$*"; }

install_missing() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The tokenizer tests' references (test-only, pinned), installed with npm into a cache folder
# outside the repository: @huggingface/tokenizers encodes; the two vocabulary packages hold
# Llama-2's and Llama-3's vocabularies and merges, from which the tests build tokenizer.json files.
tokenizer_refs_dir=${QRECON_NPM_CACHE:-$HOME/.cache/qrecon-npm}/tokenizer-refs
install_tokenizer_refs() {
    local d=$tokenizer_refs_dir
    [ -f "$d/.complete" ] && return 0
    command -v npm >/dev/null || install_missing nodejs npm
    log "installing the tokenizer references into $d"
    mkdir -p "$d"
    echo '{"private": true}' >"$d/package.json"
    (cd "$d" && npm install --no-audit --no-fund --silent @huggingface/tokenizers@0.2.0 \
        llama-tokenizer-js@1.2.2 llama3-tokenizer-js@1.2.0) && touch "$d/.complete"
}

build() { # build DIR [cmake args...]
    local dir=$1
    shift
    log "configuring $dir"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >"$dir.configure.log" 2>&1 ||
        { cat "$dir.configure.log"; exit 1; }
    log "building $dir"
    cmake --build "$dir" -j"$jobs"
}

# libFuzzer harnesses (tests/fuzz.cmake, ctest label `fuzz`): clang 14 and its runtime from Debian,
# a build of the readers with coverage, ASan and UBSan, each harness run for a bounded time.
fuzz_tests() {
    install_missing clang libclang-rt-14-dev || { log "fuzz: clang not installable, skipped"; return 0; }
    log "configuring build-fuzz (clang, libFuzzer, ASan + UBSan)"
    CC=clang cmake -S . -B build-fuzz -DQRECON_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        >build-fuzz.configure.log 2>&1 || { cat build-fuzz.configure.log; exit 1; }
    cmake --build build-fuzz -j"$jobs" --target fuzz_all
    log "fuzz harnesses"
    ctest --test-dir build-fuzz --output-on-failure -j"$jobs" -L fuzz
}

# MPI as root and with more ranks than cores (tests run up to 4 ranks on 2 cores).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1

# Test-only npm package for the export tests: node-llama-cpp (llama.cpp's CPU binaries), pinned,
# installed once into a cache folder outside the repository. A failed install only makes the engine
# tests skip (exit 77), so it does not stop the suite.
install_node_llama_cpp() {
    local dir=${QRECON_NPM_CACHE:-$HOME/.cache/qrecon-npm}/node-llama-cpp-3.22.1
    [ -f "$dir/node_modules/node-llama-cpp/package.json" ] && return 0
    command -v npm >/dev/null || { log "npm missing: the llama.cpp export tests will skip"; return 0; }
    log "installing node-llama-cpp@3.22.1 into $dir (once, about 2 minutes)"
    mkdir -p "$dir"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error node-llama-cpp@3.22.1 >/dev/null) ||
        log "node-llama-cpp install failed: the llama.cpp export tests will skip"
}

cmd=${1:-}
case "$cmd" in
build)
    install_missing "${build_packages[@]}"
    build build
    ;;
demo)
    install_missing "${build_packages[@]}"
    build build
    exec tools/demo.sh build/qrecon
    ;;
test)
    install_missing "${build_packages[@]}" "${test_packages[@]}"
    install_node_llama_cpp
    install_tokenizer_refs || log "tokenizer references not installed: the tokenizer tests will skip"
    build build
    log "test suite (release build)"
    ctest --test-dir build --output-on-failure -j"$jobs" --timeout 600
    build build-asan -DQRECON_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
    log "test suite (AddressSanitizer + UndefinedBehaviorSanitizer)"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
        LSAN_OPTIONS=suppressions=$here/tests/lsan.supp:print_suppressions=0 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan --output-on-failure -j"$jobs" --timeout 900 -LE no-sanitizer
    fuzz_tests
    log "format check (clang-format 14)"
    files=$(git ls-files '*.c' '*.h')
    clang-format --dry-run --Werror $files
    log "all tests passed"
    ;;
tokenizer-refs)
    install_tokenizer_refs
    ;;
*)
    sed -n '2,9p' "$0"
    exit 2
    ;;
esac
