/*
 * tests/harness/redis.c - start, probe and stop a real redis-server on a free loopback port
 * (see redis.h).
 */
#include "harness/redis.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "harness/util.h"

/* How long a server gets to answer its first PING (sanitizer builds on a busy machine). */
#define H_REDIS_READY_MS 10000

int h_redis_reserve_port(struct h_redis *r)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        fprintf(stderr, "harness: socket: %s\n", strerror(errno));
        return -1;
    }
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        fprintf(stderr, "harness: bind 127.0.0.1:0: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    r->port = ntohs(sin.sin_port);
    return r->port;
}

/* One PING with short timeouts. True on +PONG. */
static bool ping(int port)
{
    struct timeval tv = {0, 200 * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *reply;
    bool ok = false;

    if (c == NULL)
        return false;
    if (c->err == 0 && redisSetTimeout(c, tv) == REDIS_OK) {
        reply = redisCommand(c, "PING");
        ok = reply != NULL && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
        freeReplyObject(reply);
    }
    redisFree(c);
    return ok;
}

/* Print the server's log (why it did not come up). */
static void dump_log(const struct h_redis *r)
{
    char *log = r->log_path != NULL ? h_read_file(r->log_path, 0, NULL) : NULL;

    fprintf(stderr, "harness: redis-server log (%s):\n%s\n", r->log_path ? r->log_path : "-",
            log != NULL ? log : "(none)");
    free(log);
}

bool h_redis_running(const struct h_redis *r)
{
    return r->proc.pid > 0 && !r->proc.reaped;
}

int h_redis_start(struct h_redis *r)
{
    bool picked = false;

    if (h_redis_running(r))
        return 0;
    if (r->dir == NULL) {
        r->dir = h_tmpdir_create("redis");
        if (r->dir == NULL)
            return -1;
        r->log_path = h_strfmt("%s/redis.log", r->dir);
    }
    /* A port we picked may be taken by someone else before the server binds it: try again. */
    for (int attempt = 0; attempt < 5; attempt++) {
        char port[16];
        int64_t deadline;

        if (r->port == 0) {
            if (h_redis_reserve_port(r) < 0)
                return -1;
            picked = true;
        }
        snprintf(port, sizeof(port), "%d", r->port);
        {
            char *argv[] = {"redis-server", "--port", port,           "--bind", "127.0.0.1",
                            "--save",       "",       "--appendonly", "no",     "--daemonize",
                            "no",           "--dir",  r->dir,         NULL};

            if (h_proc_spawn(&r->proc, argv, NULL, r->dir, r->log_path) != 0)
                return -1;
        }
        deadline = h_now_ms() + H_REDIS_READY_MS;
        while (h_now_ms() < deadline) {
            if (ping(r->port))
                return 0;
            if (h_proc_wait(&r->proc, 0) == 0)
                break; /* exited: port taken, or a bad argument */
            h_sleep_ms(20);
        }
        if (!r->proc.reaped) {
            fprintf(stderr, "harness: redis-server on port %d did not answer PING in %d ms\n",
                    r->port, H_REDIS_READY_MS);
            dump_log(r);
            h_redis_stop(r);
            return -1;
        }
        fprintf(stderr, "harness: redis-server on port %d exited (code %d)%s\n", r->port,
                h_proc_exit_code(&r->proc), picked ? "; trying another port" : "");
        if (!picked) {
            dump_log(r);
            return -1;
        }
        r->port = 0;
    }
    dump_log(r);
    return -1;
}

int h_redis_stop(struct h_redis *r)
{
    if (!h_redis_running(r))
        return 0;
    /* A test may have stopped it (SIGSTOP): a stopped process cannot act on SIGTERM. */
    kill(r->proc.pid, SIGCONT);
    return h_proc_stop(&r->proc, SIGTERM, 5000) < 0 && !r->proc.reaped ? -1 : 0;
}

void h_redis_free(struct h_redis *r)
{
    h_redis_stop(r);
    if (r->dir != NULL)
        h_rm_rf(r->dir);
    free(r->dir);
    free(r->log_path);
    r->dir = NULL;
    r->log_path = NULL;
    r->port = 0;
    memset(&r->proc, 0, sizeof(r->proc));
}

static redisReply *vcmd(const struct h_redis *r, const char *fmt, va_list ap)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    redisReply *reply = NULL;

    if (c == NULL || c->err != 0) {
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv) == REDIS_OK)
        reply = redisvCommand(c, fmt, ap);
    redisFree(c);
    return reply;
}

struct redisReply *h_redis_cmd(const struct h_redis *r, const char *fmt, ...)
{
    va_list ap;
    redisReply *reply;

    va_start(ap, fmt);
    reply = vcmd(r, fmt, ap);
    va_end(ap);
    return reply;
}

long long h_redis_int(const struct h_redis *r, const char *fmt, ...)
{
    va_list ap;
    redisReply *reply;
    long long n;

    va_start(ap, fmt);
    reply = vcmd(r, fmt, ap);
    va_end(ap);
    n = reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    freeReplyObject(reply);
    return n;
}
