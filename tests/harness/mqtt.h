/*
 * tests/harness/mqtt.h - a real `mosquitto` broker for the integration tests: a temp dir with
 * a two-line config (`listener PORT 127.0.0.1`, `allow_anonymous true`) plus the caller's
 * `extra_conf` (persistence, a password file), the process spawned
 * with its output in <dir>/mosquitto.log, readiness by protocol (an MQTT CONNECT answered with
 * CONNACK), stop by PID. The same struct can be stopped and started again on the same port,
 * which is how tests take the broker away from a client and give it back.
 *
 * The binary is $SY_MOSQUITTO, else `mosquitto` from PATH, else /usr/sbin/mosquitto. Main
 * thread only (see proc.h).
 */
#ifndef SY_HARNESS_MQTT_H
#define SY_HARNESS_MQTT_H

#include <stdbool.h>

#include "harness/proc.h"

/* Deadline for the broker to answer CONNECT after it was spawned. */
#define H_MOSQUITTO_READY_MS 10000

struct h_mosquitto {
    char *dir;      /* temp dir "sy-mqtt-*", owned; created by the first start */
    char *log_path; /* <dir>/mosquitto.log: stdout and stderr of every run (appended) */
    int port;       /* the loopback port; kept across stop/start */
    const char *extra_conf; /* borrowed: lines appended to the config at each start (NULL:
                               none), e.g. "persistence true\n"; "@DIR@" is replaced by dir */
    const char *user, *password; /* borrowed: when set, <dir>/passwd holds this one user
                                    (mosquitto_passwd) and the config names it; anonymous
                                    clients are still allowed */
    struct h_proc proc;
};

/*
 * Start mosquitto on 127.0.0.1:PORT, or on a free port when PORT is 0 (a port taken between
 * our probe and mosquitto's bind means another try with another port). Waits up to
 * H_MOSQUITTO_READY_MS for a CONNACK. M must be zeroed before its first start; a restart
 * reuses its dir. Returns 0 (M->port set) or -1 (the reason and the log are printed; a started
 * process is killed).
 */
int h_mosquitto_start(struct h_mosquitto *m, int port);

/* True while the process runs (reaps it when it has exited). */
bool h_mosquitto_running(struct h_mosquitto *m);

/* SIGTERM, then SIGKILL after 5 s. Keeps M's dir and port for a restart. No-op when stopped. */
void h_mosquitto_stop(struct h_mosquitto *m);

/* Stop if running, remove the temp dir (kept and named on stderr when KEEP), free M's
 * strings. M can be started afresh afterwards. */
void h_mosquitto_destroy(struct h_mosquitto *m, bool keep);

/* Print M's log on stderr (for a failed test). */
void h_mosquitto_dump_log(const struct h_mosquitto *m);

#endif
