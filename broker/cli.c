/*
 * broker/cli.c - the `switchyard` command line (see cli.h and `switchyard --help`).
 *
 * `run`, `validate` and `filter test` work on a config file; `invoke`, `status`, `dlq` and
 * `mappings` talk to a running broker over its control API with the blocking client of
 * httpc.c. Which broker: `--endpoint`, else
 * $SWITCHYARD_ENDPOINT, else the endpoint recorded in <data_dir>/broker.json of the config
 * (`--config FILE`, or ./switchyard.yaml when present), else the config's listen address when
 * its port is fixed, else http://127.0.0.1:9001. The token: `--token`, else $SWITCHYARD_TOKEN,
 * else the config's auth_token.
 *
 * Exit statuses: 0 success, 1 failure, 2 usage error; every failure prints one line
 * `switchyard: ...` on stderr.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config/config.h"
#include "mappings/mapping.h"
#include "broker.h"
#include "cli_filter.h"
#include "core/httpc.h"
#include "metrics_list.h"
#include "core/b64.h"
#include "core/buf.h"

#ifndef SY_VERSION
#define SY_VERSION "unknown"
#endif

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

#define DEFAULT_ENDPOINT "http://127.0.0.1:9001"
#define CONNECT_MS 5000
#define INVOKE_READ_MS (960 * 1000) /* above the longest timeout (900 s) plus INIT */
#define STATUS_READ_MS (10 * 1000)
#define PAYLOAD_FILE_MAX (64u * 1024u * 1024u)

static const char usage_text[] =
    "usage: switchyard COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  run CONFIG                 run the broker in the foreground (logs on stderr;\n"
    "                             SIGTERM/SIGINT drain and stop, a second one stops at once)\n"
    "  validate CONFIG            check a config file; print every error as\n"
    "                             FILE:LINE:COL: path: reason\n"
    "  invoke NAME [options]      invoke a function and print its response on stdout\n"
    "      --payload JSON|@FILE   the event (default {}); @- reads stdin\n"
    "      --async                asynchronous invocation (X-Amz-Invocation-Type: Event)\n"
    "      --dry-run              only check that the function exists and the payload parses\n"
    "      --log-tail             print the invocation's log tail on stderr\n"
    "  status                     show the broker's functions, environments and counters\n"
    "  reload                     re-read the running broker's config file and apply what\n"
    "                             changed; print it (a file with errors changes nothing)\n"
    "  dlq list [FUNCTION] [--limit N]   list dead letters (async events that failed for good)\n"
    "  dlq show --id ID                   one dead letter: payload, last error, attempt history\n"
    "  dlq redrive FUNCTION | --id ID | --all   queue them again with fresh attempts\n"
    "  dlq purge FUNCTION | --id ID | --all     delete them\n"
    "  mappings                   list the event source mappings: state, source, lag, records\n"
    "                             in flight and counters, last processing result\n"
    "  mappings enable|disable NAME   start or stop a mapping (UpdateEventSourceMapping\n"
    "                             Enabled; kept across restarts)\n"
    "  filter test --config FILE --mapping NAME [--metadata]\n"
    "  filter test --pattern JSON [--pattern JSON...] [--data-key KEY] [--data-must-match 0|1]\n"
    "             [--metadata]\n"
    "                             read records from stdin, one per line, and print `match` or\n"
    "                             `no match` and why for each: against a mapping's filters\n"
    "                             (with its source's payload key and rules), or against the\n"
    "                             patterns given (payload key `body` and SQS's rule unless\n"
    "                             --data-key / --data-must-match say otherwise); a line is the\n"
    "                             payload, or with --metadata a whole record (JSON object)\n"
    "  --help, --version\n"
    "\n"
    "options of invoke, status, reload, dlq and mappings:\n"
    "  --endpoint URL             the broker (default: $SWITCHYARD_ENDPOINT, else broker.json\n"
    "                             in the config's data_dir, else " DEFAULT_ENDPOINT ")\n"
    "  --token TOKEN              bearer token (default: $SWITCHYARD_TOKEN, else the config's\n"
    "                             auth_token)\n"
    "  --config FILE              config used to find the endpoint and token (default:\n"
    "                             ./switchyard.yaml when present)\n"
    "\n"
    "exit status: 0 success, 1 failure, 2 usage error\n";

static void fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail_msg(const char *fmt, ...)
{
    va_list ap;

    fputs("switchyard: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- option parsing ----------------------------------------------------------------------- */

struct opt {
    const char *name; /* "--payload" */
    int has_value;
    const char **value; /* where a value goes */
    int *flag;          /* where a flag goes */
};

/*
 * Parse ARGV[1..ARGC) of VERB into OPTS and up to MAXPOS positional arguments (POS, *NPOS).
 * Accepts `--opt value` and `--opt=value`; `--` ends the options. Returns 0 or EXIT_USAGE
 * (message printed).
 */
static int parse_opts(const char *verb, int argc, char **argv, const struct opt *opts,
                      const char **pos, int maxpos, int *npos)
{
    int only_pos = 0;

    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct opt *o = NULL;
        const char *eq;
        size_t nlen;

        if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
            if (*npos == maxpos) {
                fail_msg("%s: unexpected argument '%s' (see switchyard --help)", verb, a);
                return EXIT_USAGE;
            }
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        eq = strchr(a, '=');
        nlen = eq ? (size_t)(eq - a) : strlen(a);
        for (const struct opt *p = opts; p != NULL && p->name != NULL; p++) {
            if (strlen(p->name) == nlen && strncmp(p->name, a, nlen) == 0) {
                o = p;
                break;
            }
        }
        if (o == NULL) {
            fail_msg("%s: unknown option '%.*s' (see switchyard --help)", verb, (int)nlen, a);
            return EXIT_USAGE;
        }
        if (!o->has_value) {
            if (eq != NULL) {
                fail_msg("%s: option %s takes no value", verb, o->name);
                return EXIT_USAGE;
            }
            *o->flag = 1;
        } else if (eq != NULL) {
            *o->value = eq + 1;
        } else if (i + 1 < argc) {
            *o->value = argv[++i];
        } else {
            fail_msg("%s: option %s needs a value", verb, o->name);
            return EXIT_USAGE;
        }
    }
    return 0;
}

/* ---- finding the broker ------------------------------------------------------------------- */

struct target {
    char endpoint[600];
    const char *from; /* where the endpoint came from, for error messages */
    char *token;      /* owned; NULL = none */
};

/*
 * Fill T from the options, the environment and the config. Returns 0, or EXIT_FAIL after
 * printing why (an explicit --config that does not load).
 */
static int resolve_target(const char *opt_endpoint, const char *opt_token, const char *opt_config,
                          struct target *t)
{
    const char *env_ep = getenv("SWITCHYARD_ENDPOINT");
    const char *env_tok = getenv("SWITCHYARD_TOKEN");
    const char *config = opt_config;
    struct cfg *cfg = NULL;
    struct cfg_errors errs = {0};

    memset(t, 0, sizeof(*t));
    /*
     * An implicit ./switchyard.yaml describes the broker of this directory: it supplies the
     * endpoint (and that broker's token) only when no endpoint was named. With --endpoint or
     * $SWITCHYARD_ENDPOINT it is ignored, so its token never goes to another broker.
     */
    if (config == NULL && (opt_endpoint == NULL || opt_endpoint[0] == '\0') &&
        (env_ep == NULL || env_ep[0] == '\0') && access("switchyard.yaml", F_OK) == 0)
        config = "switchyard.yaml";
    if (config != NULL && (opt_endpoint == NULL || opt_token == NULL)) {
        cfg = cfg_load(config, mapping_cfg_schema(), &errs);
        if (cfg == NULL) {
            if (opt_config != NULL) {
                for (size_t i = 0; i < errs.n; i++)
                    fprintf(stderr, "%s\n", errs.msgs[i]);
                fail_msg("%s: the config does not load (%zu error(s))", config, errs.n);
                cfg_errors_clear(&errs);
                return EXIT_FAIL;
            }
            /* An implicit ./switchyard.yaml that does not load is simply not used. */
            cfg_errors_clear(&errs);
        }
    }

    if (opt_endpoint != NULL && opt_endpoint[0] != '\0') {
        snprintf(t->endpoint, sizeof(t->endpoint), "%s", opt_endpoint);
        t->from = "--endpoint";
    } else if (env_ep != NULL && env_ep[0] != '\0') {
        snprintf(t->endpoint, sizeof(t->endpoint), "%s", env_ep);
        t->from = "$SWITCHYARD_ENDPOINT";
    } else if (cfg != NULL) {
        char path[4200];
        json_t *j;
        const char *ep;

        snprintf(path, sizeof(path), "%s/broker.json", cfg->broker.data_dir);
        j = json_load_file(path, 0, NULL);
        ep = json_string_value(json_object_get(j, "endpoint"));
        if (ep != NULL && ep[0] != '\0') {
            snprintf(t->endpoint, sizeof(t->endpoint), "%s", ep);
            t->from = "broker.json";
        } else if (cfg->broker.listen_port != 0) {
            broker_endpoint(cfg->broker.listen_host, cfg->broker.listen_port, 1, t->endpoint,
                            sizeof(t->endpoint));
            t->from = "the config's broker.listen";
        }
        json_decref(j);
    }
    if (t->endpoint[0] == '\0') {
        snprintf(t->endpoint, sizeof(t->endpoint), "%s", DEFAULT_ENDPOINT);
        t->from = "the default";
    }

    if (opt_token != NULL && opt_token[0] != '\0')
        t->token = strdup(opt_token);
    else if (env_tok != NULL && env_tok[0] != '\0')
        t->token = strdup(env_tok);
    else if (cfg != NULL && cfg->broker.auth_token != NULL && cfg->broker.auth_token[0] != '\0')
        t->token = strdup(cfg->broker.auth_token);
    cfg_destroy(cfg);
    return 0;
}

/* Refuse an endpoint we cannot talk to before trying. Returns 0 or EXIT_FAIL (printed). */
static int check_endpoint(const char *what, const struct target *t)
{
    struct httpc_url u;
    struct sy_error err = {{0}};

    if (httpc_parse_url(t->endpoint, &u, &err) == 0)
        return 0;
    fail_msg("%s: bad endpoint from %s: %s", what, t->from, err.msg);
    return EXIT_FAIL;
}

/* The message member of a Lambda error body (either spelling), or NULL. Borrowed from J. */
static const char *error_message(json_t *j)
{
    const char *m = json_string_value(json_object_get(j, "message"));

    if (m == NULL)
        m = json_string_value(json_object_get(j, "Message"));
    if (m == NULL)
        m = json_string_value(json_object_get(j, "errorMessage"));
    return m;
}

/* One line for an HTTP error answer: `STATUS ErrorType: message`. */
static void print_http_error(const char *what, const struct httpc_resp *resp)
{
    const char *etype = httpc_header(resp, "x-amzn-ErrorType");
    json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *msg = error_message(j);
    char shortbody[201];

    if (msg == NULL) {
        size_t n = resp->body_len < 200 ? resp->body_len : 200;

        memcpy(shortbody, resp->body, n);
        shortbody[n] = '\0';
        for (char *p = shortbody; *p; p++) {
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        }
        msg = shortbody;
    }
    fail_msg("%s: %d %s%s%s", what, resp->status, etype ? etype : "", etype ? ": " : "", msg);
    json_decref(j);
}

/* ---- run / validate ----------------------------------------------------------------------- */

static int cmd_run(int argc, char **argv)
{
    const char *pos[1];
    int npos;

    if (parse_opts("run", argc, argv, NULL, pos, 1, &npos) != 0)
        return EXIT_USAGE;
    if (npos != 1) {
        fail_msg("run: expected a config file: switchyard run CONFIG");
        return EXIT_USAGE;
    }
    return broker_run(pos[0]);
}

static int cmd_validate(int argc, char **argv)
{
    const char *pos[1];
    int npos;
    struct cfg_errors errs = {0};
    struct cfg *cfg;

    if (parse_opts("validate", argc, argv, NULL, pos, 1, &npos) != 0)
        return EXIT_USAGE;
    if (npos != 1) {
        fail_msg("validate: expected a config file: switchyard validate CONFIG");
        return EXIT_USAGE;
    }
    cfg = cfg_load(pos[0], mapping_cfg_schema(), &errs);
    if (cfg == NULL) {
        /* The errors are the reasons, one per line, exactly as cfg_load() words them. */
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        if (errs.n == 0)
            fail_msg("%s: cannot load the config", pos[0]);
        cfg_errors_clear(&errs);
        return EXIT_FAIL;
    }
    printf("%s: OK (%zu functions)\n", pos[0], cfg->n_functions);
    cfg_destroy(cfg);
    return EXIT_OK;
}

/* ---- invoke ------------------------------------------------------------------------------- */

/* Read FILE ("-" = stdin) into B. Returns 0 or EXIT_FAIL (message printed). */
static int read_payload_file(const char *file, struct buf *b)
{
    FILE *fp = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    char chunk[65536];
    size_t n;

    if (fp == NULL) {
        fail_msg("invoke: cannot read payload file %s: %s", file, strerror(errno));
        return EXIT_FAIL;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        if (b->len + n > PAYLOAD_FILE_MAX || buf_append(b, chunk, n) != 0) {
            fail_msg("invoke: payload file %s is too large", file);
            if (fp != stdin)
                fclose(fp);
            return EXIT_FAIL;
        }
    }
    if (ferror(fp)) {
        fail_msg("invoke: cannot read payload file %s: %s", file, strerror(errno));
        if (fp != stdin)
            fclose(fp);
        return EXIT_FAIL;
    }
    if (fp != stdin)
        fclose(fp);
    return 0;
}

static int cmd_invoke(int argc, char **argv)
{
    const char *payload = NULL, *endpoint = NULL, *token = NULL, *config = NULL;
    int async = 0, log_tail = 0, dry_run = 0;
    const struct opt opts[] = {
        {"--payload", 1, &payload, NULL}, {"--endpoint", 1, &endpoint, NULL},
        {"--token", 1, &token, NULL},     {"--config", 1, &config, NULL},
        {"--async", 0, NULL, &async},     {"--log-tail", 0, NULL, &log_tail},
        {"--dry-run", 0, NULL, &dry_run}, {NULL, 0, NULL, NULL},
    };
    const char *pos[1];
    int npos, rc = EXIT_FAIL;
    struct target t = {.from = NULL};
    struct buf body = {0}, path = {0}, auth = {0}, what = {0};
    struct httpc_resp resp = {0};
    struct sy_error err = {{0}};
    const char *hdrs[12];
    size_t k = 0;
    char *esc = NULL;
    const char *ferr;

    if (parse_opts("invoke", argc, argv, opts, pos, 1, &npos) != 0)
        return EXIT_USAGE;
    if (npos != 1) {
        fail_msg("invoke: expected a function name: switchyard invoke NAME [--payload JSON]");
        return EXIT_USAGE;
    }
    if (async + dry_run > 1) {
        fail_msg("invoke: --async and --dry-run exclude each other");
        return EXIT_USAGE;
    }
    buf_printf(&what, "invoke %s", pos[0]);
    if (payload != NULL && payload[0] == '@') {
        if (read_payload_file(payload + 1, &body) != 0)
            goto out;
    } else if (buf_puts(&body, payload != NULL ? payload : "{}") != 0) {
        fail_msg("%s: out of memory", what.data);
        goto out;
    }
    if (resolve_target(endpoint, token, config, &t) != 0)
        goto out;
    if (check_endpoint(what.data, &t) != 0)
        goto out;
    esc = httpc_escape_segment(pos[0]);
    if (esc == NULL || buf_printf(&path, "/2015-03-31/functions/%s/invocations", esc) != 0) {
        fail_msg("%s: out of memory", what.data);
        goto out;
    }
    hdrs[k++] = "Content-Type";
    hdrs[k++] = "application/json";
    hdrs[k++] = "X-Amz-Invocation-Type";
    hdrs[k++] = async ? "Event" : dry_run ? "DryRun" : "RequestResponse";
    if (log_tail) {
        hdrs[k++] = "X-Amz-Log-Type";
        hdrs[k++] = "Tail";
    }
    if (t.token != NULL) {
        buf_printf(&auth, "Bearer %s", t.token);
        hdrs[k++] = "Authorization";
        hdrs[k++] = auth.data;
    }
    hdrs[k] = NULL;

    if (httpc_request(t.endpoint, "POST", path.data, hdrs, body.data, body.len, CONNECT_MS,
                      INVOKE_READ_MS, &resp, &err) != 0) {
        fail_msg("%s: %s (endpoint %s from %s; is the broker running?)", what.data, err.msg,
                 t.endpoint, t.from);
        goto out;
    }
    if (resp.status == 200) {
        const char *lr = httpc_header(&resp, "X-Amz-Log-Result");

        if (log_tail && lr != NULL) {
            size_t dlen;
            char *tail = b64_decode_new(lr, strlen(lr), &dlen);

            if (tail != NULL) {
                fwrite(tail, 1, dlen, stderr);
                if (dlen > 0 && tail[dlen - 1] != '\n')
                    fputc('\n', stderr);
            }
            free(tail);
        }
        fwrite(resp.body, 1, resp.body_len, stdout);
        if (isatty(STDOUT_FILENO) && resp.body_len > 0 && resp.body[resp.body_len - 1] != '\n')
            fputc('\n', stdout);
        fflush(stdout);
        ferr = httpc_header(&resp, "X-Amz-Function-Error");
        if (ferr != NULL) {
            json_t *j = json_loadb(resp.body, resp.body_len, 0, NULL);
            const char *etype = json_string_value(json_object_get(j, "errorType"));
            const char *emsg = json_string_value(json_object_get(j, "errorMessage"));

            fail_msg("%s: function error (%s)%s%s%s%s", what.data, ferr, etype ? ": " : "",
                     etype ? etype : "", emsg ? ": " : "", emsg ? emsg : "");
            json_decref(j);
            goto out;
        }
        rc = EXIT_OK;
    } else if (resp.status == 202) {
        /* Event stored: print its request id (every log line of every attempt carries it). */
        const char *rid = httpc_header(&resp, "x-amzn-RequestId");

        printf("%s\n", rid != NULL ? rid : "accepted");
        fflush(stdout);
        rc = EXIT_OK;
    } else if (resp.status == 204) {
        /* DryRun passed: there is no response body to print. */
        rc = EXIT_OK;
    } else {
        print_http_error(what.data, &resp);
    }
out:
    httpc_resp_free(&resp);
    free(esc);
    free(t.token);
    buf_free(&body);
    buf_free(&path);
    buf_free(&auth);
    buf_free(&what);
    return rc;
}

/* ---- status ------------------------------------------------------------------------------- */

static long long jint(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static int cmd_status(int argc, char **argv)
{
    const char *endpoint = NULL, *token = NULL, *config = NULL;
    const struct opt opts[] = {
        {"--endpoint", 1, &endpoint, NULL},
        {"--token", 1, &token, NULL},
        {"--config", 1, &config, NULL},
        {NULL, 0, NULL, NULL},
    };
    const char *pos[1];
    int npos, rc = EXIT_FAIL;
    struct target t = {.from = NULL};
    struct httpc_resp resp = {0};
    struct sy_error err = {{0}};
    struct buf auth = {0};
    const char *hdrs[3] = {NULL, NULL, NULL};
    json_t *j = NULL, *detail;
    const char *name;
    json_t *fn;

    if (parse_opts("status", argc, argv, opts, pos, 0, &npos) != 0)
        return EXIT_USAGE;
    if (resolve_target(endpoint, token, config, &t) != 0)
        return EXIT_FAIL;
    if (check_endpoint("status", &t) != 0)
        goto out;
    if (t.token != NULL) {
        buf_printf(&auth, "Bearer %s", t.token);
        hdrs[0] = "Authorization";
        hdrs[1] = auth.data;
    }
    if (httpc_request(t.endpoint, "GET", "/healthz", hdrs, NULL, 0, CONNECT_MS, STATUS_READ_MS,
                      &resp, &err) != 0) {
        fail_msg("status: %s (endpoint %s from %s; is the broker running?)", err.msg, t.endpoint,
                 t.from);
        goto out;
    }
    j = json_loadb(resp.body, resp.body_len, 0, NULL);
    if (j == NULL || !json_is_object(j) || json_object_get(j, "status") == NULL) {
        if (resp.status != 200)
            print_http_error("status", &resp);
        else
            fail_msg("status: %s answered /healthz with something that is not switchyard's "
                     "health document",
                     t.endpoint);
        goto out;
    }
    printf("endpoint      %s\n", t.endpoint);
    printf("status        %s\n", json_string_value(json_object_get(j, "status")));
    printf("functions     %lld\n", jint(j, "functions"));
#define STATUS_LINE(field, metric, type, help) printf("%-13s %lld\n", #field, jint(j, #field));
    METRICS_BROKER(STATUS_LINE)
#undef STATUS_LINE
    if (json_is_object(json_object_get(j, "async"))) {
        json_t *a = json_object_get(j, "async");

        printf("\nasync queue\n");
#define STATUS_ASYNC(field, metric, type, help) printf("  %-15s %lld\n", #field, jint(a, #field));
        METRICS_ASYNC(STATUS_ASYNC)
#undef STATUS_ASYNC
    }
    detail = json_object_get(j, "functions_detail");
    if (json_object_size(detail) > 0) {
        printf("\n%-32s %12s %6s\n", "FUNCTION", "ENVIRONMENTS", "BUSY");
        json_object_foreach(detail, name, fn)
            printf("%-32s %12lld %6lld\n", name, jint(fn, "environments"), jint(fn, "busy"));
    }
    fflush(stdout);
    if (resp.status == 200) {
        rc = EXIT_OK;
    } else {
        fail_msg("status: the broker at %s is %s (HTTP %d)", t.endpoint,
                 json_string_value(json_object_get(j, "status")), resp.status);
    }
out:
    json_decref(j);
    httpc_resp_free(&resp);
    buf_free(&auth);
    free(t.token);
    return rc;
}


/* ---- dlq ---------------------------------------------------------------------------------- */

/*
 * One control-API request: METHOD PATH with BODY (may be NULL); parses the answer into *OUT
 * (new). Returns 0 (HTTP OK_STATUS and JSON), else EXIT_FAIL after printing why.
 */
static int api_request(const char *what, const struct target *t, const char *method,
                       const char *path, const char *body, int ok_status, json_t **out)
{
    struct httpc_resp resp = {0};
    struct sy_error err = {{0}};
    struct buf auth = {0};
    const char *hdrs[5] = {"Content-Type", "application/json", NULL, NULL, NULL};
    int rc = EXIT_FAIL;

    *out = NULL;
    if (t->token != NULL) {
        buf_printf(&auth, "Bearer %s", t->token);
        hdrs[2] = "Authorization";
        hdrs[3] = auth.data;
    }
    if (httpc_request(t->endpoint, method, path, hdrs, body, body ? strlen(body) : 0, CONNECT_MS,
                      STATUS_READ_MS * 6, &resp, &err) != 0) {
        fail_msg("%s: %s (endpoint %s from %s; is the broker running?)", what, err.msg,
                 t->endpoint, t->from);
        goto out;
    }
    if (resp.status != ok_status) {
        print_http_error(what, &resp);
        goto out;
    }
    *out = json_loadb(resp.body, resp.body_len, 0, NULL);
    if (*out == NULL) {
        fail_msg("%s: the broker answered something that is not JSON", what);
        goto out;
    }
    rc = 0;
out:
    httpc_resp_free(&resp);
    buf_free(&auth);
    return rc;
}

static void print_names(const char *what, const char *change, const json_t *arr)
{
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v)
        printf("%s %s: %s\n", what, json_string_value(v), change);
}

static int cmd_reload(int argc, char **argv)
{
    const char *endpoint = NULL, *token = NULL, *config = NULL;
    const struct opt opts[] = {
        {"--endpoint", 1, &endpoint, NULL},
        {"--token", 1, &token, NULL},
        {"--config", 1, &config, NULL},
        {NULL, 0, NULL, NULL},
    };
    const char *pos[1];
    int npos, rc = EXIT_FAIL;
    struct target t = {.from = NULL};
    json_t *j = NULL, *f, *m, *v;
    size_t i;

    if (parse_opts("reload", argc, argv, opts, pos, 0, &npos) != 0)
        return EXIT_USAGE;
    if (resolve_target(endpoint, token, config, &t) != 0)
        return EXIT_FAIL;
    if (check_endpoint("reload", &t) != 0 ||
        api_request("reload", &t, "POST", "/switchyard/v1/reload", "{}", 200, &j) != 0)
        goto out;
    f = json_object_get(j, "functions");
    m = json_object_get(j, "mappings");
    print_names("function", "added", json_object_get(f, "added"));
    print_names("function", "removed", json_object_get(f, "removed"));
    print_names("function", "updated", json_object_get(f, "updated"));
    print_names("mapping", "added", json_object_get(m, "added"));
    print_names("mapping", "removed", json_object_get(m, "removed"));
    print_names("mapping", "updated", json_object_get(m, "updated"));
    json_array_foreach(json_object_get(j, "restart_needed"), i, v)
        printf("%s: changed; takes effect at the next restart\n", json_string_value(v));
    if (json_is_string(json_object_get(j, "log_level")))
        printf("log_level: %s\n", json_string_value(json_object_get(j, "log_level")));
    json_array_foreach(json_object_get(j, "errors"), i, v)
        fprintf(stderr, "%s\n", json_string_value(v));
    if (json_is_true(json_object_get(j, "ok"))) {
        size_t changes = json_array_size(json_object_get(f, "added")) +
                         json_array_size(json_object_get(f, "removed")) +
                         json_array_size(json_object_get(f, "updated")) +
                         json_array_size(json_object_get(m, "added")) +
                         json_array_size(json_object_get(m, "removed")) +
                         json_array_size(json_object_get(m, "updated"));

        if (changes == 0)
            printf("no change to functions or mappings\n");
        rc = EXIT_OK;
    } else if (json_is_true(json_object_get(j, "applied"))) {
        fail_msg("reload: %s was applied, but the changes above marked with errors were not",
                 json_string_value(json_object_get(j, "config")));
    } else {
        fail_msg("reload: %s was not applied (errors above); the running configuration is kept",
                 json_string_value(json_object_get(j, "config")));
    }
    fflush(stdout);
out:
    json_decref(j);
    free(t.token);
    return rc;
}

static int cmd_dlq(int argc, char **argv)
{
    const char *endpoint = NULL, *token = NULL, *config = NULL, *id = NULL, *limit_s = NULL;
    int all = 0;
    const struct opt opts[] = {
        {"--endpoint", 1, &endpoint, NULL}, {"--token", 1, &token, NULL},
        {"--config", 1, &config, NULL},     {"--id", 1, &id, NULL},
        {"--limit", 1, &limit_s, NULL},     {"--all", 0, NULL, &all},
        {NULL, 0, NULL, NULL},
    };
    const char *pos[2];
    const char *sub, *fn;
    int npos, rc = EXIT_FAIL;
    struct target t = {.from = NULL};
    struct buf path = {0};
    json_t *j = NULL, *sel = NULL;
    char *body = NULL, *esc = NULL;
    long limit = 100;

    if (parse_opts("dlq", argc, argv, opts, pos, 2, &npos) != 0)
        return EXIT_USAGE;
    if (npos < 1) {
        fail_msg("dlq: expected list, show, redrive or purge (see switchyard --help)");
        return EXIT_USAGE;
    }
    sub = pos[0];
    fn = npos > 1 ? pos[1] : NULL;
    if (limit_s != NULL) {
        char *end;

        limit = strtol(limit_s, &end, 10);
        if (*end != '\0' || limit <= 0) {
            fail_msg("dlq: --limit must be a positive integer");
            return EXIT_USAGE;
        }
    }
    if (strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0 && strcmp(sub, "redrive") != 0 &&
        strcmp(sub, "purge") != 0) {
        fail_msg("dlq: unknown subcommand '%s' (list, show, redrive, purge)", sub);
        return EXIT_USAGE;
    }
    if (strcmp(sub, "show") == 0 && (id == NULL || fn != NULL || all)) {
        fail_msg("dlq show: give the dead letter's id: switchyard dlq show --id ID");
        return EXIT_USAGE;
    }
    if ((strcmp(sub, "redrive") == 0 || strcmp(sub, "purge") == 0) &&
        (fn != NULL) + (id != NULL) + all != 1) {
        fail_msg("dlq %s: give exactly one of FUNCTION, --id ID or --all", sub);
        return EXIT_USAGE;
    }
    if (resolve_target(endpoint, token, config, &t) != 0)
        return EXIT_FAIL;
    if (check_endpoint("dlq", &t) != 0)
        goto out;

    if (strcmp(sub, "list") == 0) {
        json_t *arr, *e;
        size_t i;

        esc = fn != NULL ? httpc_escape_segment(fn) : NULL;
        buf_printf(&path, "/switchyard/v1/dlq?limit=%ld%s%s", limit, esc ? "&function=" : "",
                   esc ? esc : "");
        if (api_request("dlq list", &t, "GET", path.data, NULL, 200, &j) != 0)
            goto out;
        arr = json_object_get(j, "dead_letters");
        printf("%-36s  %-24s  %-17s  %8s  %-24s  %s\n", "ID", "FUNCTION", "CONDITION",
               "ATTEMPTS", "FAILED AT", "ERROR");
        json_array_foreach(arr, i, e)
        {
            const char *et = json_string_value(json_object_get(e, "error_type"));
            const char *em = json_string_value(json_object_get(e, "error_message"));

            printf("%-36s  %-24s  %-17s  %8lld  %-24s  %s%s%.120s\n",
                   json_string_value(json_object_get(e, "id")),
                   json_string_value(json_object_get(e, "function")),
                   json_string_value(json_object_get(e, "condition")), jint(e, "attempts"),
                   json_string_value(json_object_get(e, "failed_at")), et ? et : "",
                   et && em ? ": " : "", em ? em : "");
        }
        printf("(%zu shown, %lld in all)\n", json_array_size(arr), jint(j, "total"));
        rc = EXIT_OK;
    } else if (strcmp(sub, "show") == 0) {
        char *s;

        esc = httpc_escape_segment(id);
        buf_printf(&path, "/switchyard/v1/dlq/%s", esc ? esc : "");
        if (api_request("dlq show", &t, "GET", path.data, NULL, 200, &j) != 0)
            goto out;
        s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s != NULL)
            printf("%s\n", s);
        free(s);
        rc = EXIT_OK;
    } else {
        int redrive = strcmp(sub, "redrive") == 0;
        long long done = 0, goal = -1;

        sel = fn != NULL ? json_pack("{s:s}", "function", fn)
              : id != NULL ? json_pack("{s:s}", "id", id)
                           : json_pack("{s:b}", "all", 1);
        if (redrive)
            json_object_set_new(sel, "limit", json_integer(limit_s != NULL ? limit : 1000));
        body = json_dumps(sel, JSON_COMPACT);
        buf_printf(&path, "/switchyard/v1/dlq/%s", sub);
        /* Redrive moves a chunk per request and reports progress until nothing is left. */
        for (;;) {
            json_decref(j);
            if (api_request(redrive ? "dlq redrive" : "dlq purge", &t, "POST", path.data, body,
                            200, &j) != 0)
                goto out;
            if (!redrive) {
                printf("purged %lld dead letter(s)\n", jint(j, "purged"));
                break;
            }
            done += jint(j, "redriven");
            /* Stop at what was there when we started: events that fail again meanwhile land
             * back in the store and must not keep this loop going. */
            if (goal < 0)
                goal = jint(j, "redriven") + jint(j, "remaining");
            if (jint(j, "redriven") == 0 || jint(j, "remaining") == 0 || id != NULL ||
                limit_s != NULL || done >= goal) {
                printf("redrove %lld dead letter(s); %lld left\n", done, jint(j, "remaining"));
                break;
            }
            fprintf(stderr, "switchyard: dlq redrive: %lld queued again, %lld to go\n", done,
                    jint(j, "remaining"));
        }
        if (redrive && id != NULL && done == 0) {
            fail_msg("dlq redrive: no dead letter with id %s", id);
            goto out;
        }
        rc = EXIT_OK;
    }
out:
    json_decref(j);
    json_decref(sel);
    free(body);
    free(esc);
    buf_free(&path);
    free(t.token);
    return rc;
}

/* ---- mappings ----------------------------------------------------------------------------- */

#define ESM_PATH "/2015-03-31/event-source-mappings/"
#define ESM_MAX_PAGES 10000 /* 100 per page: a million mappings, far above any config */
#define SOURCE_COL_MAX 40

/*
 * Every mapping of the broker, ListEventSourceMappings page after page (NextMarker), into
 * *OUT (a new array). Returns 0, or EXIT_FAIL after printing why.
 */
static int esm_list_all(const char *what, const struct target *t, json_t **out)
{
    json_t *all = json_array(), *j = NULL;
    char *marker = NULL, *esc = NULL;
    struct buf path = {0};
    int rc = EXIT_FAIL;

    *out = NULL;
    if (all == NULL) {
        fail_msg("%s: out of memory", what);
        return EXIT_FAIL;
    }
    for (int page = 0;; page++) {
        json_t *arr;
        const char *next;

        buf_reset(&path);
        free(esc);
        esc = marker != NULL ? httpc_escape_segment(marker) : NULL;
        if (buf_printf(&path, ESM_PATH "?MaxItems=100%s%s", esc ? "&Marker=" : "",
                       esc ? esc : "") != 0 ||
            (marker != NULL && esc == NULL)) {
            fail_msg("%s: out of memory", what);
            goto out;
        }
        json_decref(j);
        if (api_request(what, t, "GET", path.data, NULL, 200, &j) != 0)
            goto out;
        arr = json_object_get(j, "EventSourceMappings");
        if (!json_is_array(arr)) {
            fail_msg("%s: the broker's answer has no EventSourceMappings list", what);
            goto out;
        }
        json_array_extend(all, arr);
        next = json_string_value(json_object_get(j, "NextMarker"));
        if (next == NULL || next[0] == '\0')
            break;
        /* A marker that does not move on would page forever. */
        if (page == ESM_MAX_PAGES || (marker != NULL && strcmp(marker, next) == 0)) {
            fail_msg("%s: the broker's paging does not advance (NextMarker %.64s)", what, next);
            goto out;
        }
        free(marker);
        marker = strdup(next);
        if (marker == NULL) {
            fail_msg("%s: out of memory", what);
            goto out;
        }
    }
    *out = all;
    all = NULL;
    rc = 0;
out:
    json_decref(all);
    json_decref(j);
    free(marker);
    free(esc);
    buf_free(&path);
    return rc;
}

/* Member KEY of the mapping's Switchyard object (borrowed), or NULL. */
static json_t *sy_member(json_t *esm, const char *key)
{
    return json_object_get(json_object_get(esm, "Switchyard"), key);
}

static const char *jstr(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL && s[0] != '\0' ? s : dflt;
}

/* The SOURCE column: "KIND: STATE", cut to SOURCE_COL_MAX (the full text follows the table). */
static void source_col(json_t *esm, char *out, size_t outsz)
{
    const char *kind = json_string_value(sy_member(esm, "source_kind"));
    const char *st = json_string_value(sy_member(esm, "source_state"));

    snprintf(out, outsz, "%s%s%s", kind ? kind : "?", st ? ": " : "", st ? st : "");
    if (strlen(out) > SOURCE_COL_MAX && outsz > SOURCE_COL_MAX)
        snprintf(out + SOURCE_COL_MAX - 3, outsz - (SOURCE_COL_MAX - 3), "...");
}

static void print_mappings(json_t *all)
{
    int wname = 4, wstate = 5, wsrc = 6;
    size_t i;
    json_t *e;
    char src[512];
    int cut = 0;

    if (json_array_size(all) == 0) {
        printf("no event source mappings\n");
        return;
    }
    json_array_foreach(all, i, e)
    {
        int n = (int)strlen(jstr(json_object_get(e, "Switchyard"), "name", "?"));

        wname = n > wname ? n : wname;
        n = (int)strlen(jstr(e, "State", "?"));
        wstate = n > wstate ? n : wstate;
        source_col(e, src, sizeof(src));
        n = (int)strlen(src);
        wsrc = n > wsrc ? n : wsrc;
    }
    printf("%-*s  %-*s  %-*s  %8s  %9s  %10s  %10s  %10s  %8s  %s\n", wname, "NAME", wstate,
           "STATE", wsrc, "SOURCE", "LAG", "IN FLIGHT", "RECEIVED", "DELIVERED", "FILTERED",
           "FAILED", "LAST RESULT");
    json_array_foreach(all, i, e)
    {
        json_t *c = sy_member(e, "counters");
        long long lag = jint(c, "lag");
        char lagbuf[24];

        source_col(e, src, sizeof(src));
        if (lag < 0)
            snprintf(lagbuf, sizeof(lagbuf), "-");
        else
            snprintf(lagbuf, sizeof(lagbuf), "%lld", lag);
        printf("%-*s  %-*s  %-*s  %8s  %9lld  %10lld  %10lld  %10lld  %8lld  %s\n", wname,
               jstr(json_object_get(e, "Switchyard"), "name", "?"), wstate, jstr(e, "State", "?"),
               wsrc, src, lagbuf, jint(c, "in_flight_records"), jint(c, "received"),
               jint(c, "delivered"), jint(c, "filtered"), jint(c, "failed"),
               jstr(e, "LastProcessingResult", "-"));
        cut |= strstr(src, "...") != NULL;
    }
    /* Source problems are the interesting part of a long state: show them whole. */
    if (cut) {
        printf("\n");
        json_array_foreach(all, i, e)
        {
            const char *st = json_string_value(sy_member(e, "source_state"));

            if (st != NULL && strlen(st) + 16 > SOURCE_COL_MAX)
                printf("%s: source %s\n", jstr(json_object_get(e, "Switchyard"), "name", "?"), st);
        }
    }
}

/* `mappings enable|disable NAME`: find NAME's UUID in the list, PUT Enabled. */
static int mappings_set_enabled(const struct target *t, const char *verb, const char *name)
{
    char what[128];
    json_t *all = NULL, *e, *j = NULL;
    const char *uuid = NULL;
    char *esc = NULL;
    struct buf path = {0};
    size_t i;
    int enable = strcmp(verb, "enable") == 0, rc = EXIT_FAIL;

    snprintf(what, sizeof(what), "mappings %s %.64s", verb, name);
    if (esm_list_all(what, t, &all) != 0)
        goto out;
    json_array_foreach(all, i, e)
    {
        const char *n = json_string_value(sy_member(e, "name"));

        if (n != NULL && strcmp(n, name) == 0) {
            uuid = json_string_value(json_object_get(e, "UUID"));
            break;
        }
    }
    if (uuid == NULL) {
        fail_msg("%s: the broker at %s has no mapping named '%s' (%zu mapping(s); see "
                 "switchyard mappings)",
                 what, t->endpoint, name, json_array_size(all));
        goto out;
    }
    esc = httpc_escape_segment(uuid);
    if (esc == NULL || buf_printf(&path, ESM_PATH "%s", esc) != 0) {
        fail_msg("%s: out of memory", what);
        goto out;
    }
    if (api_request(what, t, "PUT", path.data,
                    enable ? "{\"Enabled\":true}" : "{\"Enabled\":false}", 202, &j) != 0)
        goto out;
    printf("%s: %s\n", name, jstr(j, "State", enable ? "Enabling" : "Disabling"));
    rc = EXIT_OK;
out:
    json_decref(all);
    json_decref(j);
    free(esc);
    buf_free(&path);
    return rc;
}

static int cmd_mappings(int argc, char **argv)
{
    const char *endpoint = NULL, *token = NULL, *config = NULL;
    const struct opt opts[] = {
        {"--endpoint", 1, &endpoint, NULL},
        {"--token", 1, &token, NULL},
        {"--config", 1, &config, NULL},
        {NULL, 0, NULL, NULL},
    };
    const char *pos[2];
    int npos, rc = EXIT_FAIL;
    struct target t = {.from = NULL};
    json_t *all = NULL;

    if (parse_opts("mappings", argc, argv, opts, pos, 2, &npos) != 0)
        return EXIT_USAGE;
    if (npos == 1 || (npos == 2 && strcmp(pos[0], "enable") != 0 &&
                      strcmp(pos[0], "disable") != 0)) {
        fail_msg("mappings: expected no argument, or enable NAME or disable NAME");
        return EXIT_USAGE;
    }
    if (resolve_target(endpoint, token, config, &t) != 0)
        return EXIT_FAIL;
    if (check_endpoint("mappings", &t) != 0)
        goto out;
    if (npos == 2) {
        rc = mappings_set_enabled(&t, pos[0], pos[1]);
        goto out;
    }
    if (esm_list_all("mappings", &t, &all) != 0)
        goto out;
    print_mappings(all);
    fflush(stdout);
    rc = EXIT_OK;
out:
    json_decref(all);
    free(t.token);
    return rc;
}

/* ---- filter test -------------------------------------------------------------------------- */

/*
 * If ARGV[*I] is option NAME (`NAME VALUE` or `NAME=VALUE`), store the value in *VALUE, move
 * *I past it and return 1; return -1 when the value is missing, 0 when it is another argument.
 */
static int take_opt(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    const char *a = argv[*i];

    if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '='))
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

/*
 * `filter test`: this part picks the patterns and the payload rules (a mapping of a config
 * file, or the --pattern options with SQS's rules); cli_filter_test() (cli_filter.c) parses
 * the rest of the arguments, reads the records and prints the verdicts. It gets `test` as its
 * ARGV[0] followed by every argument not consumed here (--pattern included).
 */
static int cmd_filter(int argc, char **argv)
{
    static const char *const mine[] = {"--config", "--mapping", "--data-key", "--data-must-match"};
    const char *vals[4] = {NULL, NULL, NULL, NULL};
    const char *config, *mapping, *data_key, *must_s;
    int has_pattern = 0, nrest = 0, must = 1, rc = EXIT_FAIL;
    char **rest = NULL;
    struct cfg_errors errs = {0};
    struct cfg *cfg = NULL;
    const struct cfg_mapping *m;

    if (argc < 2 || strcmp(argv[1], "test") != 0) {
        fail_msg("filter: expected `filter test` (see switchyard --help)");
        return EXIT_USAGE;
    }
    rest = calloc((size_t)argc + 1, sizeof(*rest));
    if (rest == NULL) {
        fail_msg("filter test: out of memory");
        return EXIT_FAIL;
    }
    rest[nrest++] = argv[1];
    for (int i = 2; i < argc; i++) {
        int took = 0;

        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                rest[nrest++] = argv[i++];
            break;
        }
        for (size_t k = 0; k < sizeof(mine) / sizeof(mine[0]) && took == 0; k++) {
            took = take_opt(argc, argv, &i, mine[k], &vals[k]);
            if (took < 0) {
                fail_msg("filter test: option %s needs a value", mine[k]);
                rc = EXIT_USAGE;
                goto out;
            }
        }
        if (took)
            continue;
        rest[nrest++] = argv[i];
        if (strcmp(argv[i], "--pattern") == 0 || strncmp(argv[i], "--pattern=", 10) == 0) {
            has_pattern = 1;
            /* Pass the value along untouched, even if it happened to look like an option. */
            if (argv[i][9] == '\0' && i + 1 < argc)
                rest[nrest++] = argv[++i];
        }
    }
    config = vals[0];
    mapping = vals[1];
    data_key = vals[2];
    must_s = vals[3];
    rc = EXIT_USAGE;
    if (mapping != NULL && has_pattern) {
        fail_msg("filter test: give either --mapping NAME (with --config FILE) or --pattern "
                 "JSON, not both");
        goto out;
    }
    if (mapping == NULL && !has_pattern) {
        fail_msg("filter test: give --config FILE --mapping NAME, or at least one --pattern JSON");
        goto out;
    }
    if (config != NULL && mapping == NULL) {
        fail_msg("filter test: --config FILE needs --mapping NAME");
        goto out;
    }
    if (mapping != NULL && (data_key != NULL || must_s != NULL)) {
        fail_msg("filter test: --data-key and --data-must-match go with --pattern; a mapping's "
                 "source decides them");
        goto out;
    }
    if (must_s != NULL) {
        if (strcmp(must_s, "0") != 0 && strcmp(must_s, "1") != 0) {
            fail_msg("filter test: --data-must-match takes 0 or 1 (got '%s')", must_s);
            goto out;
        }
        must = must_s[0] == '1';
    }
    if (mapping == NULL) {
        rc = cli_filter_test(nrest, rest, NULL, 0, data_key != NULL ? data_key : "body", must);
        goto out;
    }

    if (config == NULL) {
        if (access("switchyard.yaml", F_OK) != 0) {
            fail_msg("filter test: --mapping needs --config FILE (there is no ./switchyard.yaml)");
            goto out;
        }
        config = "switchyard.yaml";
    }
    rc = EXIT_FAIL;
    cfg = cfg_load(config, mapping_cfg_schema(), &errs);
    if (cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        fail_msg("filter test: %s does not load (%zu error(s))", config, errs.n);
        goto out;
    }
    m = cfg_mapping_find(cfg, mapping);
    if (m == NULL) {
        struct buf names = {0};

        for (size_t i = 0; i < cfg->n_mappings; i++)
            buf_printf(&names, "%s%s", i ? ", " : "", cfg->mappings[i].name);
        fail_msg("filter test: %s has no mapping named '%s' (mappings: %s)", config, mapping,
                 names.data != NULL ? names.data : "none");
        buf_free(&names);
        goto out;
    }
    rc = cli_filter_test(nrest, rest, (const char *const *)m->filters, m->n_filters,
                         m->source_kind->data_key, m->source_kind->data_must_match);
out:
    cfg_destroy(cfg);
    cfg_errors_clear(&errs);
    free(rest);
    return rc;
}

/* ---- main --------------------------------------------------------------------------------- */

int cli_main(int argc, char **argv)
{
    const char *verb;

    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (strcmp(verb, "--version") == 0 || strcmp(verb, "-V") == 0 || strcmp(verb, "version") == 0) {
        printf("switchyard %s\n", SY_VERSION);
        return EXIT_OK;
    }
    /* `switchyard VERB --help` shows the usage too. */
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        }
    }
    if (strcmp(verb, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(verb, "validate") == 0)
        return cmd_validate(argc - 1, argv + 1);
    if (strcmp(verb, "invoke") == 0)
        return cmd_invoke(argc - 1, argv + 1);
    if (strcmp(verb, "status") == 0)
        return cmd_status(argc - 1, argv + 1);
    if (strcmp(verb, "reload") == 0)
        return cmd_reload(argc - 1, argv + 1);
    if (strcmp(verb, "dlq") == 0)
        return cmd_dlq(argc - 1, argv + 1);
    if (strcmp(verb, "mappings") == 0)
        return cmd_mappings(argc - 1, argv + 1);
    if (strcmp(verb, "filter") == 0)
        return cmd_filter(argc - 1, argv + 1);
    fail_msg("unknown command '%s' (see switchyard --help)", verb);
    return EXIT_USAGE;
}
