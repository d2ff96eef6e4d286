/*
 * tests/integration/test_deploy.c - Lambda's deployment model through the write API, driven by
 * Debian's AWS CLI and boto3 against a broker with `auth_token: secret` and one function of its
 * own file:
 *   - the CLI: create-function from a zip (fileb://), the waiters, invoke, publish-version,
 *     update-function-code, invoke --qualifier (a version, an alias), create-alias;
 *   - boto3 (deploy/deploy_boto3.py): versions, weighted aliases, provisioned concurrency on an
 *     alias, reserved concurrency, an update during a slow invocation, configuration updates,
 *     Lambda's errors, refused archives (zip-slip, links out, corrupt, bombs), DeleteFunction;
 *   - layer versions (deploy/deploy_boto3.py): Python, Node, bin/ and custom-runtime layers,
 *     their order, List/Get/DeleteLayerVersion, the refusals;
 *   - a restart: what the API created is still there and runs, layers included;
 *   - the file's `code: x.zip` and `layers: [dir, y.zip]` (a restart with a second config),
 *     and the start refused for a zip-slip package and for a provided function that has no
 *     bootstrap anywhere;
 *   - writes without the token are refused.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* clang-format off */
#define CONFIG_BASE ITEST_BROKER_YAML \
    "  auth_token: secret\n" \
    "  max_concurrency: 50\n" \
    "functions:\n" \
    "  echo-py:\n" \
    "    runtime: python3\n" \
    "    handler: app.echo\n" \
    "    code: @HANDLERS@/python\n"
static const char config[] = CONFIG_BASE;

/* The same, plus the file's zips and layers (deploy/file_packages.py builds @DIR@/pkgs). */
static const char config_files[] = CONFIG_BASE
    "  zip-layered:\n"
    "    runtime: python3\n"
    "    handler: app.handler\n"
    "    code: @DIR@/pkgs/fn.zip\n"
    "    layers:\n"
    "      - @DIR@/pkgs/layer-dir\n"
    "      - @DIR@/pkgs/layer.zip\n"
    "  zip-provided:\n"
    "    runtime: provided\n"
    "    handler: echo\n"
    "    code: @DIR@/pkgs/noboot.zip\n"
    "    layers: [@HANDLERS@/provided]\n";

/* Configs the broker must refuse to start with: FUNCTIONS under a data_dir of their own. */
#define CONFIG_REFUSED(functions) \
    "broker:\n" \
    "  listen: 127.0.0.1:0\n" \
    "  data_dir: @DIR@/refused-data\n" \
    "functions:\n" functions
/* clang-format on */

static json_t *run_json(const struct h_run *r)
{
    json_t *j = h_json_parse(r->out, r->out_len);

    if (j == NULL)
        fail_msg("aws printed no JSON:\n%s\n%s", r->out, r->err);
    return j;
}

/* Write a zip at PATH holding app.py whose handler answers {"tag": TAG, ...}. */
static void write_zip(const char *path, const char *tag)
{
    char *script = h_strfmt(
        "import sys, zipfile\n"
        "src = ('import os\\n'\n"
        "       'def handler(event, context):\\n'\n"
        "       '    return {\"tag\": \"%s\", \"version\": context.function_version}\\n')\n"
        "with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n"
        "    z.writestr('app.py', src)\n",
        tag);
    char *argv[] = {"python3", "-c", script, (char *)path, NULL};
    struct h_run r;

    h_proc_run(argv, NULL, NULL, 20000, &r);
    expect_run_code(&r, 0);
    h_run_free(&r);
    free(script);
}

/* `aws lambda ARGS` with the token; its JSON output (NULL when EXPECT_JSON is false). */
static json_t *aws_ok(struct itest *t, const char *const args[], bool expect_json)
{
    struct h_run r;
    json_t *j = NULL;

    itest_aws(&t->b, "secret", args, &r);
    if (r.code != 0)
        fail_msg("aws %s failed (%d):\n%s\n%s", args[0], r.code, r.out, r.err);
    if (expect_json)
        j = run_json(&r);
    h_run_free(&r);
    return j;
}

/* Invoke NAME (QUALIFIER may be NULL) with the CLI; returns the payload's "tag". */
static char *cli_invoke_tag(struct itest *t, const char *name, const char *qualifier,
                            char *executed, size_t exsz)
{
    char *out = h_strfmt("%s/out.json", t->b.dir);
    const char *args[12] = {"invoke", "--function-name", name, "--payload", "{}",
                            "--cli-binary-format", "raw-in-base64-out"};
    size_t n = 7;
    json_t *j, *p;
    char *tag;
    size_t len;
    char *text;

    if (qualifier != NULL) {
        args[n++] = "--qualifier";
        args[n++] = qualifier;
    }
    args[n++] = out;
    args[n] = NULL;
    j = aws_ok(t, args, true);
    snprintf(executed, exsz, "%s", h_json_str(j, "ExecutedVersion") ?: "");
    json_decref(j);
    text = h_read_file(out, 0, &len);
    assert_non_null(text);
    p = h_json_parse(text, len);
    assert_non_null(p);
    tag = strdup(h_json_str(p, "tag") ?: "");
    json_decref(p);
    free(text);
    free(out);
    return tag;
}

static void test_cli_deploy(void **state)
{
    struct itest *t = *state;
    char *z1 = h_strfmt("%s/v1.zip", t->b.dir), *z2 = h_strfmt("%s/v2.zip", t->b.dir);
    char *f1 = h_strfmt("fileb://%s", z1), *f2 = h_strfmt("fileb://%s", z2);
    char executed[32];
    char *tag;
    json_t *j;

    if (!itest_have_aws()) {
        itest_end(t);
        skip();
    }
    write_zip(z1, "one");
    write_zip(z2, "two");
    {
        const char *args[] = {"create-function", "--function-name", "cli-fn", "--runtime",
                              "python3.11", "--role", "arn:aws:iam::000000000000:role/x",
                              "--handler", "app.handler", "--zip-file", f1, NULL};

        j = aws_ok(t, args, true);
        assert_string_equal(h_json_str(j, "FunctionName"), "cli-fn");
        assert_string_equal(h_json_str(j, "Version"), "$LATEST");
        assert_non_null(h_json_str(j, "CodeSha256"));
        json_decref(j);
    }
    {
        const char *args[] = {"wait", "function-active-v2", "--function-name", "cli-fn", NULL};

        aws_ok(t, args, false);
    }
    tag = cli_invoke_tag(t, "cli-fn", NULL, executed, sizeof(executed));
    assert_string_equal(tag, "one");
    assert_string_equal(executed, "$LATEST");
    free(tag);
    {
        const char *args[] = {"publish-version", "--function-name", "cli-fn", NULL};

        j = aws_ok(t, args, true);
        assert_string_equal(h_json_str(j, "Version"), "1");
        json_decref(j);
    }
    {
        const char *args[] = {"update-function-code", "--function-name", "cli-fn", "--zip-file",
                              f2, NULL};

        j = aws_ok(t, args, true);
        json_decref(j);
    }
    {
        const char *args[] = {"wait", "function-updated-v2", "--function-name", "cli-fn", NULL};

        aws_ok(t, args, false);
    }
    tag = cli_invoke_tag(t, "cli-fn", NULL, executed, sizeof(executed));
    assert_string_equal(tag, "two");
    free(tag);
    tag = cli_invoke_tag(t, "cli-fn", "1", executed, sizeof(executed));
    assert_string_equal(tag, "one");
    assert_string_equal(executed, "1");
    free(tag);
    {
        const char *args[] = {"create-alias", "--function-name", "cli-fn", "--name", "prod",
                              "--function-version", "1", NULL};

        j = aws_ok(t, args, true);
        assert_string_equal(h_json_str(j, "FunctionVersion"), "1");
        json_decref(j);
    }
    tag = cli_invoke_tag(t, "cli-fn", "prod", executed, sizeof(executed));
    assert_string_equal(tag, "one");
    assert_string_equal(executed, "1");
    free(tag);
    free(z1);
    free(z2);
    free(f1);
    free(f2);
    itest_end(t);
}

static void test_boto3(void **state)
{
    struct itest *t = *state;
    const char *src = getenv("SY_SOURCE_DIR");
    char *script = h_strfmt("%s/tests/integration/deploy/deploy_boto3.py", src ? src : ".");
    char *url = h_broker_url(&t->b);
    char *argv[] = {"python3", script, url, "secret", t->b.dir, NULL};
    struct h_run r;

    h_proc_run(argv, NULL, t->b.dir, 240000, &r);
    if (r.code != 0)
        fail_msg("deploy_boto3.py failed (%d):\n%s\n%s", r.code, r.out, r.err);
    expect_contains(r.out, "all ok");
    h_run_free(&r);
    free(script);
    free(url);
    itest_end(t);
}

/* Run the broker on YAML (expanded), which it must refuse: exit 1, stderr holding WANT. */
static void expect_start_refused(struct itest *t, const char *yaml, const char *want)
{
    char *text = h_broker_expand(&t->b, yaml);
    char *path = h_strfmt("%s/refused.yaml", t->b.dir);
    char *argv[] = {(char *)h_binary(), "run", path, NULL};
    struct h_run r;

    assert_int_equal(h_write_file(path, text, strlen(text)), 0);
    h_proc_run(argv, NULL, t->b.dir, 30000, &r);
    if (r.code != 1)
        fail_msg("the broker did not refuse %s (exit %d):\n%s\n%s", path, r.code, r.out, r.err);
    expect_contains(r.err, want);
    expect_contains(r.err, "not starting");
    h_run_free(&r);
    free(path);
    free(text);
}

/*
 * The file's `code: fn.zip` with `layers: [layer-dir, layer.zip]`: the zip's CodeSha256 and
 * CodeSize, the layers in order (layer.zip's over.py wins), site-packages and bin/ of the
 * layers, a provided function whose bootstrap is a layer's; refused packages stop the start.
 */
static void test_file_zip_layers(void **state)
{
    struct itest *t = *state;
    const char *src = getenv("SY_SOURCE_DIR");
    char *script = h_strfmt("%s/tests/integration/deploy/file_packages.py", src ? src : ".");
    char *pkgs = h_strfmt("%s/pkgs", t->b.dir), *info_path = h_strfmt("%s/info.json", pkgs);
    char *argv[] = {"python3", script, pkgs, NULL};
    struct h_http_resp resp;
    struct h_run r;
    json_t *info, *j, *layers;
    char *arn;

    h_proc_run(argv, NULL, NULL, 20000, &r);
    expect_run_code(&r, 0);
    h_run_free(&r);
    info = h_json_file(info_path);
    assert_non_null(info);

    expect_start_refused(t, CONFIG_REFUSED("  slip:\n"
                                           "    runtime: python3\n"
                                           "    handler: app.handler\n"
                                           "    code: @DIR@/pkgs/slip.zip\n"),
                         "functions.slip.code: ");
    expect_start_refused(t, CONFIG_REFUSED("  noboot:\n"
                                           "    runtime: provided\n"
                                           "    code: @DIR@/pkgs/noboot.zip\n"),
                         "functions.noboot.code: runtime provided needs an executable "
                         "'bootstrap'");

    assert_int_equal(h_broker_stop(&t->b, 15000), 0);
    assert_int_equal(h_broker_write_config(&t->b, config_files), 0);
    assert_int_equal(h_broker_start(&t->b, NULL, ITEST_READY_MS), 0);
    t->mark = h_broker_log_mark(&t->b);

    itest_invoke(t, "zip-layered", "{}", NULL, &resp);
    expect_status(&resp, 200);
    j = resp_json(&resp);
    assert_string_equal(h_json_str(j, "shared"), "layer-dir");
    assert_string_equal(h_json_str(j, "over"), "layer.zip");
    assert_string_equal(h_json_str(j, "sitepkg"), "site-packages");
    assert_string_equal(h_json_str(j, "tool"), "filetool-ran");
    /* The unpacked tree in the store, not the zip. */
    expect_contains(h_json_str(j, "task_root"), "/data/packages/");
    json_decref(j);
    h_http_resp_free(&resp);

    assert_int_equal(h_broker_request(&t->b, "GET",
                                      "/2015-03-31/functions/zip-layered/configuration", NULL,
                                      NULL, 0, 10000, &resp),
                     0);
    expect_status(&resp, 200);
    j = resp_json(&resp);
    assert_string_equal(h_json_str(j, "CodeSha256"),
                        h_json_str(json_object_get(info, "fn"), "sha256"));
    assert_int_equal(h_json_int(j, "CodeSize", -1),
                     h_json_int(json_object_get(info, "fn"), "size", -2));
    layers = json_object_get(j, "Layers");
    assert_int_equal(json_array_size(layers), 2);
    arn = h_strfmt("arn:aws:lambda:us-east-1:000000000000:layer:file-layer-dir:1");
    assert_string_equal(h_json_str(json_array_get(layers, 0), "Arn"), arn);
    free(arn);
    assert_string_equal(h_json_str(json_array_get(layers, 1), "Arn"),
                        "arn:aws:lambda:us-east-1:000000000000:layer:file-layer:1");
    assert_int_equal(h_json_int(json_array_get(layers, 1), "CodeSize", -1),
                     h_json_int(json_object_get(info, "layer"), "size", -2));
    /* layer-dir's regular files: shared.py, over.py, filetool. */
    assert_true(h_json_int(json_array_get(layers, 0), "CodeSize", -1) > 0);
    json_decref(j);
    h_http_resp_free(&resp);

    /* A custom runtime shipped as a layer: the code has no bootstrap, the layer has. */
    itest_invoke(t, "zip-provided", "{\"via\":\"layer\"}", NULL, &resp);
    expect_status(&resp, 200);
    j = resp_json(&resp);
    assert_string_equal(h_json_str(j, "via"), "layer");
    json_decref(j);
    h_http_resp_free(&resp);

    json_decref(info);
    free(script);
    free(pkgs);
    free(info_path);
    itest_end(t);
}

/* After a restart the API's functions, versions and aliases are back, and run. */
static void test_restart_keeps_state(void **state)
{
    struct itest *t = *state;
    char executed[32];
    char *tag;
    json_t *j;

    if (!itest_have_aws()) {
        itest_end(t);
        skip();
    }
    assert_int_equal(h_broker_stop(&t->b, 15000), 0);
    /* A package no document names (a crash between unpack and store, an old code version):
     * the start-up collection removes it; everything in use stays (the invokes below). */
    {
        char *junk = h_strfmt("%s/packages/%064d", t->b.data_dir, 0);

        assert_int_equal(mkdir(junk, 0755), 0);
        assert_int_equal(h_broker_start(&t->b, NULL, ITEST_READY_MS), 0);
        assert_int_not_equal(access(junk, F_OK), 0);
        free(junk);
    }
    t->mark = h_broker_log_mark(&t->b);
    tag = cli_invoke_tag(t, "cli-fn", "prod", executed, sizeof(executed));
    assert_string_equal(tag, "one");
    assert_string_equal(executed, "1");
    free(tag);
    tag = cli_invoke_tag(t, "cli-fn", NULL, executed, sizeof(executed));
    assert_string_equal(tag, "two");
    free(tag);
    {
        const char *args[] = {"list-versions-by-function", "--function-name", "cli-fn", NULL};

        j = aws_ok(t, args, true);
        assert_int_equal(json_array_size(json_object_get(j, "Versions")), 2);
        json_decref(j);
    }
    /* Layer versions are restored, and a function whose layer version was deleted still runs. */
    tag = cli_invoke_tag(t, "uses-pylib", NULL, executed, sizeof(executed));
    assert_string_equal(tag, "pylib");
    free(tag);
    {
        const char *args[] = {"list-layer-versions", "--layer-name", "pylib", NULL};

        j = aws_ok(t, args, true);
        /* 1 and 2 were deleted; 3 and 4 are left, newest first. */
        assert_int_equal(json_array_size(json_object_get(j, "LayerVersions")), 2);
        assert_int_equal(h_json_int(json_array_get(json_object_get(j, "LayerVersions"), 0),
                                    "Version", -1),
                         4);
        json_decref(j);
    }
    {
        const char *args[] = {"publish-layer-version", "--layer-name", "pylib", "--zip-file",
                              NULL, NULL};
        char *z = h_strfmt("%s/v1.zip", t->b.dir), *f = h_strfmt("fileb://%s", z);

        args[4] = f;
        j = aws_ok(t, args, true);
        /* Numbers are never given twice, across a restart too. */
        assert_int_equal(h_json_int(j, "Version", -1), 5);
        json_decref(j);
        free(z);
        free(f);
    }
    itest_end(t);
}

/* Writes need the token like every other request. */
static void test_writes_need_token(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    const char *body = "{\"FunctionName\":\"x\",\"Runtime\":\"python3.11\",\"Handler\":\"a.b\","
                       "\"Code\":{\"ZipFile\":\"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\"}}";

    t->b.token = NULL;
    assert_int_equal(h_broker_request(&t->b, "POST", "/2015-03-31/functions", NULL, body,
                                      strlen(body), 10000, &r),
                     0);
    expect_status(&r, 401);
    h_http_resp_free(&r);
    t->b.token = "secret";
    itest_end(t);
}

static int group_setup(void **state)
{
    int rc = itest_group_start(state, "deploy", config, NULL);
    struct itest *t = *state;

    if (t != NULL)
        t->b.token = "secret";
    return rc;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, itest_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_writes_need_token),
        T(test_cli_deploy),
        T(test_boto3),
        T(test_restart_keeps_state),
        T(test_file_zip_layers),
    };

    itest_filter_from_env();
    return itest_run_group("deploy", tests, group_setup);
}
