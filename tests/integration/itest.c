/*
 * tests/integration/itest.c - cmocka fixtures, invariants and assertions shared by the
 * integration tests (see itest.h).
 */
#include "itest.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set when a group setup or teardown failed: see itest_exit_code(). */
static bool group_failed;

int itest_exit_code(int cmocka_rc)
{
    if (cmocka_rc != 0)
        return cmocka_rc;
    return group_failed ? 1 : 0;
}

int itest_group_start(void **state, const char *tag, const char *yaml, const char *const env[])
{
    struct itest *t = calloc(1, sizeof(*t));

    *state = t;
    if (t == NULL)
        return -1;
    if (h_broker_init(&t->b, tag) != 0 || h_broker_write_config(&t->b, yaml) != 0 ||
        h_broker_start(&t->b, env, ITEST_READY_MS) != 0) {
        t->b.failed = true;
        group_failed = true;
        return -1;
    }
    return 0;
}

int itest_group_stop(void **state)
{
    struct itest *t = *state;
    int rc = 0, code;

    if (t == NULL)
        return 0;
    if (t->b.proc.pid > 0 && !t->b.proc.reaped) {
        code = h_broker_stop(&t->b, 10000);
        if (code != 0) {
            fprintf(stderr, "itest: broker exit code after SIGTERM is %d, expected 0\n", code);
            rc = -1;
        }
    }
    if (h_broker_sanitizer_lines(&t->b, 0) > 0)
        rc = -1;
    if (rc != 0) {
        t->b.failed = true;
        h_broker_dump_logs(&t->b, 0);
    }
    if (h_broker_destroy(&t->b) > 0)
        rc = -1;
    if (rc != 0)
        group_failed = true;
    free(t);
    *state = NULL;
    return rc;
}

void itest_filter_from_env(void)
{
    const char *f = getenv("SY_TEST_FILTER");

    if (f != NULL && *f != '\0')
        cmocka_set_test_filter(f);
}

int itest_setup(void **state)
{
    struct itest *t = *state;

    t->mark = h_broker_log_mark(&t->b);
    t->ok = false;
    return 0;
}

int itest_teardown(void **state)
{
    struct itest *t = *state;

    if (!t->ok) {
        fprintf(stderr, "itest: the test failed; logs follow\n");
        t->b.failed = true;
        h_broker_dump_logs(&t->b, t->mark);
    }
    return 0;
}

void itest_end_(struct itest *t, const char *file, int line)
{
    if (!h_broker_running(&t->b)) {
        print_error("broker is not running any more (exit code %d)\n",
                    h_proc_exit_code(&t->b.proc));
        _fail(file, line);
    }
    if (h_broker_wait_idle(&t->b, 10000) != 0) {
        print_error("in_flight did not return to 0\n");
        _fail(file, line);
    }
    if (h_broker_sanitizer_lines(&t->b, t->mark) > 0) {
        print_error("sanitizer report in the broker log\n");
        _fail(file, line);
    }
    t->ok = true;
}

void itest_invoke_(struct itest *t, const char *fn, const char *payload, size_t len,
                   const char *const hdrs[], struct h_http_resp *resp, const char *file, int line)
{
    if (h_broker_invoke(&t->b, fn, payload, len, hdrs, resp) != 0) {
        print_error("invoke %s: no HTTP response from the broker\n", fn);
        _fail(file, line);
    }
}

static void print_resp(const struct h_http_resp *resp)
{
    char *d = h_http_resp_describe(resp);

    print_error("response was:\n%s\n", d);
    free(d);
}

void expect_status_(const struct h_http_resp *resp, int code, const char *file, int line)
{
    if (resp->status == code)
        return;
    print_error("expected HTTP %d, got %d\n", code, resp->status);
    print_resp(resp);
    _fail(file, line);
}

void expect_header_(const struct h_http_resp *resp, const char *name, const char *value,
                    const char *file, int line)
{
    const char *v = h_http_header(resp, name);

    if (value == NULL && v == NULL)
        return;
    if (value != NULL && v != NULL && strcmp(v, value) == 0)
        return;
    print_error("expected header %s: %s, got %s\n", name, value ? value : "(absent)",
                v ? v : "(absent)");
    print_resp(resp);
    _fail(file, line);
}

void expect_contains_(const char *hay, const char *needle, bool want, const char *file, int line)
{
    bool has = hay != NULL && strstr(hay, needle) != NULL;

    if (has == want)
        return;
    print_error("expected %s\"%s\" in:\n%.4096s\n", want ? "" : "no ", needle,
                hay ? hay : "(null)");
    _fail(file, line);
}

json_t *resp_json_(const struct h_http_resp *resp, const char *file, int line)
{
    json_t *j = h_json_parse(resp->body, resp->body_len);

    if (j == NULL) {
        print_error("response body is not JSON\n");
        print_resp(resp);
        _fail(file, line);
    }
    return j;
}

char *resp_log_tail_(const struct h_http_resp *resp, const char *file, int line)
{
    const char *b64 = h_http_header(resp, "X-Amz-Log-Result");
    char *text = b64 != NULL ? h_b64_decode(b64, NULL) : NULL;

    if (text == NULL) {
        print_error("X-Amz-Log-Result missing or not base64\n");
        print_resp(resp);
        _fail(file, line);
    }
    return text;
}

json_t *expect_function_error_(const struct h_http_resp *resp, const char *error_type,
                               const char *file, int line)
{
    json_t *j;
    const char *type;

    expect_status_(resp, 200, file, line);
    expect_header_(resp, "X-Amz-Function-Error", "Unhandled", file, line);
    j = resp_json_(resp, file, line);
    type = h_json_str(j, "errorType");
    if (type == NULL || h_json_str(j, "errorMessage") == NULL ||
        (error_type != NULL && strcmp(type, error_type) != 0)) {
        print_error("expected a function error body with errorType %s\n",
                    error_type ? error_type : "(any)");
        print_resp(resp);
        json_decref(j);
        _fail(file, line);
    }
    return j;
}

json_t *expect_api_error_(const struct h_http_resp *resp, int status, const char *code,
                          const char *file, int line)
{
    json_t *j;

    expect_status_(resp, status, file, line);
    expect_header_(resp, "x-amzn-ErrorType", code, file, line);
    j = resp_json_(resp, file, line);
    if (h_json_str(j, "message") == NULL && h_json_str(j, "Message") == NULL) {
        print_error("API error body without a message\n");
        print_resp(resp);
        json_decref(j);
        _fail(file, line);
    }
    return j;
}

void expect_run_code_(const struct h_run *run, int code, const char *file, int line)
{
    if (run->code == code)
        return;
    print_error("expected exit code %d, got %d%s\n--- stdout ---\n%.4096s\n--- stderr ---\n"
                "%.4096s\n",
                code, run->code, run->timed_out ? " (timed out)" : "", run->out, run->err);
    _fail(file, line);
}

long long json_pid(const json_t *j)
{
    if (json_is_integer(j))
        return (long long)json_integer_value(j);
    return h_json_int(j, "pid", -1);
}

void await_health_(struct itest *t, bool (*pred)(const struct h_health *, void *), void *arg,
                   int timeout_ms, const char *what, const char *file, int line)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    struct h_health h;

    for (;;) {
        int rc = h_broker_health(&t->b, &h);

        if (rc == 0 && pred(&h, arg))
            return;
        if (h_now_ms() >= deadline) {
            print_error("/healthz never satisfied %s within %d ms; last: in_flight=%lld "
                        "environments=%lld invocations=%lld errors=%lld throttles=%lld "
                        "cold_starts=%lld warm_starts=%lld timeouts=%lld crashes=%lld\n",
                        what, timeout_ms, h.in_flight, h.environments, h.invocations, h.errors,
                        h.throttles, h.cold_starts, h.warm_starts, h.timeouts, h.crashes);
            _fail(file, line);
        }
        h_sleep_ms(10);
    }
}

void get_health_(struct itest *t, struct h_health *h, const char *file, int line)
{
    if (h_broker_health(&t->b, h) != 0) {
        print_error("GET /healthz failed\n");
        _fail(file, line);
    }
}

/* ---- async invocations, files written by handlers and destinations -------------------------- */

const char *const itest_event_hdr[] = {"X-Amz-Invocation-Type: Event", NULL};

char *itest_invoke_event_(const struct h_broker *b, const char *fn, const char *payload,
                          const char *file, int line)
{
    struct h_http_resp r;
    const char *rid;
    char *out;

    if (h_broker_invoke(b, fn, payload, (size_t)-1, itest_event_hdr, &r) != 0) {
        print_error("invoke %s: no HTTP response from the broker\n", fn);
        _fail(file, line);
    }
    expect_status_(&r, 202, file, line);
    rid = h_http_header(&r, "x-amzn-RequestId");
    if (rid == NULL || strlen(rid) != 36) {
        print_error("202 without a request id\n");
        _fail(file, line);
    }
    out = strdup(rid);
    h_http_resp_free(&r);
    return out;
}

json_t *itest_api_json_(const struct h_broker *b, const char *method, const char *path,
                        const char *body, const char *file, int line)
{
    struct h_http_resp r;
    const char *const hdrs[] = {"Content-Type: application/json", NULL};
    json_t *j;

    if (h_broker_request(b, method, path, body ? hdrs : NULL, body, body ? strlen(body) : 0, 10000,
                         &r) != 0) {
        print_error("%s %s: no answer\n", method, path);
        _fail(file, line);
    }
    expect_status_(&r, 200, file, line);
    j = resp_json_(&r, file, line);
    h_http_resp_free(&r);
    return j;
}

long long itest_async_stat(const struct h_broker *b, const char *field)
{
    struct h_http_resp r;
    json_t *j;
    long long v;

    if (h_broker_request(b, "GET", "/healthz", NULL, NULL, 0, 10000, &r) != 0)
        return -1;
    j = h_json_parse(r.body, r.body_len);
    v = h_json_int(json_object_get(j, "async"), field, -1);
    json_decref(j);
    h_http_resp_free(&r);
    return v;
}

size_t itest_line_count(const char *path)
{
    size_t len, n;
    char *text = h_read_file(path, 0, &len);

    if (text == NULL)
        return 0;
    n = h_str_count(text, "\n");
    free(text);
    return n;
}

void itest_await_lines_(const char *path, size_t want, int timeout_ms, const char *file, int line)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (itest_line_count(path) < want) {
        if (h_now_ms() > deadline) {
            print_error("%s has %zu line(s), want %zu, after %d ms\n", path, itest_line_count(path),
                        want, timeout_ms);
            _fail(file, line);
        }
        h_sleep_ms(20);
    }
}

void itest_await_path_(const char *path, int timeout_ms, const char *file, int line)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (access(path, F_OK) != 0) {
        if (h_now_ms() > deadline) {
            print_error("%s did not appear within %d ms\n", path, timeout_ms);
            _fail(file, line);
        }
        h_sleep_ms(20);
    }
}

json_t *itest_await_json_file_(const char *dir, const char *needle, int timeout_ms,
                               const char *file, int line)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    for (;;) {
        DIR *d = opendir(dir);
        struct dirent *de;

        while (d != NULL && (de = readdir(d)) != NULL) {
            char *path, *text;
            size_t len;

            if (de->d_name[0] == '.')
                continue;
            path = h_strfmt("%s/%s", dir, de->d_name);
            text = h_read_file(path, 0, &len);
            free(path);
            if (text != NULL && strstr(text, needle) != NULL) {
                json_t *j = h_json_parse(text, len);

                free(text);
                if (j == NULL) {
                    print_error("%s/%s is not JSON\n", dir, de->d_name);
                    closedir(d);
                    _fail(file, line);
                }
                closedir(d);
                return j;
            }
            free(text);
        }
        if (d != NULL)
            closedir(d);
        if (h_now_ms() > deadline) {
            print_error("no file in %s mentions %s after %d ms\n", dir, needle, timeout_ms);
            _fail(file, line);
        }
        h_sleep_ms(20);
    }
}

static void *bg_main(void *arg)
{
    struct bg_invoke *bg = arg;

    bg->rc = h_broker_invoke(bg->b, bg->fn, bg->payload, (size_t)-1, NULL, &bg->resp);
    return NULL;
}

struct bg_invoke *bg_invoke_start(const struct h_broker *b, const char *fn, const char *payload)
{
    struct bg_invoke *bg = calloc(1, sizeof(*bg));
    pthread_t *th = calloc(1, sizeof(*th));

    if (bg == NULL || th == NULL)
        abort();
    bg->b = b;
    bg->fn = strdup(fn);
    bg->payload = strdup(payload);
    bg->rc = -1;
    bg->thread = th;
    if (pthread_create(th, NULL, bg_main, bg) != 0)
        abort();
    return bg;
}

int bg_invoke_join(struct bg_invoke *bg, struct h_http_resp *resp)
{
    int rc;

    /* The request itself is bounded (30 s HTTP deadline), so the join is too. */
    pthread_join(*(pthread_t *)bg->thread, NULL);
    rc = bg->rc;
    *resp = bg->resp;
    free(bg->thread);
    free(bg->fn);
    free(bg->payload);
    free(bg);
    return rc;
}

bool itest_have_aws(void)
{
    if (access("/usr/bin/aws", X_OK) == 0)
        return true;
    print_message("/usr/bin/aws is not installed (apt-get install awscli); skipping\n");
    return false;
}

void itest_aws(const struct h_broker *b, const char *key, const char *const args[], struct h_run *r)
{
    char *url = h_broker_url(b);
    char *home = h_strfmt("HOME=%s", b->dir);
    char *keyvar = h_strfmt("AWS_ACCESS_KEY_ID=%s", key);
    const char *env[] = {home,
                         keyvar,
                         "AWS_SECRET_ACCESS_KEY=anything",
                         "AWS_DEFAULT_REGION=us-east-1",
                         "AWS_EC2_METADATA_DISABLED=true",
                         "AWS_MAX_ATTEMPTS=1",
                         "AWS_RETRY_MODE=standard",
                         "AWS_PAGER=",
                         "AWS_PROFILE",
                         "AWS_SESSION_TOKEN",
                         "AWS_CONFIG_FILE",
                         "AWS_SHARED_CREDENTIALS_FILE",
                         NULL};
    char *argv[40];
    size_t n = 0;

    argv[n++] = "/usr/bin/aws";
    argv[n++] = "lambda";
    for (size_t i = 0; args[i] != NULL && n < 34; i++)
        argv[n++] = (char *)args[i];
    argv[n++] = "--endpoint-url";
    argv[n++] = url;
    argv[n++] = "--output";
    argv[n++] = "json";
    argv[n] = NULL;
    h_proc_run(argv, env, b->dir, 60000, r);
    free(url);
    free(home);
    free(keyvar);
}
