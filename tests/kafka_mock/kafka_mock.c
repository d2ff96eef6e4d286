/*
 * tests/kafka_mock/kafka_mock.c - `sy-kafka-mock`: librdkafka's mock cluster
 * (rd_kafka_mock_cluster_new) served on loopback until SIGTERM, SIGINT or `quit`, for the
 * tests, benchmarks and examples only. It speaks the real Kafka protocol (produce, fetch,
 * metadata, consumer groups, offset commit/fetch) but is not a Kafka broker: nothing is
 * persisted and it must never stand in for one outside tests/ and examples/.
 *
 *   sy-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]... [--bootstrap-file FILE]
 *                 [--debug CONTEXTS]
 *
 * At start it prints exactly one line `bootstrap=127.0.0.1:P1,127.0.0.1:P2,...` on stdout
 * (flushed), and writes the same line to FILE when given. Then it reads one command per line on
 * stdin and answers each with one line, `ok` or `error: <why>`:
 *
 *   down ID           rd_kafka_mock_broker_set_down: close its connections, refuse new ones
 *   up ID             rd_kafka_mock_broker_set_up: listen again (on the same port)
 *   rtt ID MS         rd_kafka_mock_broker_set_rtt: delay every response of broker ID by MS
 *   topic NAME PARTS  rd_kafka_mock_topic_create (error when it exists)
 *   quit              exit 0
 *
 * ID is 1..N, or -1 for every broker. EOF on stdin only stops the reading of commands: the
 * mock keeps serving (it may run detached with stdin from /dev/null) until `quit` or a signal.
 * librdkafka's own log lines go to stderr (warnings and worse; with --debug, librdkafka's
 * `debug` contexts, e.g. `mock,protocol`); stdout carries only the bootstrap line and answers.
 *
 * What librdkafka 2.0.2's mock does (src/rdkafka_mock*.c at tag v2.0.2), which tests must
 * allow for:
 *
 *   - Ports: every broker binds 127.0.0.1:0 (rd_kafka_mock_broker_new); 2.0.2 has no way to
 *     choose a port, so there is no --port option. A broker set down keeps its port: its
 *     listener is re-created on the same address, bound but not listening (connects are
 *     refused), and `up` starts listening on it again.
 *   - Retention: each partition keeps at most 5 MiB (1024 * 1024 * 5 bytes of record batches,
 *     as the producer sent them, so compressed batches count compressed) and at most 100,000
 *     record batches (not records). Appending past either limit deletes the oldest batches
 *     (never the last one): the log start offset moves up, and a consumer at an older offset
 *     gets OFFSET_OUT_OF_RANGE and follows its auto.offset.reset. A 1,000,000-record backlog
 *     of 100-byte values (~110 MB uncompressed) therefore fits in 48 partitions but not in 6;
 *     produce compressed (compression.codec=lz4 and compressible values) for those.
 *   - Unknown topics: a Metadata request that allows auto-creation (a producer's, by default)
 *     creates the topic with 4 partitions, so a producer's first record to an unknown topic
 *     creates it; 2.0.2 has no API to change that default. Consumers send
 *     allow.auto.create.topics=false and get UNKNOWN_TOPIC_OR_PART. CreateTopics (the Admin
 *     API) is not implemented: use --topic or `topic`.
 *   - Leaders: each partition's leader is picked at random among the first min(3, N) brokers,
 *     whatever the replication factor asked for; nothing moves leaders when a broker goes down.
 *   - Fetch returns at most one record batch (as produced) per partition per request, and
 *     waits fetch.wait.max.ms only when no partition had data; fetch.min.bytes is ignored.
 *   - Consumer groups: the coordinator elects only when its timer fires: 3 s after the first
 *     join into an empty group, but session.timeout.ms - 1 s (44 s with librdkafka's default
 *     45 s) after any later join or leave, even when every member has already rejoined. Tests
 *     with more than one member, or members leaving, want session.timeout.ms around 6000.
 *     The first member to join leads and its first protocol wins for everybody (the mock
 *     asserts that every member lists it first). The coordinator does not care which
 *     protocol: cooperative-sticky works (incremental revoke, then assign, one timer period
 *     each). OffsetCommit is not checked against the assignment, and is taken from any client
 *     for a group the mock has no members of; OffsetFetch answers for any group, member or
 *     not.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_BROKERS 64
#define MAX_LINE 1024

static const char *prog = "sy-kafka-mock";

static void usage(void)
{
    fprintf(stderr,
            "usage: %s [--brokers N] [--topic NAME:PARTITIONS]... [--bootstrap-file FILE]\n"
            "          [--debug CONTEXTS]\n"
            "  serves librdkafka's mock Kafka cluster on 127.0.0.1 (tests and examples only);\n"
            "  prints bootstrap=HOST:PORT,... then reads commands on stdin:\n"
            "  down ID | up ID | rtt ID MS | topic NAME PARTITIONS | quit\n",
            prog);
}

/* S as an integer in LO..HI. Returns 0, or -1 when it is not one. */
static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Replication factor for new topics: the mock caps it at 3 and the broker count anyway. */
static int replication(int brokers)
{
    return brokers < 3 ? brokers : 3;
}

/* Create topic "NAME:PARTITIONS" (SPEC). Returns 0, or -1 with a message on stderr. */
static int create_topic_spec(rd_kafka_mock_cluster_t *mc, int brokers, const char *spec)
{
    const char *colon = strrchr(spec, ':');
    char name[512];
    long parts;
    rd_kafka_resp_err_t err;

    if (colon == NULL || colon == spec || (size_t)(colon - spec) >= sizeof(name) ||
        parse_int(colon + 1, 1, 100000, &parts) != 0) {
        fprintf(stderr, "%s: --topic %s: expected NAME:PARTITIONS (1..100000)\n", prog, spec);
        return -1;
    }
    memcpy(name, spec, (size_t)(colon - spec));
    name[colon - spec] = '\0';
    err = rd_kafka_mock_topic_create(mc, name, (int)parts, replication(brokers));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "%s: --topic %s: %s\n", prog, spec, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* Answer one line on stdout and flush it (the reader waits for it). */
static void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void answer(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* Answer ERR of a mock call: ok, or its error text. */
static void answer_err(rd_kafka_resp_err_t err)
{
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        answer("ok");
    else
        answer("error: %s", rd_kafka_err2str(err));
}

/*
 * Run one command LINE (no newline) and answer it. Returns true when it was `quit`.
 */
static bool run_command(rd_kafka_mock_cluster_t *mc, int brokers, char *line)
{
    char *argv[4], *save = NULL, *tok;
    int argc = 0;
    long id, v;

    for (tok = strtok_r(line, " \t\r", &save); tok != NULL; tok = strtok_r(NULL, " \t\r", &save)) {
        if (argc == 4) {
            answer("error: too many arguments");
            return false;
        }
        argv[argc++] = tok;
    }
    if (argc == 0) {
        answer("error: empty command");
        return false;
    }
    if (strcmp(argv[0], "quit") == 0 && argc == 1) {
        answer("ok");
        return true;
    }
    if ((strcmp(argv[0], "down") == 0 || strcmp(argv[0], "up") == 0) && argc == 2) {
        if (parse_int(argv[1], -1, INT32_MAX, &id) != 0) {
            answer("error: bad broker id '%s'", argv[1]);
            return false;
        }
        answer_err(argv[0][0] == 'd' ? rd_kafka_mock_broker_set_down(mc, (int32_t)id)
                                     : rd_kafka_mock_broker_set_up(mc, (int32_t)id));
        return false;
    }
    if (strcmp(argv[0], "rtt") == 0 && argc == 3) {
        if (parse_int(argv[1], -1, INT32_MAX, &id) != 0 ||
            parse_int(argv[2], 0, 3600 * 1000, &v) != 0) {
            answer("error: usage: rtt ID MS");
            return false;
        }
        answer_err(rd_kafka_mock_broker_set_rtt(mc, (int32_t)id, (int)v));
        return false;
    }
    if (strcmp(argv[0], "topic") == 0 && argc == 3) {
        if (parse_int(argv[2], 1, 100000, &v) != 0) {
            answer("error: usage: topic NAME PARTITIONS (1..100000)");
            return false;
        }
        answer_err(rd_kafka_mock_topic_create(mc, argv[1], (int)v, replication(brokers)));
        return false;
    }
    answer("error: unknown command '%s' (down ID | up ID | rtt ID MS | topic NAME PARTITIONS | "
           "quit)",
           argv[0]);
    return false;
}

/*
 * Serve commands from stdin and signals from SFD until `quit` or SIGTERM/SIGINT. Returns the
 * exit code.
 */
static int serve(rd_kafka_mock_cluster_t *mc, int brokers, int sfd)
{
    char buf[MAX_LINE];
    size_t len = 0;
    bool in_open = true, discarding = false;

    for (;;) {
        struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN},
                                {.fd = in_open ? 0 : -1, .events = POLLIN}};
        ssize_t n;
        char *nl;

        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: poll: %s\n", prog, strerror(errno));
            return 1;
        }
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;

            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                fprintf(stderr, "%s: signal %u; exiting\n", prog, si.ssi_signo);
                return 0;
            }
        }
        if (!in_open || !(pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        n = read(0, buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            /* EOF (or a broken stdin): keep serving; only quit or a signal ends the mock. */
            in_open = false;
            continue;
        }
        len += (size_t)n;
        buf[len] = '\0';
        while ((nl = memchr(buf, '\n', len)) != NULL) {
            size_t used = (size_t)(nl - buf) + 1;
            bool quit = false;

            *nl = '\0';
            if (discarding)
                discarding = false; /* the tail of an overlong line, already answered */
            else
                quit = run_command(mc, brokers, buf);
            memmove(buf, buf + used, len - used);
            len -= used;
            if (quit)
                return 0;
        }
        if (len == sizeof(buf) - 1) {
            /* A line longer than the buffer: answer once and drop it up to its newline. */
            answer("error: line too long");
            discarding = true;
            len = 0;
        }
    }
}

int main(int argc, char **argv)
{
    const char *topics[256];
    const char *bootstrap_file = NULL, *debug = NULL;
    size_t n_topics = 0;
    long brokers = 1;
    char errstr[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    sigset_t sigs;
    int sfd, rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];

        if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
            usage();
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s: missing value\n", prog, opt);
            usage();
            return 2;
        }
        if (strcmp(opt, "--brokers") == 0) {
            if (parse_int(argv[++i], 1, MAX_BROKERS, &brokers) != 0) {
                fprintf(stderr, "%s: --brokers: expected 1..%d\n", prog, MAX_BROKERS);
                return 2;
            }
        } else if (strcmp(opt, "--topic") == 0) {
            if (n_topics == sizeof(topics) / sizeof(topics[0])) {
                fprintf(stderr, "%s: too many --topic\n", prog);
                return 2;
            }
            topics[n_topics++] = argv[++i];
        } else if (strcmp(opt, "--bootstrap-file") == 0) {
            bootstrap_file = argv[++i];
        } else if (strcmp(opt, "--debug") == 0) {
            debug = argv[++i];
        } else if (strcmp(opt, "--port") == 0) {
            fprintf(stderr,
                    "%s: --port: librdkafka %s's mock brokers always listen on a port the "
                    "kernel picks (127.0.0.1:0)\n",
                    prog, rd_kafka_version_str());
            return 2;
        } else {
            fprintf(stderr, "%s: unknown option %s\n", prog, opt);
            usage();
            return 2;
        }
    }

    /* Block the stop signals before librdkafka starts its threads (they inherit the mask), so
     * they are only ever taken from the signalfd, by the main loop. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) != 0 || (sfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0) {
        fprintf(stderr, "%s: signalfd: %s\n", prog, strerror(errno));
        return 1;
    }
    /* A reader that went away must not kill us in the middle of an answer. */
    signal(SIGPIPE, SIG_IGN);

    /* The handle only owns the mock cluster: it never connects anywhere. Its notice that it has
     * no bootstrap.servers is noise, hence log_level 4 (warnings) unless --debug. */
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "client.id", "sy-kafka-mock", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", debug != NULL ? "7" : "4", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        (debug != NULL &&
         rd_kafka_conf_set(conf, "debug", debug, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)) {
        fprintf(stderr, "%s: %s\n", prog, errstr);
        rd_kafka_conf_destroy(conf);
        goto out_close_sfd;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "%s: rd_kafka_new: %s\n", prog, errstr);
        rd_kafka_conf_destroy(conf);
        goto out_close_sfd;
    }
    mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
    if (mc == NULL) {
        fprintf(stderr, "%s: cannot create a mock cluster of %ld brokers\n", prog, brokers);
        goto out_destroy_rk;
    }
    for (size_t i = 0; i < n_topics; i++) {
        if (create_topic_spec(mc, (int)brokers, topics[i]) != 0)
            goto out_destroy_mc;
    }
    if (bootstrap_file != NULL) {
        FILE *f = fopen(bootstrap_file, "w");

        if (f == NULL || fprintf(f, "bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mc)) < 0 ||
            fclose(f) != 0) {
            fprintf(stderr, "%s: %s: %s\n", prog, bootstrap_file, strerror(errno));
            goto out_destroy_mc;
        }
    }
    /* The brokers already listen (rd_kafka_mock_cluster_new bound and started them): the line
     * means "ready". */
    answer("bootstrap=%s", rd_kafka_mock_cluster_bootstraps(mc));
    rc = serve(mc, (int)brokers, sfd);

out_destroy_mc:
    rd_kafka_mock_cluster_destroy(mc);
out_destroy_rk:
    rd_kafka_destroy(rk);
out_close_sfd:
    close(sfd);
    return rc;
}
