/*
 * broker/broker.h - the lifecycle of `switchyard run`: load the config, build the dispatcher
 * and the control API on one event loop, announce readiness, run, and drain on SIGTERM/SIGINT.
 */
#ifndef SY_BROKER_H
#define SY_BROKER_H

#include <stddef.h>

/*
 * Run the broker for CONFIG_PATH in the foreground until it is stopped, logging to stderr.
 * Returns the process exit status: 0 after a clean drain (SIGTERM/SIGINT), 1 when it could not
 * start (config errors are all printed first) or was stopped by a second signal during the
 * drain (in-flight invocations abandoned). Blocks; call once per process, from the main thread.
 *
 * Readiness: exactly one info line containing `ready: control API on http://HOST:PORT` is
 * logged once the API listens, provisioned environments are starting and
 * `<data_dir>/broker.json` (`{"pid":N,"endpoint":"http://...","started_at":"ISO"}`) is written.
 */
int broker_run(const char *config_path);

/*
 * The client endpoint for a listener on HOST:PORT into OUT (OUTSZ bytes): `http://HOST:PORT`,
 * with IPv6 literals bracketed and, when LOOPBACK_FOR_ANY is set, the wildcard addresses
 * (0.0.0.0, ::) replaced by the loopback address a local client can connect to.
 */
void broker_endpoint(const char *host, int port, int loopback_for_any, char *out, size_t outsz);

/* 1 when HOST (an address or "localhost") is a loopback address, else 0. */
int broker_host_is_loopback(const char *host);

#endif
