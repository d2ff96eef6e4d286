#!/usr/bin/env bash
# bench/run.sh - build and run a bench (see bench/README.md).
#   bash bench/run.sh [ARGS...]         bench_invoke, ARGS passed through (as before)
#   bash bench/run.sh invoke [ARGS...]  the same
#   bash bench/run.sh async [ARGS...]   bench_async, ARGS passed through
#   bash bench/run.sh esm [ARGS...]     bench_esm, ARGS passed through (needs redis-server)
#   bash bench/run.sh deploy [ARGS...]  bench/deploy_bench.py (Python, nothing to build: it runs
#                                       the broker already built in BUILD_DIR, or SY_BENCH_BROKER)
# BUILD_DIR (default ./build at the repository root) selects the build tree; it is configured
# (RelWithDebInfo, no sanitizers) if it does not exist yet.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"

bench=bench_invoke
case "${1:-}" in
    invoke) shift ;;
    async) bench=bench_async; shift ;;
    esm) bench=bench_esm; shift ;;
    deploy)
        shift
        export SY_BENCH_BROKER="${SY_BENCH_BROKER:-$build/broker/switchyard}"
        exec python3 "$root/bench/deploy_bench.py" "$@"
        ;;
esac

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target "$bench" -j"$(nproc)" >/dev/null
exec "$build/bench/$bench" "$@"
