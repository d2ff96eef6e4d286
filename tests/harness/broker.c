/*
 * tests/harness/broker.c - the broker under test as a process: temp dir, config, spawn, ready
 * line, control API requests, stop, strays, sanitizer scan and log dumps (see broker.h).
 */
#include "harness/broker.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/util.h"

int h_broker_init(struct h_broker *b, const char *tag)
{
    memset(b, 0, sizeof(*b));
    h_proc_init();
    b->dir = h_tmpdir_create(tag);
    if (b->dir == NULL)
        return -1;
    b->config_path = h_strfmt("%s/switchyard.yaml", b->dir);
    b->log_path = h_strfmt("%s/broker.log", b->dir);
    b->data_dir = h_strfmt("%s/data", b->dir);
    return 0;
}

char *h_broker_expand(const struct h_broker *b, const char *yaml)
{
    char *handlers = h_strfmt("%s/tests/handlers", h_source_dir());
    char *fixtures = h_strfmt("%s/tests/integration/handlers", h_source_dir());
    const char *from[] = {"@HANDLERS@", "@FIXTURES@", "@SRC@", "@DATA@", "@DIR@"};
    const char *to[] = {handlers, fixtures, h_source_dir(), b->data_dir, b->dir};
    char *s = strdup(yaml);

    for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
        char *next = h_str_replace(s, from[i], to[i]);

        free(s);
        s = next;
    }
    free(handlers);
    free(fixtures);
    return s;
}

int h_broker_write_config(struct h_broker *b, const char *yaml)
{
    char *text = h_broker_expand(b, yaml);
    int rc = h_write_file(b->config_path, text, strlen(text));

    free(text);
    return rc;
}

/*
 * Find "ready: control API on http://HOST:PORT" in LOG and fill B's host and port. IPv6 hosts
 * come in brackets. Returns 0 when found.
 */
static int parse_ready(struct h_broker *b, const char *log)
{
    static const char key[] = "ready: control API on http://";
    const char *p = strstr(log, key), *end;
    size_t hl;

    if (p == NULL)
        return -1;
    p += sizeof(key) - 1;
    if (*p == '[') {
        end = strchr(p, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        hl = (size_t)(end - p - 1);
        p++;
        end++;
    } else {
        end = strchr(p, ':');
        if (end == NULL)
            return -1;
        hl = (size_t)(end - p);
    }
    if (hl == 0 || hl >= sizeof(b->host))
        return -1;
    /* The port must be complete: wait for the end of the line. */
    if (strpbrk(end + 1, " \t\r\n/") == NULL)
        return -1;
    memcpy(b->host, p, hl);
    b->host[hl] = '\0';
    b->port = atoi(end + 1);
    return b->port > 0 ? 0 : -1;
}

int h_broker_start(struct h_broker *b, const char *const env[], int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    char *argv[] = {(char *)h_binary(), "run", b->config_path, NULL};

    if (access(h_binary(), X_OK) != 0) {
        fprintf(stderr, "harness: broker binary %s is not executable (set SY_BINARY)\n",
                h_binary());
        b->failed = true;
        return -1;
    }
    /* A restart appends to the same log: look for the ready line of this start only. */
    size_t from = h_file_size(b->log_path);

    if (h_proc_spawn(&b->proc, argv, env, b->dir, b->log_path) != 0) {
        b->failed = true;
        return -1;
    }
    b->port = 0;
    for (;;) {
        char *log = h_read_file(b->log_path, from, NULL);
        int found = log != NULL && parse_ready(b, log) == 0;

        free(log);
        if (found)
            return 0;
        if (!h_broker_running(b)) {
            fprintf(stderr, "harness: broker exited (code %d) before its ready line\n",
                    h_proc_exit_code(&b->proc));
            break;
        }
        if (h_now_ms() >= deadline) {
            fprintf(stderr, "harness: no ready line from the broker within %d ms\n", timeout_ms);
            break;
        }
        h_sleep_ms(10);
    }
    b->failed = true;
    h_broker_dump_logs(b, 0);
    h_proc_stop(&b->proc, SIGKILL, 5000);
    return -1;
}

bool h_broker_running(struct h_broker *b)
{
    if (b->proc.pid <= 0)
        return false;
    return h_proc_wait(&b->proc, 0) != 0;
}

int h_broker_stop(struct h_broker *b, int grace_ms)
{
    int rc;

    if (b->proc.pid <= 0)
        return -1;
    rc = h_proc_stop(&b->proc, SIGTERM, grace_ms);
    if (rc == 1) {
        fprintf(stderr, "harness: broker did not exit within %d ms of SIGTERM; killed\n", grace_ms);
        return -2;
    }
    return h_proc_exit_code(&b->proc);
}

int h_broker_sanitizer_lines(const struct h_broker *b, size_t from)
{
    static const char *const pats[] = {
        "ERROR: AddressSanitizer",
        "runtime error:",
        "LeakSanitizer",
        "AddressSanitizer:DEADLYSIGNAL",
        "SUMMARY: UndefinedBehaviorSanitizer",
        "WARNING: AddressSanitizer",
    };
    char *log = h_read_file(b->log_path, from, NULL);
    char *line, *save = NULL;
    int found = 0;

    if (log == NULL)
        return 0;
    for (line = strtok_r(log, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
            if (strstr(line, pats[i]) != NULL) {
                fprintf(stderr, "harness: sanitizer line in broker log: %s\n", line);
                found++;
                break;
            }
        }
    }
    free(log);
    return found;
}

size_t h_broker_log_mark(const struct h_broker *b)
{
    return h_file_size(b->log_path);
}

/* Print the last MAX bytes of PATH from FROM on, under a banner. */
static void dump_file(const char *title, const char *path, size_t from, size_t max)
{
    size_t size = h_file_size(path);
    char *text;

    if (size > from + max)
        from = size - max;
    text = h_read_file(path, from, NULL);
    fprintf(stderr, "----- %s (%s, from byte %zu) -----\n%s%s----- end of %s -----\n", title, path,
            from, text ? text : "(unreadable)\n",
            text && *text && text[strlen(text) - 1] != '\n' ? "\n" : "", title);
    free(text);
}

void h_broker_dump_logs(const struct h_broker *b, size_t from)
{
    char *logs = h_strfmt("%s/logs", b->data_dir);
    DIR *d = opendir(logs);
    struct dirent *de;

    dump_file("broker log", b->log_path, from, 65536);
    while (d != NULL && (de = readdir(d)) != NULL) {
        char *path;

        if (de->d_name[0] == '.')
            continue;
        path = h_strfmt("%s/%s", logs, de->d_name);
        dump_file("function log", path, 0, 8192);
        free(path);
    }
    if (d != NULL)
        closedir(d);
    free(logs);
}

int h_broker_destroy(struct h_broker *b)
{
    int strays;

    if (b->proc.pid > 0 && h_broker_running(b)) {
        /* A test that failed half-way: stop the broker anyway, by its PID. */
        if (h_proc_stop(&b->proc, SIGTERM, 3000) != 0)
            fprintf(stderr, "harness: broker %d needed SIGKILL at teardown\n", (int)b->proc.pid);
    }
    strays = h_proc_kill_strays(NULL, 0, 1000);
    if (strays > 0)
        b->failed = true;
    if (b->failed) {
        if (b->dir != NULL)
            fprintf(stderr, "harness: keeping %s for inspection\n", b->dir);
    } else if (getenv("SY_KEEP_TMP") == NULL) {
        h_rm_rf(b->dir);
    }
    free(b->dir);
    free(b->config_path);
    free(b->log_path);
    free(b->data_dir);
    b->dir = b->config_path = b->log_path = b->data_dir = NULL;
    return strays;
}

int h_broker_request(const struct h_broker *b, const char *method, const char *path,
                     const char *const headers[], const void *body, size_t body_len, int timeout_ms,
                     struct h_http_resp *resp)
{
    const char *hdrs[64];
    char *auth = NULL;
    size_t n = 0;
    int rc;

    for (; headers != NULL && headers[n] != NULL && n < 62; n++)
        hdrs[n] = headers[n];
    if (b->token != NULL) {
        auth = h_strfmt("Authorization: Bearer %s", b->token);
        hdrs[n++] = auth;
    }
    hdrs[n] = NULL;
    rc = h_http_request(b->host, b->port, method, path, hdrs, body, body_len, timeout_ms, resp);
    free(auth);
    return rc;
}

int h_broker_invoke(const struct h_broker *b, const char *fn, const char *payload, size_t len,
                    const char *const headers[], struct h_http_resp *resp)
{
    char *path = h_strfmt("/2015-03-31/functions/%s/invocations", fn);
    int rc;

    if (payload == NULL)
        payload = "";
    if (len == (size_t)-1)
        len = strlen(payload);
    rc = h_broker_request(b, "POST", path, headers, payload, len, 30000, resp);
    free(path);
    return rc;
}

int h_broker_health(const struct h_broker *b, struct h_health *h)
{
    struct h_http_resp r;
    json_t *j;

    memset(h, 0xff, sizeof(*h)); /* every counter -1 */
    if (h_broker_request(b, "GET", "/healthz", NULL, NULL, 0, 10000, &r) != 0)
        return -1;
    /* A draining broker answers 503 with the same body. */
    j = r.status == 200 || r.status == 503 ? h_json_parse(r.body, r.body_len) : NULL;
    if (j == NULL) {
        fprintf(stderr, "harness: /healthz answered %d: %.300s\n", r.status, r.body);
        h_http_resp_free(&r);
        return -1;
    }
    h->in_flight = h_json_int(j, "in_flight", -1);
    h->environments = h_json_int(j, "environments", -1);
    h->invocations = h_json_int(j, "invocations", -1);
    h->errors = h_json_int(j, "errors", -1);
    h->throttles = h_json_int(j, "throttles", -1);
    h->cold_starts = h_json_int(j, "cold_starts", -1);
    h->warm_starts = h_json_int(j, "warm_starts", -1);
    h->timeouts = h_json_int(j, "timeouts", -1);
    h->crashes = h_json_int(j, "crashes", -1);
    json_decref(j);
    h_http_resp_free(&r);
    return 0;
}

int h_broker_wait_idle(const struct h_broker *b, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    struct h_health h;

    for (;;) {
        if (h_broker_health(b, &h) == 0 && h.in_flight == 0)
            return 0;
        if (h_now_ms() >= deadline) {
            fprintf(stderr, "harness: /healthz in_flight is %lld after %d ms\n", h.in_flight,
                    timeout_ms);
            return -1;
        }
        h_sleep_ms(10);
    }
}

char *h_broker_func_log(const struct h_broker *b, const char *fn)
{
    return h_strfmt("%s/logs/%s.log", b->data_dir, fn);
}

char *h_broker_url(const struct h_broker *b)
{
    if (strchr(b->host, ':') != NULL)
        return h_strfmt("http://[%s]:%d", b->host, b->port);
    return h_strfmt("http://%s:%d", b->host, b->port);
}
