/*
 * tests/harness/mqtt.c - spawning and stopping a real mosquitto broker (see mqtt.h).
 */
#include "harness/mqtt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness/util.h"

/* Tries with a fresh port when PORT 0 was asked for and mosquitto could not bind. */
#define H_MOSQUITTO_PORT_TRIES 5
/* Grace between SIGTERM and SIGKILL. */
#define H_MOSQUITTO_STOP_MS 5000
/* One probe: connect + CONNECT/CONNACK must finish within this. */
#define H_MOSQUITTO_PROBE_MS 1000
/* Interval between probes while waiting for readiness. */
#define H_MOSQUITTO_POLL_MS 20

static const char *mosquitto_binary(void)
{
    const char *env = getenv("SY_MOSQUITTO");

    if (env != NULL && *env != '\0')
        return env;
    /* Debian installs it in /usr/sbin, which is not always on a user's PATH. */
    if (access("/usr/sbin/mosquitto", X_OK) == 0)
        return "/usr/sbin/mosquitto";
    return "mosquitto";
}

/* A port that was free a moment ago (bind 127.0.0.1:0, read it back, close). 0 on failure. */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = 0;

    if (fd < 0)
        return 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* Read exactly LEN bytes from FD within the deadline. Returns 0 or -1. */
static int read_full(int fd, unsigned char *buf, size_t len, int64_t deadline)
{
    size_t got = 0;

    while (got < len) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - h_now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return -1;
        n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

/*
 * One readiness probe: TCP connect to the port, an MQTT 3.1.1 CONNECT (clean session, client
 * id "sy-harness-probe"), expect CONNACK "accepted", then DISCONNECT. Returns 0 when ready.
 */
static int probe(int port)
{
    /* CONNECT: remaining length 28, "MQTT", level 4 (3.1.1), clean session, keepalive 10 s,
     * client id "sy-harness-probe" (16 bytes). */
    static const char connect_pkt[] = "\x10\x1c\x00\x04MQTT\x04\x02\x00\x0a\x00\x10"
                                      "sy-harness-probe";
    static const unsigned char disconnect_pkt[] = {0xe0, 0x00};
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    unsigned char connack[4];
    int64_t deadline = h_now_ms() + H_MOSQUITTO_PROBE_MS;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = -1;

    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto out_close;
    if (write(fd, connect_pkt, sizeof(connect_pkt) - 1) != (ssize_t)sizeof(connect_pkt) - 1)
        goto out_close;
    if (read_full(fd, connack, sizeof(connack), deadline) != 0)
        goto out_close;
    if (connack[0] != 0x20 || connack[1] != 0x02 || connack[3] != 0x00)
        goto out_close;
    if (write(fd, disconnect_pkt, sizeof(disconnect_pkt)) < 0)
        goto out_close;
    rc = 0;
out_close:
    close(fd);
    return rc;
}

void h_mosquitto_dump_log(const struct h_mosquitto *m)
{
    char *log = m->log_path != NULL ? h_read_file(m->log_path, 0, NULL) : NULL;

    fprintf(stderr, "---- mosquitto log (%s) ----\n%s---- end of mosquitto log ----\n",
            m->log_path != NULL ? m->log_path : "none", log != NULL ? log : "(unreadable)\n");
    free(log);
}

/* <dir>/passwd with M's one user, hashed by mosquitto_passwd (next to the mosquitto binary). */
static int write_passwd(struct h_mosquitto *m)
{
    const char *bin = access("/usr/bin/mosquitto_passwd", X_OK) == 0 ? "/usr/bin/mosquitto_passwd"
                                                                     : "mosquitto_passwd";
    char *path = h_strfmt("%s/passwd", m->dir);
    char *argv[] = {(char *)bin, "-c", "-b", path, (char *)m->user, (char *)m->password, NULL};
    struct h_proc p = {0};
    int rc = -1;

    if (access(path, F_OK) == 0) {
        rc = 0; /* made by an earlier start */
        goto out;
    }
    if (h_proc_spawn(&p, argv, NULL, m->dir, m->log_path) != 0)
        goto out;
    if (h_proc_wait(&p, 10000) == 0 && h_proc_exit_code(&p) == 0 && access(path, F_OK) == 0)
        rc = 0;
    else
        fprintf(stderr, "harness: mosquitto_passwd failed (see %s)\n", m->log_path);
out:
    free(path);
    return rc;
}

/* Spawn mosquitto on PORT and wait for it. 0: ready; 1: it exited (port taken?); -1: else. */
static int start_once(struct h_mosquitto *m, int port)
{
    char *conf_path = h_strfmt("%s/mosquitto.conf", m->dir);
    char *extra = m->extra_conf != NULL ? h_str_replace(m->extra_conf, "@DIR@", m->dir) : NULL;
    char *pw = m->user != NULL ? h_strfmt("password_file %s/passwd\n", m->dir) : NULL;
    /* Started as root, mosquitto switches to the user `mosquitto`, which cannot read our
     * 0700 temp dir (password file, persistence): stay root then. */
    char *conf = h_strfmt("listener %d 127.0.0.1\nallow_anonymous true\n%s%s%s", port,
                          geteuid() == 0 ? "user root\n" : "", pw != NULL ? pw : "",
                          extra != NULL ? extra : "");
    char *argv[] = {(char *)mosquitto_binary(), "-c", conf_path, NULL};
    int64_t deadline;
    int rc = -1;

    if (h_write_file(conf_path, conf, strlen(conf)) != 0) {
        fprintf(stderr, "harness: cannot write %s\n", conf_path);
        goto out;
    }
    if (m->user != NULL && write_passwd(m) != 0)
        goto out;
    if (h_proc_spawn(&m->proc, argv, NULL, m->dir, m->log_path) != 0)
        goto out;
    deadline = h_now_ms() + H_MOSQUITTO_READY_MS;
    for (;;) {
        if (probe(port) == 0) {
            rc = 0;
            break;
        }
        if (!h_mosquitto_running(m)) {
            rc = 1;
            break;
        }
        if (h_now_ms() >= deadline) {
            fprintf(stderr, "harness: mosquitto on port %d not ready within %d ms\n", port,
                    H_MOSQUITTO_READY_MS);
            h_proc_stop(&m->proc, SIGKILL, 1000);
            break;
        }
        h_sleep_ms(H_MOSQUITTO_POLL_MS);
    }
out:
    free(pw);
    free(extra);
    free(conf);
    free(conf_path);
    return rc;
}

int h_mosquitto_start(struct h_mosquitto *m, int port)
{
    int tries = port == 0 ? H_MOSQUITTO_PORT_TRIES : 1;
    int rc = -1;

    if (h_mosquitto_running(m)) {
        fprintf(stderr, "harness: mosquitto already running (pid %d)\n", (int)m->proc.pid);
        return -1;
    }
    if (m->dir == NULL) {
        m->dir = h_tmpdir_create("mqtt");
        if (m->dir == NULL)
            return -1;
        m->log_path = h_strfmt("%s/mosquitto.log", m->dir);
    }
    for (int i = 0; i < tries; i++) {
        int p = port != 0 ? port : free_port();

        if (p == 0)
            break;
        rc = start_once(m, p);
        if (rc == 0) {
            m->port = p;
            return 0;
        }
        if (rc < 0)
            break;
        /* It exited: most likely someone took the port after our probe. */
        fprintf(stderr, "harness: mosquitto exited on port %d (code %d)%s\n", p,
                h_proc_exit_code(&m->proc), i + 1 < tries ? "; trying another port" : "");
    }
    h_mosquitto_dump_log(m);
    return -1;
}

bool h_mosquitto_running(struct h_mosquitto *m)
{
    if (m->proc.pid <= 0 || m->proc.reaped)
        return false;
    return h_proc_wait(&m->proc, 0) != 0;
}

void h_mosquitto_stop(struct h_mosquitto *m)
{
    if (m->proc.pid <= 0 || m->proc.reaped)
        return;
    h_proc_stop(&m->proc, SIGTERM, H_MOSQUITTO_STOP_MS);
}

void h_mosquitto_destroy(struct h_mosquitto *m, bool keep)
{
    h_mosquitto_stop(m);
    if (m->dir != NULL) {
        if (keep)
            fprintf(stderr, "harness: kept %s\n", m->dir);
        else
            h_rm_rf(m->dir);
    }
    free(m->dir);
    free(m->log_path);
    memset(m, 0, sizeof(*m));
}
