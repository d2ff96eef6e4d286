/*
 * tests/unit/test_api.c - the control API (broker/api*.c): FunctionName/ARN parsing, base64,
 * routing and token checks as pure functions, then the API itself over real loopback HTTP on
 * the test's loop (a hand-built config, a real dispatcher that never spawns: every request
 * here is answered before a function would run, or throttled by reserved concurrency 0).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sys/stat.h>

#include "broker/api_int.h"
#include "core/httpc.h"
#include "core/b64.h"
#include "config/config.h"
#include "dispatcher/dispatcher.h"
#include "loopclient.h"

/* ---- pure helpers ------------------------------------------------------------------------- */

static void test_parse_fname(void **state)
{
    struct api_fname f;

    assert_int_equal(api_parse_fname("thumbnail", &f), 0);
    assert_string_equal(f.name, "thumbnail");
    assert_string_equal(f.qualifier, "");
    assert_string_equal(f.account, "");

    assert_int_equal(api_parse_fname("thumb-nail_2:$LATEST", &f), 0);
    assert_string_equal(f.name, "thumb-nail_2");
    assert_string_equal(f.qualifier, "$LATEST");

    assert_int_equal(api_parse_fname("arn:aws:lambda:us-east-1:123456789012:function:fn", &f), 0);
    assert_string_equal(f.region, "us-east-1");
    assert_string_equal(f.account, "123456789012");
    assert_string_equal(f.name, "fn");
    assert_string_equal(f.qualifier, "");

    assert_int_equal(
        api_parse_fname("arn:aws-cn:lambda:cn-north-1:123456789012:function:fn:prod", &f), 0);
    assert_string_equal(f.qualifier, "prod");

    assert_int_equal(api_parse_fname("123456789012:function:fn:7", &f), 0);
    assert_string_equal(f.account, "123456789012");
    assert_string_equal(f.name, "fn");
    assert_string_equal(f.qualifier, "7");

    /* Not one of Lambda's forms. */
    assert_int_equal(api_parse_fname("", &f), -1);
    assert_int_equal(api_parse_fname("bad name", &f), -1);
    assert_int_equal(api_parse_fname("fn:", &f), -1);
    assert_int_equal(api_parse_fname("fn:a:b", &f), -1);
    assert_int_equal(api_parse_fname("fn:bad$qual", &f), -1);
    assert_int_equal(api_parse_fname("12345:function:fn", &f), -1);
    assert_int_equal(api_parse_fname("arn:aws:s3:us-east-1:123456789012:function:fn", &f), -1);
    assert_int_equal(api_parse_fname("arn:aws:lambda:us-east-1:123456789012:layer:fn", &f), -1);
    assert_int_equal(api_parse_fname("arn:aws:lambda:us-east-1:123456789012:function:", &f), -1);
    assert_int_equal(api_parse_fname("arn:aws:lambda:us-east-1:123456789012:function:fn:a:b", &f),
                     -1);
    {
        char longname[80];

        memset(longname, 'a', 65);
        longname[65] = '\0';
        assert_int_equal(api_parse_fname(longname, &f), -1);
        longname[64] = '\0';
        assert_int_equal(api_parse_fname(longname, &f), 0);
    }
    assert_true(api_qualifier_valid("$LATEST"));
    assert_true(api_qualifier_valid("prod_1-a"));
    assert_false(api_qualifier_valid(""));
    assert_false(api_qualifier_valid("$LATEST2"));
    assert_false(api_qualifier_valid("a.b"));
}

static void test_b64(void **state)
{
    char enc[64];
    char *dec;
    size_t n;

    assert_int_equal(b64_encode("hello", 5, enc), 8);
    assert_string_equal(enc, "aGVsbG8=");
    assert_int_equal(b64_encode("", 0, enc), 0);
    assert_string_equal(enc, "");

    dec = b64_decode_new("aGVsbG8=", 8, &n);
    assert_non_null(dec);
    assert_int_equal(n, 5);
    assert_memory_equal(dec, "hello", 5);
    free(dec);
    dec = b64_decode_new("aGk=", 4, &n); /* "hi": two padding characters' worth trimmed */
    assert_non_null(dec);
    assert_int_equal(n, 2);
    free(dec);
    dec = b64_decode_new("", 0, &n);
    assert_non_null(dec);
    assert_int_equal(n, 0);
    free(dec);

    assert_null(b64_decode_new("aGVsbG8", 7, &n));  /* length */
    assert_null(b64_decode_new("aGV*bG8=", 8, &n)); /* alphabet */
    assert_null(b64_decode_new("aG=sbG8=", 8, &n)); /* padding inside */
    assert_null(b64_decode_new(" GVsbG8=", 8, &n)); /* whitespace */
    assert_null(b64_decode_new("a===", 4, &n));
}

static void test_route_find(void **state)
{
    char arg[64];
    const char *allow;
    const struct api_route *rt;

    rt = api_route_find("POST", "/2015-03-31/functions/fn/invocations", arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "Invoke");
    assert_string_equal(arg, "fn");

    rt = api_route_find("POST",
                        "/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:"
                        "function:fn/invocations",
                        arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(arg, "arn:aws:lambda:us-east-1:000000000000:function:fn");

    rt = api_route_find("GET", "/2015-03-31/functions/", arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "ListFunctions");
    rt = api_route_find("GET", "/2015-03-31/functions", arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "ListFunctions");
    rt = api_route_find("GET", "/2015-03-31/functions/fn", arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "GetFunction");
    rt = api_route_find("GET", "/2015-03-31/functions/fn/configuration", arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "GetFunctionConfiguration");
    rt = api_route_find("GET", "/healthz", arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_true(rt->flags & API_RT_NO_AUTH);

    /* Wrong method: no route, but we learn which method would do. */
    rt = api_route_find("GET", "/2015-03-31/functions/fn/invocations", arg, sizeof(arg), &allow);
    assert_null(rt);
    assert_non_null(allow);
    assert_string_equal(allow, "POST");
    /* Unknown paths, empty segments. */
    rt = api_route_find("POST", "/2015-03-31/functions//invocations", arg, sizeof(arg), &allow);
    assert_null(rt);
    assert_null(allow);
    rt = api_route_find("GET", "/2015-03-31/functions/fn/nope", arg, sizeof(arg), &allow);
    assert_null(rt);
    assert_null(allow);
    rt = api_route_find("GET", "/", arg, sizeof(arg), &allow);
    assert_null(rt);

    /* Event source mappings: the SDKs put a trailing slash on List and Create. */
    rt = api_route_find("GET", "/2015-03-31/event-source-mappings/", arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "ListEventSourceMappings");
    rt = api_route_find("GET", "/2015-03-31/event-source-mappings", arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "ListEventSourceMappings");
    rt = api_route_find("POST", "/2015-03-31/event-source-mappings/", arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "CreateEventSourceMapping");
    rt = api_route_find("GET", "/2015-03-31/event-source-mappings/0b4f6e36-1111-4222-8333-5e0c",
                        arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "GetEventSourceMapping");
    assert_string_equal(arg, "0b4f6e36-1111-4222-8333-5e0c");
    rt = api_route_find("PUT", "/2015-03-31/event-source-mappings/u1", arg, sizeof(arg), &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "UpdateEventSourceMapping");
    rt = api_route_find("DELETE", "/2015-03-31/event-source-mappings/u1", arg, sizeof(arg),
                        &allow);
    assert_non_null(rt);
    assert_string_equal(rt->op, "DeleteEventSourceMapping");
    rt = api_route_find("PATCH", "/2015-03-31/event-source-mappings/u1", arg, sizeof(arg), &allow);
    assert_null(rt);
    assert_non_null(allow);
    rt = api_route_find("GET", "/2015-03-31/event-source-mappings/u1/x", arg, sizeof(arg), &allow);
    assert_null(rt);
    assert_null(allow);
}

static void test_auth_ok(void **state)
{
    assert_true(api_auth_ok("Bearer s3cret", "s3cret"));
    assert_true(api_auth_ok("bearer s3cret ", "s3cret"));
    assert_false(api_auth_ok("Bearer s3cre", "s3cret"));
    assert_false(api_auth_ok("Bearer s3cret2", "s3cret"));
    assert_false(api_auth_ok("Bearer ", "s3cret"));
    assert_false(api_auth_ok("Basic czNjcmV0", "s3cret"));
    assert_false(api_auth_ok(NULL, "s3cret"));
    assert_false(api_auth_ok("Bearer x", ""));
    assert_true(api_auth_ok("AWS4-HMAC-SHA256 Credential=s3cret/20240101/us-east-1/lambda/"
                            "aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
                            "s3cret"));
    assert_false(api_auth_ok("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/"
                             "lambda/aws4_request, SignedHeaders=host, Signature=abc",
                             "s3cret"));
    assert_false(api_auth_ok("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abc", "s3cret"));
}

static void test_httpc_url(void **state)
{
    struct httpc_url u;
    struct sy_error err;
    char *e;

    assert_int_equal(httpc_parse_url("http://127.0.0.1:9001", &u, &err), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "9001");
    assert_string_equal(u.prefix, "");
    assert_int_equal(httpc_parse_url("http://[::1]:80/base/", &u, &err), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.prefix, "/base");
    assert_int_equal(httpc_parse_url("http://localhost", &u, &err), 0);
    assert_string_equal(u.port, "80");
    assert_int_not_equal(httpc_parse_url("https://x", &u, &err), 0);
    assert_int_not_equal(httpc_parse_url("127.0.0.1:9001", &u, &err), 0);
    assert_int_not_equal(httpc_parse_url("http://h:x1/", &u, &err), 0);
    e = httpc_escape_segment("arn:aws:lambda:x:1:function:f:$LATEST");
    assert_string_equal(e, "arn%3Aaws%3Alambda%3Ax%3A1%3Afunction%3Af%3A%24LATEST");
    free(e);
}

/* ---- the API over HTTP -------------------------------------------------------------------- */

struct fixture {
    char dir[64];
    struct cfg *cfg;
    struct event_base *base;
    struct dispatcher *dsp;
    struct api *api;
    struct httpd *srv;
    int port;
};

static char *xstrdup(const char *s)
{
    char *p = strdup(s);

    assert_non_null(p);
    return p;
}

static void add_function(struct cfg *cfg, const char *dir, const char *name, int reserved)
{
    struct cfg_function *fc = &cfg->functions[cfg->n_functions++];
    char code[128];

    snprintf(code, sizeof(code), "%s/%s", dir, name);
    assert_int_equal(mkdir(code, 0755), 0);
    {
        char file[192];
        FILE *fp;

        snprintf(file, sizeof(file), "%s/app.py", code);
        fp = fopen(file, "w");
        assert_non_null(fp);
        fputs("def handler(event, context):\n    return event\n", fp);
        fclose(fp);
    }
    fc->name = xstrdup(name);
    fc->runtime = CFG_RUNTIME_PYTHON3;
    fc->handler = xstrdup("app.handler");
    fc->code = xstrdup(code);
    fc->memory_mb = 128;
    fc->timeout_s = 3;
    fc->init_timeout_s = 10;
    fc->reserved_concurrency = reserved;
    fc->provisioned_concurrency = 0;
    fc->max_idle_s = 300;
    fc->async.maximum_retry_attempts = 2;
    fc->async.maximum_event_age_s = 21600;
}

static struct cfg *make_cfg(const char *dir, const char *token)
{
    struct cfg *cfg = calloc(1, sizeof(*cfg));
    char path[128];
    FILE *fp;

    assert_non_null(cfg);
    snprintf(path, sizeof(path), "%s/switchyard.yaml", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("# built by test_api\n", fp);
    fclose(fp);
    cfg->path = xstrdup(path);
    cfg->base_dir = xstrdup(dir);
    cfg->broker.listen = xstrdup("127.0.0.1:0");
    cfg->broker.listen_host = xstrdup("127.0.0.1");
    cfg->broker.listen_port = 0;
    snprintf(path, sizeof(path), "%s/data", dir);
    cfg->broker.data_dir = xstrdup(path);
    cfg->broker.max_concurrency = 10;
    cfg->broker.auth_token = token ? xstrdup(token) : NULL;
    cfg->broker.async_queue = xstrdup("sqlite");
    cfg->broker.log_level = xstrdup("error");
    cfg->broker.shutdown_grace_ms = 100;
    cfg->broker.region = xstrdup("us-east-1");
    cfg->broker.account_id = xstrdup("000000000000");
    cfg->functions = calloc(3, sizeof(*cfg->functions));
    assert_non_null(cfg->functions);
    add_function(cfg, dir, "alpha", -1);
    add_function(cfg, dir, "beta", 0); /* reserved 0: every invoke is throttled, no spawn */
    add_function(cfg, dir, "gamma", 5);
    return cfg;
}

static void free_cfg(struct cfg *cfg)
{
    for (size_t i = 0; i < cfg->n_functions; i++) {
        free(cfg->functions[i].name);
        free(cfg->functions[i].handler);
        free(cfg->functions[i].code);
    }
    free(cfg->functions);
    free(cfg->path);
    free(cfg->base_dir);
    free(cfg->broker.listen);
    free(cfg->broker.listen_host);
    free(cfg->broker.data_dir);
    free(cfg->broker.auth_token);
    free(cfg->broker.async_queue);
    free(cfg->broker.log_level);
    free(cfg->broker.region);
    free(cfg->broker.account_id);
    free(cfg);
}

static int setup_with(void **state, const char *token)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    struct sy_error err;

    assert_non_null(fx);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/sy-test-api-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    fx->cfg = make_cfg(fx->dir, token);
    fx->base = event_base_new();
    assert_non_null(fx->base);
    fx->dsp = dispatcher_create(fx->base, fx->cfg, "/nonexistent-runtimes", &err);
    assert_non_null(fx->dsp);
    fx->api = api_create(fx->cfg, fx->dsp, &err);
    assert_non_null(fx->api);
    fx->srv = httpd_create(fx->base, "127.0.0.1", 0, API_MAX_BODY, api_handle, fx->api, &err);
    assert_non_null(fx->srv);
    fx->port = httpd_port(fx->srv);
    *state = fx;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, NULL);
}

static int setup_token(void **state)
{
    return setup_with(state, "s3cret");
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    char cmd[128];

    httpd_destroy(fx->srv);
    dispatcher_destroy(fx->dsp);
    api_destroy(fx->api);
    event_base_free(fx->base);
    free_cfg(fx->cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

struct script_ctx {
    struct fixture *fx;
    int ok;
    char msg[512];
};

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(ctx->msg, sizeof(ctx->msg), "line %d: %s", __LINE__, #cond);                  \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_BODY(r, expected)                                                                    \
    do {                                                                                           \
        if ((r).body == NULL || strcmp((r).body, expected) != 0) {                                 \
            snprintf(ctx->msg, sizeof(ctx->msg), "line %d: body %s, expected %s", __LINE__,        \
                     (r).body ? (r).body : "(none)", expected);                                    \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* One request on a fresh connection; EXTRA is more header lines (each ending in \r\n). */
static int request(int port, const char *method, const char *path, const char *extra,
                   const char *body, struct lc_resp *r)
{
    int fd = lc_connect(port);
    char head[8192];
    int rc;

    if (fd < 0)
        return -1;
    snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n",
             method, path, extra ? extra : "", body ? strlen(body) : 0);
    rc = lc_send_str(fd, head);
    if (rc == 0 && body != NULL)
        rc = lc_send_str(fd, body);
    if (rc == 0)
        rc = lc_read(fd, r);
    close(fd);
    return rc;
}

static int starts_with(const char *s, const char *prefix)
{
    return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

static int has_header(const struct lc_resp *r, const char *name, const char *value)
{
    char v[512];

    return lc_header(r, name, v, sizeof(v)) != NULL && strcmp(v, value) == 0;
}

#define INV(fn) "/2015-03-31/functions/" fn "/invocations"

static void script_invoke_errors(void *arg)
{
    struct script_ctx *ctx = arg;
    int port = ctx->fx->port;
    struct lc_resp r = {0};
    char v[128];

    /* Unknown function: 404 with Lambda's exact body (Message capitalised). */
    CHECK(request(port, "POST", INV("nope"), NULL, "{}", &r) == 0);
    CHECK(r.status == 404);
    CHECK(has_header(&r, "x-amzn-ErrorType", "ResourceNotFoundException"));
    CHECK(lc_header(&r, "x-amzn-RequestId", v, sizeof(v)) != NULL && strlen(v) == 36);
    CHECK_BODY(r, "{\"Type\":\"User\",\"Message\":\"Function not found: "
                  "arn:aws:lambda:us-east-1:000000000000:function:nope\"}");
    lc_free(&r);

    /* Any qualifier but $LATEST does not exist. */
    CHECK(request(port, "POST", INV("alpha") "?Qualifier=prod", NULL, "{}", &r) == 0);
    CHECK(r.status == 404);
    CHECK_BODY(r, "{\"Type\":\"User\",\"Message\":\"Function not found: "
                  "arn:aws:lambda:us-east-1:000000000000:function:alpha:prod\"}");
    lc_free(&r);

    /* Qualifier in the name and in the query disagree. */
    CHECK(request(port, "POST", INV("alpha:%24LATEST") "?Qualifier=prod", NULL, "{}", &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "InvalidParameterValueException"));
    CHECK_BODY(r, "{\"Type\":\"User\",\"message\":\"The derived qualifier from the function "
                  "name does not match the specified qualifier.\"}");
    lc_free(&r);

    /* Another account's ARN: not found, with that ARN. */
    CHECK(request(port, "POST",
                  INV("arn%3Aaws%3Alambda%3Aus-east-1%3A111111111111%3Afunction%3Aalpha"), NULL,
                  "{}", &r) == 0);
    CHECK(r.status == 404);
    CHECK(strstr(r.body, "111111111111:function:alpha\"") != NULL);
    lc_free(&r);

    /* Malformed name. */
    CHECK(request(port, "POST", INV("bad%20name"), NULL, "{}", &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "ValidationException"));
    lc_free(&r);

    /* Body that is not JSON. */
    CHECK(request(port, "POST", INV("alpha"), NULL, "{not json", &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "InvalidRequestContentException"));
    CHECK(starts_with(r.body, "{\"Type\":\"User\",\"message\":\"Could not parse request body "
                              "into json: "));
    lc_free(&r);

    /* Event without an async queue (this fixture has none): refused, and said so. */
    CHECK(request(port, "POST", INV("alpha"), "X-Amz-Invocation-Type: Event\r\n", "{}", &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "InvalidParameterValueException"));
    CHECK(strstr(r.body, "Asynchronous invocation (X-Amz-Invocation-Type: Event) is not "
                         "available on this broker") != NULL);
    lc_free(&r);

    /* Unknown invocation type and log type. */
    CHECK(request(port, "POST", INV("alpha"), "X-Amz-Invocation-Type: Later\r\n", "{}", &r) == 0);
    CHECK(r.status == 400);
    lc_free(&r);
    CHECK(request(port, "POST", INV("alpha"), "X-Amz-Log-Type: All\r\n", "{}", &r) == 0);
    CHECK(r.status == 400);
    lc_free(&r);

    /* Client context: not base64, base64 of something that is not an object, too long. */
    CHECK(request(port, "POST", INV("alpha"), "X-Amz-Client-Context: %%%\r\n", "{}", &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "InvalidRequestContentException"));
    lc_free(&r);
    CHECK(request(port, "POST", INV("alpha"), "X-Amz-Client-Context: WzFd\r\n", "{}", &r) == 0);
    CHECK(r.status == 400);
    lc_free(&r);
    {
        char extra[4000] = "X-Amz-Client-Context: ";
        size_t n = strlen(extra);

        memset(extra + n, 'A', 3584);
        strcpy(extra + n + 3584, "\r\n");
        CHECK(request(port, "POST", INV("alpha"), extra, "{}", &r) == 0);
        CHECK(r.status == 400);
        lc_free(&r);
    }

    /* DryRun: the function exists and the body parses: 204, nothing runs. */
    CHECK(request(port, "POST", INV("alpha"),
                  "X-Amz-Invocation-Type: DryRun\r\nX-Amz-Client-Context: eyJhIjoxfQ==\r\n",
                  "{\"a\":1}", &r) == 0);
    CHECK(r.status == 204);
    lc_free(&r);
    CHECK(request(port, "POST", INV("000000000000%3Afunction%3Aalpha%3A%24LATEST"),
                  "X-Amz-Invocation-Type: DryRun\r\n", "", &r) == 0);
    CHECK(r.status == 204);
    lc_free(&r);

    /* Throttled (reserved concurrency 0): 429 from the dispatcher's done callback. */
    CHECK(request(port, "POST", INV("beta"), NULL, "{}", &r) == 0);
    CHECK(r.status == 429);
    CHECK(has_header(&r, "x-amzn-ErrorType", "TooManyRequestsException"));
    CHECK_BODY(r, "{\"Reason\":\"ReservedFunctionConcurrentInvocationLimitExceeded\","
                  "\"Type\":\"User\",\"message\":\"Rate Exceeded.\"}");
    lc_free(&r);

    /* Unknown route, wrong method. */
    CHECK(request(port, "GET", "/nope", NULL, NULL, &r) == 0);
    CHECK(r.status == 404);
    CHECK(has_header(&r, "x-amzn-ErrorType", "UnknownOperationException"));
    lc_free(&r);
    CHECK(request(port, "GET", INV("alpha"), NULL, NULL, &r) == 0);
    CHECK(r.status == 405);
    CHECK(has_header(&r, "Allow", "POST"));
    lc_free(&r);
    ctx->ok = 1;
out:
    lc_free(&r);
}

static void test_invoke_errors(void **state)
{
    struct fixture *fx = *state;
    struct script_ctx ctx = {.fx = fx};
    struct dispatcher_stats st;

    assert_int_equal(lc_run_script(fx->base, script_invoke_errors, &ctx), 0);
    if (!ctx.ok)
        fail_msg("%s", ctx.msg);
    dispatcher_stats(fx->dsp, &st);
    assert_int_equal(st.throttles, 1);
    assert_int_equal(st.cold_starts, 0);
    assert_int_equal(st.in_flight, 0);
}

static void script_too_large(void *arg)
{
    struct script_ctx *ctx = arg;
    struct lc_resp r = {0};
    int fd = lc_connect(ctx->fx->port);
    size_t n = SY_SYNC_PAYLOAD_MAX + 1;
    char *big = malloc(n);
    char head[256];

    CHECK(fd >= 0 && big != NULL);
    memset(big, ' ', n);
    big[0] = '"';
    big[n - 1] = '"';
    snprintf(head, sizeof(head),
             "POST " INV("alpha") " HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", n);
    CHECK(lc_send_str(fd, head) == 0);
    CHECK(lc_send(fd, big, n) == 0);
    CHECK(lc_read(fd, &r) == 0);
    CHECK(r.status == 413);
    CHECK(has_header(&r, "x-amzn-ErrorType", "RequestEntityTooLargeException"));
    CHECK_BODY(r, "{\"Type\":\"User\",\"message\":\"Request must be smaller than 6291456 bytes "
                  "for the InvokeFunction operation\"}");
    lc_free(&r);
    close(fd);
    fd = -1;

    /* Far over httpd's buffer limit: the body is never read, the answer is the same. */
    fd = lc_connect(ctx->fx->port);
    CHECK(fd >= 0);
    CHECK(lc_send_str(fd, "POST " INV("alpha") " HTTP/1.1\r\nHost: t\r\n"
                                               "Content-Length: 10000000\r\n\r\n") == 0);
    for (size_t sent = 0; sent < 10000000; sent += n)
        CHECK(lc_send(fd, big, sent + n > 10000000 ? 10000000 - sent : n) == 0);
    CHECK(lc_read(fd, &r) == 0);
    CHECK(r.status == 413);
    ctx->ok = 1;
out:
    lc_free(&r);
    free(big);
    if (fd >= 0)
        close(fd);
}

static void test_too_large(void **state)
{
    struct fixture *fx = *state;
    struct script_ctx ctx = {.fx = fx};

    assert_int_equal(lc_run_script(fx->base, script_too_large, &ctx), 0);
    if (!ctx.ok)
        fail_msg("%s", ctx.msg);
}

static void script_functions(void *arg)
{
    struct script_ctx *ctx = arg;
    int port = ctx->fx->port;
    struct lc_resp r = {0};

    CHECK(request(port, "GET", "/2015-03-31/functions/?MaxItems=2", NULL, NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK(strstr(r.body, "\"FunctionName\":\"alpha\"") != NULL);
    CHECK(strstr(r.body, "\"FunctionArn\":\"arn:aws:lambda:us-east-1:000000000000:function:"
                         "alpha:$LATEST\"") != NULL);
    CHECK(strstr(r.body, "\"FunctionName\":\"beta\"") != NULL);
    CHECK(strstr(r.body, "\"FunctionName\":\"gamma\"") == NULL);
    CHECK(strstr(r.body, "\"NextMarker\":\"gamma\"") != NULL);
    CHECK(strstr(r.body, "\"State\"") == NULL);
    CHECK(strstr(r.body, "\"Runtime\":\"python3.11\"") != NULL);
    CHECK(strstr(r.body, "\"LastModified\":\"") != NULL);
    CHECK(strstr(r.body, ".000+0000\"") != NULL);
    lc_free(&r);
    CHECK(request(port, "GET", "/2015-03-31/functions?Marker=gamma&MaxItems=2", NULL, NULL, &r) ==
          0);
    CHECK(r.status == 200);
    CHECK(strstr(r.body, "\"FunctionName\":\"gamma\"") != NULL);
    CHECK(strstr(r.body, "\"FunctionName\":\"alpha\"") == NULL);
    CHECK(strstr(r.body, "NextMarker") == NULL);
    lc_free(&r);
    CHECK(request(port, "GET", "/2015-03-31/functions?MaxItems=0", NULL, NULL, &r) == 0);
    CHECK(r.status == 400);
    lc_free(&r);

    CHECK(request(port, "GET", "/2015-03-31/functions/gamma", NULL, NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK(strstr(r.body, "\"Configuration\":{\"FunctionName\":\"gamma\"") != NULL);
    CHECK(strstr(r.body, "\"FunctionArn\":\"arn:aws:lambda:us-east-1:000000000000:function:"
                         "gamma\"") != NULL);
    CHECK(strstr(r.body, "\"State\":\"Active\"") != NULL);
    CHECK(strstr(r.body, "\"LastUpdateStatus\":\"Successful\"") != NULL);
    CHECK(strstr(r.body, "\"Concurrency\":{\"ReservedConcurrentExecutions\":5}") != NULL);
    CHECK(strstr(r.body, "\"CodeSize\":46") != NULL); /* app.py written by add_function() */
    lc_free(&r);
    CHECK(request(port, "GET", "/2015-03-31/functions/alpha", NULL, NULL, &r) == 0);
    CHECK(strstr(r.body, "Concurrency") == NULL);
    lc_free(&r);
    CHECK(request(port, "GET", "/2015-03-31/functions/alpha/configuration", NULL, NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK(starts_with(r.body, "{\"FunctionName\":\"alpha\""));
    lc_free(&r);
    CHECK(request(port, "GET", "/2015-03-31/functions/nope", NULL, NULL, &r) == 0);
    CHECK(r.status == 404);
    CHECK(has_header(&r, "x-amzn-ErrorType", "ResourceNotFoundException"));
    lc_free(&r);
    CHECK(request(port, "GET", "/2017-10-31/functions/gamma/concurrency", NULL, NULL, &r) == 0);
    CHECK_BODY(r, "{\"ReservedConcurrentExecutions\":5}");
    lc_free(&r);

    CHECK(request(port, "GET", "/healthz", NULL, NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK(starts_with(r.body, "{\"status\":\"ok\",\"functions\":3,"));
    CHECK(strstr(r.body, "\"functions_detail\":{\"alpha\":{\"environments\":0,\"busy\":0}") !=
          NULL);
    lc_free(&r);
    CHECK(request(port, "GET", "/metrics", NULL, NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK(strstr(r.body, "# TYPE switchyard_invocations_total counter\n"
                         "switchyard_invocations_total 0\n") != NULL);
    CHECK(strstr(r.body, "switchyard_function_environments{function=\"beta\"} 0\n") != NULL);
    ctx->ok = 1;
out:
    lc_free(&r);
}

static void test_functions(void **state)
{
    struct fixture *fx = *state;
    struct script_ctx ctx = {.fx = fx};

    assert_int_equal(lc_run_script(fx->base, script_functions, &ctx), 0);
    if (!ctx.ok)
        fail_msg("%s", ctx.msg);
}

#define ESM "/2015-03-31/event-source-mappings"
#define ESM_UUID "6f1c2b9e-0000-4000-8000-000000000001"

/* Without mappings (api_set_mappings() never called): an empty list, 404s, refusals. */
static void script_esm(void *arg)
{
    struct script_ctx *ctx = arg;
    int port = ctx->fx->port;
    struct lc_resp r = {0};

    CHECK(request(port, "GET", ESM "/", NULL, NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK_BODY(r, "{\"EventSourceMappings\":[]}");
    lc_free(&r);
    CHECK(request(port, "GET", ESM "?FunctionName=alpha&MaxItems=5", NULL, NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK_BODY(r, "{\"EventSourceMappings\":[]}");
    lc_free(&r);
    CHECK(request(port, "GET", ESM "/?MaxItems=0", NULL, NULL, &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "ValidationException"));
    lc_free(&r);
    CHECK(request(port, "GET", ESM "/?MaxItems=10001", NULL, NULL, &r) == 0);
    CHECK(r.status == 400);
    lc_free(&r);
    CHECK(request(port, "GET", ESM "/?FunctionName=bad%20name", NULL, NULL, &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "ValidationException"));
    lc_free(&r);
    CHECK(request(port, "GET", ESM "/?Marker=" ESM_UUID, NULL, NULL, &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "InvalidParameterValueException"));
    lc_free(&r);

    /* Lambda's 404 for a mapping that does not exist: Message, capital M. */
    CHECK(request(port, "GET", ESM "/" ESM_UUID, NULL, NULL, &r) == 0);
    CHECK(r.status == 404);
    CHECK(has_header(&r, "x-amzn-ErrorType", "ResourceNotFoundException"));
    CHECK_BODY(r, "{\"Type\":\"User\",\"Message\":\"The resource you requested does not "
                  "exist.\"}");
    lc_free(&r);
    CHECK(request(port, "PUT", ESM "/" ESM_UUID, "Content-Type: application/json\r\n",
                  "{\"Enabled\":false}", &r) == 0);
    CHECK(r.status == 404);
    CHECK(has_header(&r, "x-amzn-ErrorType", "ResourceNotFoundException"));
    lc_free(&r);
    /* A body that is not JSON is refused before the mapping is looked up. */
    CHECK(request(port, "PUT", ESM "/" ESM_UUID, NULL, "{\"Enabled\":", &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "InvalidRequestContentException"));
    lc_free(&r);
    CHECK(request(port, "PUT", ESM "/" ESM_UUID, NULL, "[true]", &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "InvalidRequestContentException"));
    lc_free(&r);

    /* Without mappings, Create is refused and says so; a body that is not JSON first. */
    CHECK(request(port, "POST", ESM "/", "Content-Type: application/json\r\n",
                  "{\"FunctionName\":\"alpha\",\"EventSourceArn\":\"arn:x\"}", &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "InvalidParameterValueException"));
    CHECK(strstr(r.body, "runs no event source mappings") != NULL);
    CHECK(strstr(r.body, "\"message\":") != NULL);
    lc_free(&r);
    CHECK(request(port, "POST", ESM, NULL, "{\"FunctionName\":", &r) == 0);
    CHECK(r.status == 400);
    CHECK(has_header(&r, "x-amzn-ErrorType", "InvalidRequestContentException"));
    lc_free(&r);
    CHECK(request(port, "DELETE", ESM "/" ESM_UUID, NULL, NULL, &r) == 0);
    CHECK(r.status == 404);
    lc_free(&r);

    /* No mappings: /healthz has no `mappings` object, /metrics no mapping families. */
    CHECK(request(port, "GET", "/healthz", NULL, NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK(strstr(r.body, "\"mappings\"") == NULL);
    lc_free(&r);
    CHECK(request(port, "GET", "/metrics", NULL, NULL, &r) == 0);
    CHECK(strstr(r.body, "switchyard_mapping_") == NULL);
    ctx->ok = 1;
out:
    lc_free(&r);
}

static void test_esm(void **state)
{
    struct fixture *fx = *state;
    struct script_ctx ctx = {.fx = fx};

    assert_int_equal(lc_run_script(fx->base, script_esm, &ctx), 0);
    if (!ctx.ok)
        fail_msg("%s", ctx.msg);
}

/* Per-function counters and the duration histogram; a throttle counts but has no duration. */
static void script_function_metrics(void *arg)
{
    struct script_ctx *ctx = arg;
    int port = ctx->fx->port;
    struct lc_resp r = {0};

    CHECK(request(port, "GET", "/metrics", NULL, NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK(strstr(r.body, "# TYPE switchyard_function_invocations_total counter\n"
                         "switchyard_function_invocations_total{function=\"alpha\"} 0\n") !=
          NULL);
    CHECK(strstr(r.body, "# TYPE switchyard_function_duration_milliseconds histogram\n") != NULL);
    CHECK(strstr(r.body, "switchyard_function_duration_milliseconds_bucket{function=\"alpha\","
                         "le=\"1\"} 0\n") != NULL);
    CHECK(strstr(r.body, "switchyard_function_duration_milliseconds_bucket{function=\"alpha\","
                         "le=\"900000\"} 0\n") != NULL);
    CHECK(strstr(r.body, "switchyard_function_duration_milliseconds_bucket{function=\"alpha\","
                         "le=\"+Inf\"} 0\n") != NULL);
    CHECK(strstr(r.body, "switchyard_function_duration_milliseconds_sum{function=\"gamma\"} "
                         "0.000\n") != NULL);
    lc_free(&r);

    /* beta has reserved concurrency 0: throttled, never run. */
    CHECK(request(port, "POST", INV("beta"), NULL, "{}", &r) == 0);
    CHECK(r.status == 429);
    lc_free(&r);
    CHECK(request(port, "GET", "/metrics", NULL, NULL, &r) == 0);
    CHECK(strstr(r.body, "switchyard_function_invocations_total{function=\"beta\"} 1\n") != NULL);
    CHECK(strstr(r.body, "switchyard_function_throttles_total{function=\"beta\"} 1\n") != NULL);
    CHECK(strstr(r.body, "switchyard_function_invocation_errors_total{function=\"beta\"} 0\n") !=
          NULL);
    CHECK(strstr(r.body, "switchyard_function_invocations_total{function=\"alpha\"} 0\n") !=
          NULL);
    CHECK(strstr(r.body, "switchyard_function_duration_milliseconds_count{function=\"beta\"} "
                         "0\n") != NULL);
    ctx->ok = 1;
out:
    lc_free(&r);
}

static void test_function_metrics(void **state)
{
    struct fixture *fx = *state;
    struct script_ctx ctx = {.fx = fx};
    struct function_stats fs;

    assert_int_equal(lc_run_script(fx->base, script_function_metrics, &ctx), 0);
    if (!ctx.ok)
        fail_msg("%s", ctx.msg);
    function_stats(dispatcher_function(fx->dsp, "beta"), &fs);
    assert_int_equal(fs.invocations, 1);
    assert_int_equal(fs.throttles, 1);
    assert_int_equal(fs.durations, 0);
    assert_true(function_duration_buckets_ms[0] < function_duration_buckets_ms[1]);
}

static void script_auth(void *arg)
{
    struct script_ctx *ctx = arg;
    int port = ctx->fx->port;
    struct lc_resp r = {0};

    /* /healthz needs no token. */
    CHECK(request(port, "GET", "/healthz", NULL, NULL, &r) == 0);
    CHECK(r.status == 200);
    lc_free(&r);
    /* Everything else does, routes and functions unknown or not. */
    CHECK(request(port, "POST", INV("alpha"), "X-Amz-Invocation-Type: DryRun\r\n", "{}", &r) == 0);
    CHECK(r.status == 401);
    CHECK(has_header(&r, "x-amzn-ErrorType", "UnrecognizedClientException"));
    lc_free(&r);
    CHECK(request(port, "GET", "/nope", NULL, NULL, &r) == 0);
    CHECK(r.status == 401);
    lc_free(&r);
    CHECK(request(port, "GET", "/metrics", "Authorization: Bearer wrong\r\n", NULL, &r) == 0);
    CHECK(r.status == 401);
    lc_free(&r);
    /* A throttle would prove the function was reached: without a token it must not be. */
    CHECK(request(port, "POST", INV("beta"), "Authorization: Bearer s3cre\r\n", "{}", &r) == 0);
    CHECK(r.status == 401);
    lc_free(&r);
    CHECK(request(port, "POST", INV("alpha"),
                  "X-Amz-Invocation-Type: DryRun\r\nAuthorization: Bearer s3cret\r\n", "{}",
                  &r) == 0);
    CHECK(r.status == 204);
    lc_free(&r);
    CHECK(request(port, "GET", "/2015-03-31/functions/",
                  "Authorization: AWS4-HMAC-SHA256 Credential=s3cret/20240101/us-east-1/lambda/"
                  "aws4_request, SignedHeaders=host;x-amz-date, Signature=0123\r\n",
                  NULL, &r) == 0);
    CHECK(r.status == 200);
    lc_free(&r);
    ctx->ok = 1;
out:
    lc_free(&r);
}

static void test_auth(void **state)
{
    struct fixture *fx = *state;
    struct script_ctx ctx = {.fx = fx};
    struct dispatcher_stats st;

    assert_int_equal(lc_run_script(fx->base, script_auth, &ctx), 0);
    if (!ctx.ok)
        fail_msg("%s", ctx.msg);
    dispatcher_stats(fx->dsp, &st);
    assert_int_equal(st.invocations, 0);
}

static void script_draining(void *arg)
{
    struct script_ctx *ctx = arg;
    int port = ctx->fx->port;
    struct lc_resp r = {0};

    CHECK(request(port, "POST", INV("alpha"), NULL, "{}", &r) == 0);
    CHECK(r.status == 503);
    CHECK(has_header(&r, "x-amzn-ErrorType", "ServiceException"));
    lc_free(&r);
    CHECK(request(port, "GET", "/healthz", NULL, NULL, &r) == 0);
    CHECK(r.status == 503);
    CHECK(starts_with(r.body, "{\"status\":\"draining\""));
    ctx->ok = 1;
out:
    lc_free(&r);
}

static void test_draining(void **state)
{
    struct fixture *fx = *state;
    struct script_ctx ctx = {.fx = fx};

    api_set_draining(fx->api);
    assert_int_equal(lc_run_script(fx->base, script_draining, &ctx), 0);
    if (!ctx.ok)
        fail_msg("%s", ctx.msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fname),
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_route_find),
        cmocka_unit_test(test_auth_ok),
        cmocka_unit_test(test_httpc_url),
        cmocka_unit_test_setup_teardown(test_invoke_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_functions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_draining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_esm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_function_metrics, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
