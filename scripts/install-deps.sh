#!/usr/bin/env bash
# Installs every Debian 12 package that switchyard's build, tests, examples and benchmarks need.
# Run as root (or through sudo). Safe to run again: apt-get skips what is already installed.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

PACKAGES=(
    # build
    build-essential cmake pkg-config
    # libraries (DESIGN.md "Dependencies")
    libevent-dev libjansson-dev libyaml-dev libsqlite3-dev libssl-dev uuid-dev
    librdkafka-dev libhiredis-dev libmosquitto-dev libzip-dev
    # tests (zip and unzip build and inspect deployment packages, in tests and examples)
    libcmocka-dev redis-server mosquitto python3 python3-boto3 nodejs awscli curl procps
    zip unzip
    # examples (examples/kafka produces with kcat, examples/mqtt with mosquitto_pub)
    kcat mosquitto-clients
)

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
