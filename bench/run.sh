#!/usr/bin/env bash
# bench/run.sh - build and run bench_invoke (see bench/README.md). Arguments go to bench_invoke.
# BUILD_DIR (default ./build at the repository root) selects the build tree; it is configured
# (RelWithDebInfo, no sanitizers) if it does not exist yet.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target bench_invoke -j"$(nproc)" >/dev/null
exec "$build/bench/bench_invoke" "$@"
