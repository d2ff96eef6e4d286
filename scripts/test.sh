#!/usr/bin/env bash
# Runs the whole test suite twice: a plain -Werror build, then an ASan+UBSan build.
# Installs the Debian packages it needs first (root, or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS="$(nproc 2>/dev/null || echo 2)"

bash scripts/install-deps.sh

echo "== plain build (-Werror) =="
cmake -S . -B build -DSY_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$JOBS"
(cd build && ctest --output-on-failure -j2 --timeout 600)

echo "== sanitizer build (ASan + UBSan, -Werror) =="
cmake -S . -B build-asan -DSY_WERROR=ON -DSY_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug
cmake --build build-asan -j"$JOBS"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd build-asan && ctest --output-on-failure -j2 --timeout 900)
