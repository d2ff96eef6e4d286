/*
 * tests/unit/test_rtapi.c - the Runtime API state machine (dispatcher/rtapi.c), driven by a
 * scripted runtime over real loopback HTTP: next held until an event exists, the event's
 * headers, response/error/init-error posts, and every kind of misbehaviour (unknown request
 * id, double response, a second `next`, an oversized response, an unknown path).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dispatcher/dispatcher.h"
#include "dispatcher/rtapi.h"
#include "loopclient.h"

struct owner {
    struct event_base *base;
    struct rtapi *api;
    int port;
    int nexts;
    int results;
    enum rtapi_result_kind last_kind;
    char last_body[256];
    char last_etype[128];
    char last_ctype[128];
    int init_errors;
    char init_etype[128];
    int have_event; /* deliver on the next `next` */
    char event_id[64];
};

static void deliver(struct owner *o)
{
    struct rtapi_event ev = {
        .request_id = o->event_id,
        .payload = "{\"k\":1}",
        .payload_len = 7,
        .deadline_ms = 1700000000123ull,
        .function_arn = "arn:aws:lambda:us-east-1:000000000000:function:f",
        .trace_id = "Root=1-abc;Parent=def;Sampled=0",
        .client_context = "{\"custom\":{}}",
    };

    assert_int_equal(rtapi_deliver(o->api, &ev), 0);
    o->have_event = 0;
}

static void on_next(void *arg)
{
    struct owner *o = arg;

    o->nexts++;
    if (o->have_event)
        deliver(o);
}

static void on_result(void *arg, enum rtapi_result_kind kind, char *body, size_t len,
                      const char *ctype, const char *etype)
{
    struct owner *o = arg;

    o->results++;
    o->last_kind = kind;
    snprintf(o->last_body, sizeof(o->last_body), "%.*s", (int)len, body ? body : "");
    snprintf(o->last_etype, sizeof(o->last_etype), "%s", etype ? etype : "");
    snprintf(o->last_ctype, sizeof(o->last_ctype), "%s", ctype ? ctype : "");
    free(body);
}

static void on_init_error(void *arg, char *body, size_t len, const char *etype)
{
    struct owner *o = arg;

    o->init_errors++;
    snprintf(o->init_etype, sizeof(o->init_etype), "%s", etype ? etype : "");
    free(body);
}

static const struct rtapi_ops ops = {
    .on_next = on_next,
    .on_result = on_result,
    .on_init_error = on_init_error,
};

static int setup(void **state)
{
    struct owner *o = calloc(1, sizeof(*o));
    struct sy_error err;

    o->base = event_base_new();
    o->api = rtapi_create(o->base, &ops, o, &err);
    assert_non_null(o->api);
    o->port = rtapi_port(o->api);
    *state = o;
    return 0;
}

static int teardown(void **state)
{
    struct owner *o = *state;

    rtapi_destroy(o->api);
    event_base_free(o->base);
    free(o);
    return 0;
}

struct script_ctx {
    struct owner *o;
    int ok;
    char msg[256];
};

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(ctx->msg, sizeof(ctx->msg), "line %d: %s", __LINE__, #cond);                 \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

static int post(int fd, const char *path, const char *extra_hdrs, const char *body,
                struct lc_resp *r)
{
    char req[1024];

    snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: rt\r\n%sContent-Length: %zu\r\n\r\n%s",
             path, extra_hdrs, strlen(body), body);
    if (lc_send_str(fd, req) != 0)
        return -1;
    return lc_read(fd, r);
}

static void script_round_trip(void *arg)
{
    struct script_ctx *ctx = arg;
    int fd = lc_connect(ctx->o->port);
    struct lc_resp r = {0};
    char h[256];

    CHECK(fd >= 0);
    CHECK(lc_send_str(fd, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n") == 0);
    CHECK(lc_read(fd, &r) == 0);
    CHECK(r.status == 200);
    CHECK(strcmp(r.body, "{\"k\":1}") == 0);
    CHECK(lc_header(&r, "Lambda-Runtime-Aws-Request-Id", h, sizeof(h)) &&
          strcmp(h, "req-1") == 0);
    CHECK(lc_header(&r, "Lambda-Runtime-Deadline-Ms", h, sizeof(h)) &&
          strcmp(h, "1700000000123") == 0);
    CHECK(lc_header(&r, "Lambda-Runtime-Invoked-Function-Arn", h, sizeof(h)) &&
          strcmp(h, "arn:aws:lambda:us-east-1:000000000000:function:f") == 0);
    CHECK(lc_header(&r, "Lambda-Runtime-Trace-Id", h, sizeof(h)) != NULL);
    CHECK(lc_header(&r, "Lambda-Runtime-Client-Context", h, sizeof(h)) &&
          strcmp(h, "{\"custom\":{}}") == 0);
    lc_free(&r);

    /* A wrong id is refused and does not end the invocation... */
    CHECK(post(fd, "/2018-06-01/runtime/invocation/nope/response", "", "{}", &r) == 0);
    CHECK(r.status == 400);
    CHECK(strstr(r.body, "InvalidRequestID") != NULL);
    lc_free(&r);
    /* ...a `next` before answering is an invalid transition... */
    CHECK(lc_send_str(fd, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n") == 0);
    CHECK(lc_read(fd, &r) == 0);
    CHECK(r.status == 403);
    lc_free(&r);
    /* ...the right id is accepted once... */
    CHECK(post(fd, "/2018-06-01/runtime/invocation/req-1/response",
               "Content-Type: text/plain\r\n", "\"done\"", &r) == 0);
    CHECK(r.status == 202);
    lc_free(&r);
    /* ...and a second answer for it is an invalid transition. */
    CHECK(post(fd, "/2018-06-01/runtime/invocation/req-1/error", "", "{}", &r) == 0);
    CHECK(r.status == 403);
    lc_free(&r);
    CHECK(post(fd, "/2020-01-01/extension/register", "", "{}", &r) == 0);
    CHECK(r.status == 404);
    ctx->ok = 1;
out:
    lc_free(&r);
    if (fd >= 0)
        close(fd);
}

static void test_round_trip_and_misbehaviour(void **state)
{
    struct owner *o = *state;
    struct script_ctx ctx = {.o = o};

    o->have_event = 1;
    snprintf(o->event_id, sizeof(o->event_id), "req-1");
    assert_int_equal(lc_run_script(o->base, script_round_trip, &ctx), 0);
    if (!ctx.ok)
        fail_msg("%s", ctx.msg);
    assert_int_equal(o->nexts, 1);
    assert_int_equal(o->results, 1);
    assert_int_equal(o->last_kind, RTAPI_RESPONSE);
    assert_string_equal(o->last_body, "\"done\"");
    assert_string_equal(o->last_ctype, "text/plain");
}

static void script_error(void *arg)
{
    struct script_ctx *ctx = arg;
    int fd = lc_connect(ctx->o->port);
    struct lc_resp r = {0};

    CHECK(fd >= 0);
    CHECK(lc_send_str(fd, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n") == 0);
    CHECK(lc_read(fd, &r) == 0);
    CHECK(r.status == 200);
    lc_free(&r);
    CHECK(post(fd, "/2018-06-01/runtime/invocation/req-2/error",
               "Lambda-Runtime-Function-Error-Type: Runtime.Custom\r\n",
               "{\"errorType\":\"ValueError\",\"errorMessage\":\"bad\"}", &r) == 0);
    CHECK(r.status == 202);
    lc_free(&r);
    CHECK(post(fd, "/2018-06-01/runtime/init/error",
               "Lambda-Runtime-Function-Error-Type: Runtime.ImportModuleError\r\n",
               "{\"errorType\":\"Runtime.ImportModuleError\",\"errorMessage\":\"x\"}", &r) == 0);
    CHECK(r.status == 202);
    ctx->ok = 1;
out:
    lc_free(&r);
    if (fd >= 0)
        close(fd);
}

static void test_error_and_init_error(void **state)
{
    struct owner *o = *state;
    struct script_ctx ctx = {.o = o};

    o->have_event = 1;
    snprintf(o->event_id, sizeof(o->event_id), "req-2");
    assert_int_equal(lc_run_script(o->base, script_error, &ctx), 0);
    if (!ctx.ok)
        fail_msg("%s", ctx.msg);
    assert_int_equal(o->results, 1);
    assert_int_equal(o->last_kind, RTAPI_ERROR);
    assert_string_equal(o->last_etype, "Runtime.Custom");
    assert_non_null(strstr(o->last_body, "ValueError"));
    assert_int_equal(o->init_errors, 1);
    assert_string_equal(o->init_etype, "Runtime.ImportModuleError");
}

static void script_too_large(void *arg)
{
    struct script_ctx *ctx = arg;
    int fd = lc_connect(ctx->o->port);
    struct lc_resp r = {0};
    size_t big = SY_RESPONSE_PAYLOAD_MAX + 1;
    char *body = malloc(big);
    char head[256];

    memset(body, 'x', big);
    CHECK(fd >= 0);
    CHECK(lc_send_str(fd, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n") == 0);
    CHECK(lc_read(fd, &r) == 0);
    lc_free(&r);
    snprintf(head, sizeof(head),
             "POST /2018-06-01/runtime/invocation/req-3/response HTTP/1.1\r\n"
             "Content-Length: %zu\r\n\r\n",
             big);
    CHECK(lc_send_str(fd, head) == 0);
    CHECK(lc_send(fd, body, big) == 0);
    CHECK(lc_read(fd, &r) == 0);
    CHECK(r.status == 413);
    CHECK(strstr(r.body, "RequestEntityTooLarge") != NULL);
    lc_free(&r);
    /* The runtime carries on: the next `next` is accepted (held, so don't wait for it). */
    ctx->ok = 1;
out:
    free(body);
    lc_free(&r);
    if (fd >= 0)
        close(fd);
}

static void test_oversized_response(void **state)
{
    struct owner *o = *state;
    struct script_ctx ctx = {.o = o};

    o->have_event = 1;
    snprintf(o->event_id, sizeof(o->event_id), "req-3");
    assert_int_equal(lc_run_script(o->base, script_too_large, &ctx), 0);
    if (!ctx.ok)
        fail_msg("%s", ctx.msg);
    assert_int_equal(o->results, 1);
    assert_int_equal(o->last_kind, RTAPI_TOO_LARGE);
}

static void script_next_then_close(void *arg)
{
    struct script_ctx *ctx = arg;
    int fd = lc_connect(ctx->o->port);

    CHECK(fd >= 0);
    CHECK(lc_send_str(fd, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n") == 0);
    ctx->ok = 1;
out:
    if (fd >= 0)
        close(fd);
}

static void test_deliver_needs_a_held_next(void **state)
{
    struct owner *o = *state;
    struct script_ctx ctx = {.o = o};
    struct rtapi_event ev = {.request_id = "r", .payload = "{}", .payload_len = 2,
                             .function_arn = "a", .trace_id = "t"};

    assert_false(rtapi_ready(o->api));
    assert_int_equal(rtapi_deliver(o->api, &ev), SY_ESTATE);
    /* A `next` whose connection dies is forgotten: nothing is delivered into the void. */
    assert_int_equal(lc_run_script(o->base, script_next_then_close, &ctx), 0);
    assert_true(ctx.ok);
    for (int i = 0; i < 2000 && (o->nexts < 1 || rtapi_ready(o->api)); i++) {
        event_base_loop(o->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    assert_int_equal(o->nexts, 1);
    assert_false(rtapi_ready(o->api));
    assert_int_equal(rtapi_deliver(o->api, &ev), SY_ESTATE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_and_misbehaviour, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_and_init_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliver_needs_a_held_next, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
