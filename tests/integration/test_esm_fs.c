/*
 * tests/integration/test_esm_fs.c - the file-drop source end to end: real directories, a real
 * broker (`switchyard run`) and real Python handlers (handlers/fs/app.py) that open each file
 * at the record's switchyard.path, check its MD5 against the eTag, and write one file per
 * record they get (OUT/<handler>/<key>.<delivery>).
 *
 *   - the S3 ObjectCreated record, field by field, as the handler parsed it;
 *   - a file written in place is delivered once as ObjectCreated:Put; one written under a
 *     temporary name and renamed, once, under its final name, as ObjectCreated:Copy; the
 *     temporary name (and dot-files) never;
 *   - a file still open for writing is not delivered before it is closed; with min_age_ms, a
 *     file whose writer never closes it is delivered once it stopped changing;
 *   - recursion: a directory with files already inside, renamed into the tree;
 *   - prefix / suffix rules and a non-UTF-8 name (the key %-encoded, the path in base64);
 *   - catch-up: files dropped while the broker was down are delivered after the restart, and
 *     files processed before (on_success keep) are not delivered again;
 *   - on_success delete and move:DIR (a DIR inside the watched tree is not watched);
 *   - on_failure move:DIR after the retries are spent, with the on-failure record;
 *   - bisect: one poison file in a batch ends in the failure directory, the rest is processed;
 *   - an inotify queue overflow (the broker stopped with SIGSTOP while 9000 files land): the
 *     rescan delivers every file once;
 *   - a file deleted before the broker read it: skipped and logged;
 *   - the watched directory moved away: PROBLEM in LastProcessingResult, and once it is back,
 *     its files are delivered;
 *   - a file the broker cannot read (skipped when the test runs as root, which reads anything).
 *
 * Every wait polls with a deadline.
 */
#include "itest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rworld.h"

/* clang-format off */
#define FN(name, handler, out)                                                                     \
    "  " name ": {runtime: python3, handler: app." handler ", code: @FIXTURES@/fs, timeout_s: 30,\n" \
    "     environment: {OUT: '@DIR@/" out "', PYTHONDONTWRITEBYTECODE: '1'}}\n"

static const char config[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "  max_concurrency: 40\n"
    "functions:\n"
    FN("rec-put", "record", "out-put")
    FN("rec-del", "record", "out-del")
    FN("rec-mv", "record", "out-mv")
    FN("rec-fail", "poison", "out-fail")
    FN("rec-bisect", "poison", "out-bisect")
    FN("rec-over", "record", "out-over")
    FN("rec-gone", "record", "out-gone")
    FN("rec-pre", "record", "out-pre")
    FN("rec-age", "record", "out-age")
    "mappings:\n"
    "  - name: put\n"
    "    function: rec-put\n"
    "    source: {fs: {path: '@DIR@/in-put', recursive: true}}\n"
    "  - name: del\n"
    "    function: rec-del\n"
    "    source: {fs: {path: '@DIR@/in-del', on_success: delete}}\n"
    "  - name: mv\n"
    "    function: rec-mv\n"
    "    source: {fs: {path: '@DIR@/in-mv', recursive: true, on_success: 'move:@DIR@/in-mv/processed'}}\n"
    "  - name: fail\n"
    "    function: rec-fail\n"
    "    maximum_retry_attempts: 1\n"
    "    on_failure: 'file:@DIR@/fail-dest'\n"
    "    source: {fs: {path: '@DIR@/in-fail', on_success: delete, on_failure: 'move:@DIR@/failed'}}\n"
    "  - name: bisect\n"
    "    function: rec-bisect\n"
    "    batch_size: 8\n"
    "    maximum_batching_window_ms: 300\n"
    "    bisect_batch_on_function_error: true\n"
    "    maximum_retry_attempts: 0\n"
    "    source: {fs: {path: '@DIR@/in-bisect', on_success: delete,\n"
    "                  on_failure: 'move:@DIR@/bisect-failed'}}\n"
    "  - name: over\n"
    "    function: rec-over\n"
    "    batch_size: 100\n"
    "    maximum_batching_window_ms: 50\n"
    "    source: {fs: {path: '@DIR@/in-over', on_success: delete}}\n"
    "  - name: gone\n"
    "    function: rec-gone\n"
    "    source: {fs: {path: '@DIR@/in-gone'}}\n"
    "  - name: pre\n"
    "    function: rec-pre\n"
    "    source: {fs: {path: '@DIR@/in-pre', recursive: true, prefix: 'in/', suffix: .csv,\n"
    "                  bucket: landing}}\n"
    "  - name: age\n"
    "    function: rec-age\n"
    "    source: {fs: {path: '@DIR@/in-age', min_age_ms: 400, scan_interval_ms: 100}}\n";
/* clang-format on */

static char *dir_of(const struct rworld *w, const char *sub)
{
    return h_strfmt("%s/%s", w->b.dir, sub);
}

/* Write CONTENT to DIR/NAME in place (open, write, close: one IN_CLOSE_WRITE). */
static void drop(const char *dir, const char *name, const char *content)
{
    char *p = h_strfmt("%s/%s", dir, name);

    assert_int_equal(h_write_file(p, content, strlen(content)), 0);
    free(p);
}

/* Write CONTENT to DIR/.NAME.part, then rename it to DIR/NAME (an upload's usual pattern). */
static void drop_renamed(const char *dir, const char *name, const char *content)
{
    char *tmp = h_strfmt("%s/%s.part", dir, name), *p = h_strfmt("%s/%s", dir, name);

    assert_int_equal(h_write_file(tmp, content, strlen(content)), 0);
    assert_int_equal(rename(tmp, p), 0);
    free(tmp);
    free(p);
}

/* The handler's copy of the record of KEY's delivery N (new), failing the test if absent. */
static json_t *record_of(const char *out, const char *key, int n)
{
    char *k = h_str_replace(key, "/", "%2F");
    char *p = h_strfmt("%s/%s.%d", out, k, n);
    json_t *j = h_json_file(p);

    if (j == NULL)
        fail_msg("no record %s", p);
    free(p);
    free(k);
    return j;
}

static bool exists(const char *dir, const char *name)
{
    char *p = h_strfmt("%s/%s", dir, name);
    struct stat st;
    bool ok = lstat(p, &st) == 0;

    free(p);
    return ok;
}

/* Wait until DIR/NAME exists (WANT) or is gone (!WANT). */
static void await_exists(const char *dir, const char *name, bool want, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (exists(dir, name) != want) {
        if (h_now_ms() > deadline)
            fail_msg("%s/%s still %s after %d ms", dir, name, want ? "missing" : "there",
                     timeout_ms);
        h_sleep_ms(20);
    }
}

static const char *obj_str(const json_t *j, const char *a, const char *b, const char *c)
{
    const json_t *o = json_object_get(j, a);

    if (b != NULL)
        o = json_object_get(o, b);
    if (c != NULL)
        o = json_object_get(o, c);
    return json_is_string(o) ? json_string_value(o) : "";
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_s3_shape(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-put"), *out = dir_of(w, "out-put/record");
    char *sub = h_strfmt("%s/sub", in);
    json_t *rec, *s3, *obj;
    const char *t;
    char seq[32];

    assert_int_equal(mkdir(sub, 0755), 0);
    drop(sub, "a b+c.txt", "hello\n");
    rworld_await_files(out, 1, 20000);
    rec = record_of(out, "sub/a+b%2Bc.txt", 1);
    assert_string_equal(h_json_str(rec, "eventVersion"), "2.1");
    assert_string_equal(h_json_str(rec, "eventSource"), "aws:s3");
    assert_string_equal(h_json_str(rec, "awsRegion"), "us-east-1");
    t = h_json_str(rec, "eventTime");
    assert_int_equal(strlen(t), 24); /* 2026-12-01T12:00:00.000Z */
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[19], '.');
    assert_int_equal(t[23], 'Z');
    assert_string_equal(h_json_str(rec, "eventName"), "ObjectCreated:Put");
    expect_contains(obj_str(rec, "userIdentity", "principalId", NULL), "uid:");
    assert_string_equal(obj_str(rec, "requestParameters", "sourceIPAddress", NULL), "127.0.0.1");
    assert_int_equal(strlen(obj_str(rec, "responseElements", "x-amz-request-id", NULL)), 16);
    assert_true(strlen(obj_str(rec, "responseElements", "x-amz-id-2", NULL)) > 0);
    s3 = json_object_get(rec, "s3");
    assert_string_equal(h_json_str(s3, "s3SchemaVersion"), "1.0");
    assert_string_equal(h_json_str(s3, "configurationId"), "put");
    assert_string_equal(obj_str(s3, "bucket", "name", NULL), "in-put");
    assert_string_equal(obj_str(s3, "bucket", "ownerIdentity", "principalId"), "000000000000");
    assert_string_equal(obj_str(s3, "bucket", "arn", NULL), "arn:aws:s3:::in-put");
    obj = json_object_get(s3, "object");
    assert_string_equal(h_json_str(obj, "key"), "sub/a+b%2Bc.txt");
    assert_int_equal(json_integer_value(json_object_get(obj, "size")), 6);
    assert_string_equal(h_json_str(obj, "eTag"), "b1946ac92492d2347c6235b4d2611184");
    snprintf(seq, sizeof(seq), "%s", h_json_str(obj, "sequencer"));
    assert_int_equal(strlen(seq), 18);
    assert_int_equal(strspn(seq, "0123456789ABCDEF"), 18);
    /* Where we go further than S3: the path, which the handler opened. */
    assert_string_equal(obj_str(rec, "switchyard", "root", NULL), in);
    expect_contains(obj_str(rec, "switchyard", "path", NULL), "/in-put/sub/a b+c.txt");
    assert_true(json_is_true(json_object_get(rec, "read_ok")));
    json_decref(rec);

    /* Overwritten with new content: a new object, with a greater sequencer. */
    drop(sub, "a b+c.txt", "hello again\n");
    rworld_await_files(out, 1, 20000);
    await_exists(out, "sub%2Fa+b%2Bc.txt.2", true, 20000);
    rec = record_of(out, "sub/a+b%2Bc.txt", 2);
    assert_true(strcmp(obj_str(rec, "s3", "object", "sequencer"), seq) > 0);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(rec, "s3"), "object"), "size")),
                     12);
    json_decref(rec);
    free(sub);
    free(in);
    free(out);
    rworld_end(w);
}

static void test_rename_vs_in_place(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-put"), *out = dir_of(w, "out-put/record");
    size_t all_before, before = rworld_count_files(out, &all_before), all;
    json_t *rec;

    drop(in, "in-place.txt", "written in place\n");
    drop_renamed(in, "renamed.txt", "written, then renamed\n");
    drop(in, "scratch.tmp", "never\n");
    drop(in, ".hidden", "never\n");
    drop(in, "vi.swp", "never\n");
    rworld_await_files(out, before + 2, 20000);
    h_sleep_ms(300); /* nothing else may come: the others are ignored */
    assert_int_equal(rworld_count_files(out, &all), before + 2);
    assert_int_equal(all, all_before + 2);
    rec = record_of(out, "in-place.txt", 1);
    assert_string_equal(h_json_str(rec, "eventName"), "ObjectCreated:Put");
    json_decref(rec);
    rec = record_of(out, "renamed.txt", 1);
    assert_string_equal(h_json_str(rec, "eventName"), "ObjectCreated:Copy");
    assert_true(json_is_true(json_object_get(rec, "read_ok")));
    json_decref(rec);
    assert_false(exists(out, "renamed.txt.part.1"));
    free(in);
    free(out);
    rworld_end(w);
}

/* A file open for writing is not delivered; its close delivers it, whole. */
static void test_open_file_waits_for_close(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-put"), *out = dir_of(w, "out-put/record");
    char *p = h_strfmt("%s/slow-writer.txt", in);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    json_t *rec;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "part one\n", 9), 9);
    h_sleep_ms(400);
    assert_false(exists(out, "slow-writer.txt.1"));
    assert_int_equal(write(fd, "part two\n", 9), 9);
    assert_int_equal(close(fd), 0);
    await_exists(out, "slow-writer.txt.1", true, 20000);
    rec = record_of(out, "slow-writer.txt", 1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(rec, "s3"), "object"), "size")),
                     18);
    assert_true(json_is_true(json_object_get(rec, "read_ok")));
    json_decref(rec);
    free(p);
    free(in);
    free(out);
    rworld_end(w);
}

/* min_age_ms: a writer that never closes (an appender): taken once it stopped changing. */
static void test_min_age_never_closed(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-age"), *out = dir_of(w, "out-age/record");
    char *p = h_strfmt("%s/append.log", in);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    json_t *rec;

    assert_true(fd >= 0);
    for (int i = 0; i < 6; i++) { /* 600 ms of writes, each younger than min_age_ms */
        assert_int_equal(write(fd, "line\n", 5), 5);
        h_sleep_ms(100);
        assert_false(exists(out, "append.log.1"));
    }
    /* Still open: no close event ever comes; the scan takes it 400 ms after the last write. */
    await_exists(out, "append.log.1", true, 20000);
    rec = record_of(out, "append.log", 1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(rec, "s3"), "object"), "size")),
                     30);
    json_decref(rec);
    assert_int_equal(close(fd), 0);
    free(p);
    free(in);
    free(out);
    rworld_end(w);
}

/* A directory prepared elsewhere, with files (and a subdirectory) inside, renamed into the
 * tree: everything in it is delivered, under its relative path. */
static void test_recursive_new_dir(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-put"), *out = dir_of(w, "out-put/record");
    char *pre = dir_of(w, "prepared"), *deep = h_strfmt("%s/deeper", pre);
    char *target = h_strfmt("%s/batch-7", in), *made = h_strfmt("%s/made-later", in);
    size_t before = rworld_count_files(out, NULL);

    assert_int_equal(mkdir(pre, 0755), 0);
    assert_int_equal(mkdir(deep, 0755), 0);
    drop(pre, "one.txt", "1\n");
    drop(pre, "two.txt", "2\n");
    drop(deep, "three.txt", "3\n");
    assert_int_equal(rename(pre, target), 0);
    await_exists(out, "batch-7%2Fdeeper%2Fthree.txt.1", true, 20000);
    await_exists(out, "batch-7%2Fone.txt.1", true, 20000);
    await_exists(out, "batch-7%2Ftwo.txt.1", true, 20000);
    /* A directory made in place, then written into: watched from its creation on. */
    assert_int_equal(mkdir(made, 0755), 0);
    drop(made, "four.txt", "4\n");
    await_exists(out, "made-later%2Ffour.txt.1", true, 20000);
    assert_int_equal(rworld_count_files(out, NULL), before + 4);
    free(pre);
    free(deep);
    free(target);
    free(made);
    free(in);
    free(out);
    rworld_end(w);
}

/* prefix / suffix like S3's notification filter rules; bucket from the config. */
static void test_prefix_suffix(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-pre"), *out = dir_of(w, "out-pre/record");
    char *inbox = h_strfmt("%s/in", in), *other = h_strfmt("%s/other", in);
    json_t *rec;

    assert_int_equal(mkdir(inbox, 0755), 0);
    assert_int_equal(mkdir(other, 0755), 0);
    drop(inbox, "ok.csv", "a,b\n");
    drop(inbox, "no.txt", "x\n");
    drop(other, "no.csv", "x\n");
    drop(in, "top.csv", "x\n");
    rworld_await_files(out, 1, 20000);
    h_sleep_ms(300);
    assert_int_equal(rworld_count_files(out, NULL), 1);
    rec = record_of(out, "in/ok.csv", 1);
    assert_string_equal(obj_str(rec, "s3", "bucket", "name"), "landing");
    assert_string_equal(obj_str(rec, "s3", "bucket", "arn"), "arn:aws:s3:::landing");
    json_decref(rec);
    free(inbox);
    free(other);
    free(in);
    free(out);
    rworld_end(w);
}

/* A name that is not UTF-8: the key is %-encoded and the path comes in base64. */
static void test_non_utf8_name(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-put"), *out = dir_of(w, "out-put/record");
    json_t *rec;

    drop(in, "bad\xff\xfe name.txt", "bytes\n");
    await_exists(out, "bad%FF%FE+name.txt.1", true, 20000);
    rec = record_of(out, "bad%FF%FE+name.txt", 1);
    assert_null(json_object_get(json_object_get(rec, "switchyard"), "path"));
    assert_true(json_is_string(json_object_get(json_object_get(rec, "switchyard"), "pathBase64")));
    assert_true(json_is_true(json_object_get(rec, "read_ok")));
    json_decref(rec);
    free(in);
    free(out);
    rworld_end(w);
}

/*
 * Catch-up: files dropped while the broker is down are delivered after the restart; files
 * processed before (kept in place) are not delivered again; one kept and then changed while
 * the broker was down is a new object.
 */
static void test_catch_up_after_restart(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-put"), *out = dir_of(w, "out-put/record");
    size_t before, all_before, after, all_after;

    drop(in, "kept.txt", "before the restart\n");
    await_exists(out, "kept.txt.1", true, 20000);
    drop(in, "changed.txt", "v1\n");
    await_exists(out, "changed.txt.1", true, 20000);
    before = rworld_count_files(out, &all_before);
    assert_int_equal(h_broker_stop(&w->b, 15000), 0);

    drop(in, "while-down-1.txt", "1\n");
    drop_renamed(in, "while-down-2.txt", "2\n");
    drop(in, "changed.txt", "v2, longer\n");
    assert_int_equal(rworld_start_broker(w), 0);
    w->mark = 0;
    await_exists(out, "while-down-1.txt.1", true, 20000);
    await_exists(out, "while-down-2.txt.1", true, 20000);
    await_exists(out, "changed.txt.2", true, 20000);
    h_sleep_ms(300);
    after = rworld_count_files(out, &all_after);
    assert_int_equal(after, before + 2);
    assert_int_equal(all_after, all_before + 3); /* the two new ones and changed.txt.2 */
    assert_false(exists(out, "kept.txt.2"));
    free(in);
    free(out);
    rworld_end(w);
}

static void test_success_delete_and_move(void **state)
{
    struct rworld *w = *state;
    char *in_del = dir_of(w, "in-del"), *out_del = dir_of(w, "out-del/record");
    char *in_mv = dir_of(w, "in-mv"), *out_mv = dir_of(w, "out-mv/record");
    char *sub = h_strfmt("%s/2026", in_mv), *done = h_strfmt("%s/processed", in_mv);
    char *done_sub = h_strfmt("%s/2026", done);

    drop(in_del, "gone.txt", "delete me\n");
    await_exists(out_del, "gone.txt.1", true, 20000);
    await_exists(in_del, "gone.txt", false, 10000);

    assert_int_equal(mkdir(sub, 0755), 0);
    drop(sub, "moved.txt", "move me\n");
    drop(in_mv, "top.txt", "move me too\n");
    await_exists(out_mv, "2026%2Fmoved.txt.1", true, 20000);
    await_exists(done_sub, "moved.txt", true, 10000);
    await_exists(done, "top.txt", true, 10000);
    assert_false(exists(sub, "moved.txt"));
    /* The move directory is inside the watched tree: it is never watched or scanned. */
    h_sleep_ms(300);
    assert_int_equal(rworld_count_files(out_mv, NULL), 2);
    assert_false(exists(out_mv, "processed%2Ftop.txt.1"));
    free(sub);
    free(done);
    free(done_sub);
    free(in_del);
    free(out_del);
    free(in_mv);
    free(out_mv);
    rworld_end(w);
}

static void test_failure_move_and_on_failure(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-fail"), *failed = dir_of(w, "failed"), *dest = dir_of(w, "fail-dest");
    int64_t deadline = h_now_ms() + 30000;
    json_t *j, *info;

    drop(in, "bad.txt", "this is poison\n");
    await_exists(failed, "bad.txt", true, 30000);
    assert_false(exists(in, "bad.txt"));
    while ((j = h_json_first_file(dest)) == NULL) {
        if (h_now_ms() > deadline)
            fail_msg("no on-failure record in %s", dest);
        h_sleep_ms(50);
    }
    assert_string_equal(h_json_str(json_object_get(j, "requestContext"), "condition"),
                        "RetryAttemptsExhausted");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "requestContext"),
                                                        "approximateInvokeCount")),
                     2);
    assert_string_equal(h_json_str(json_object_get(j, "responseContext"), "errorType"),
                        "RuntimeError");
    info = json_object_get(j, "FileBatchInfo");
    assert_non_null(info);
    assert_int_equal(json_integer_value(json_object_get(info, "batchSize")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(info, "keys"), 0)),
                        "bad.txt");
    assert_string_equal(h_json_str(info, "eventSourceArn"), "arn:aws:s3:::in-fail");
    json_decref(j);
    free(in);
    free(failed);
    free(dest);
    rworld_end(w);
}

static void test_bisect_poison_file(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-bisect"), *out = dir_of(w, "out-bisect/poison");
    char *failed = dir_of(w, "bisect-failed");
    char *stage = dir_of(w, "bisect-stage");

    /* Staged, then renamed in together, so that they form one batch. */
    assert_int_equal(mkdir(stage, 0755), 0);
    for (int i = 0; i < 7; i++) {
        char name[32];

        snprintf(name, sizeof(name), "good-%d.txt", i);
        drop(stage, name, "fine\n");
    }
    drop(stage, "evil.txt", "poison\n");
    for (int i = 0; i < 7; i++) {
        char *a = h_strfmt("%s/good-%d.txt", stage, i), *b = h_strfmt("%s/good-%d.txt", in, i);

        assert_int_equal(rename(a, b), 0);
        free(a);
        free(b);
        if (i == 3) {
            char *c = h_strfmt("%s/evil.txt", stage), *d = h_strfmt("%s/evil.txt", in);

            assert_int_equal(rename(c, d), 0);
            free(c);
            free(d);
        }
    }
    rworld_await_files(out, 7, 30000);
    await_exists(failed, "evil.txt", true, 30000);
    for (int i = 0; i < 7; i++) {
        char name[32];

        snprintf(name, sizeof(name), "good-%d.txt", i);
        await_exists(in, name, false, 10000);
    }
    assert_int_equal(rworld_count_files(out, NULL), 7);
    free(in);
    free(out);
    free(failed);
    free(stage);
    rworld_end(w);
}

/* The broker stopped (SIGSTOP) while more files land than the inotify queue holds: the kernel
 * reports IN_Q_OVERFLOW, and the rescan finds every file. */
static void test_overflow_rescan(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-over"), *out = dir_of(w, "out-over/record");
    const int n = 9000; /* two events each (create, close): more than max_queued_events */
    size_t all;

    assert_int_equal(kill(w->b.proc.pid, SIGSTOP), 0);
    for (int i = 0; i < n; i++) {
        char name[32];

        snprintf(name, sizeof(name), "f%05d.txt", i);
        drop(in, name, "x\n");
    }
    assert_int_equal(kill(w->b.proc.pid, SIGCONT), 0);
    rworld_await_files(out, (size_t)n, 120000);
    h_sleep_ms(300);
    assert_int_equal(rworld_count_files(out, &all), (size_t)n);
    assert_int_equal(all, (size_t)n);
    {
        size_t len;
        char *log = h_read_file(w->b.log_path, w->mark, &len);

        assert_non_null(log);
        expect_contains(log, "inotify queue overflowed");
        free(log);
    }
    free(in);
    free(out);
    rworld_end(w);
}

/* A file deleted before the broker read it is skipped (and logged); the next one still comes.
 * The broker is stopped meanwhile so that both events wait in the queue. */
static void test_deleted_before_read(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-put"), *out = dir_of(w, "out-put/record");
    char *p = h_strfmt("%s/short-lived.txt", in);
    size_t len;
    char *log;

    assert_int_equal(kill(w->b.proc.pid, SIGSTOP), 0);
    drop(in, "short-lived.txt", "here and gone\n");
    assert_int_equal(unlink(p), 0);
    drop(in, "survivor.txt", "stays\n");
    assert_int_equal(kill(w->b.proc.pid, SIGCONT), 0);
    await_exists(out, "survivor.txt.1", true, 20000);
    assert_false(exists(out, "short-lived.txt.1"));
    log = h_read_file(w->b.log_path, w->mark, &len);
    assert_non_null(log);
    expect_contains(log, "short-lived.txt was deleted before it was read");
    free(log);
    free(p);
    free(in);
    free(out);
    rworld_end(w);
}

/* The watched directory moved away: a visible problem; a new one in its place is watched. */
static void test_root_replaced(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-gone"), *old = dir_of(w, "in-gone.old");
    char *out = dir_of(w, "out-gone/record");
    int64_t deadline;
    json_t *m;

    drop(in, "first.txt", "1\n");
    await_exists(out, "first.txt.1", true, 20000);
    assert_int_equal(rename(in, old), 0);
    m = rworld_await_problem(w, "gone", 20000);
    expect_contains(h_json_str(m, "LastProcessingResult"), "in-gone");
    json_decref(m);
    assert_int_equal(mkdir(in, 0755), 0);
    drop(in, "second.txt", "2\n");
    await_exists(out, "second.txt.1", true, 20000);
    deadline = h_now_ms() + 10000;
    for (;;) {
        m = rworld_mapping_json(w, "gone");
        if (strncmp(h_json_str(m, "LastProcessingResult"), "PROBLEM", 7) != 0)
            break;
        json_decref(m);
        if (h_now_ms() > deadline)
            fail_msg("the mapping still reports a problem");
        h_sleep_ms(50);
    }
    json_decref(m);
    free(in);
    free(old);
    free(out);
    rworld_end(w);
}

/* A file the broker may not read is not delivered (and the others still are). As root every
 * file is readable, so this runs only as another user. */
static void test_permission_denied(void **state)
{
    struct rworld *w = *state;
    char *in = dir_of(w, "in-put"), *out = dir_of(w, "out-put/record");
    char *p = h_strfmt("%s/secret.txt", in);

    if (geteuid() == 0) {
        free(p);
        free(in);
        free(out);
        rworld_end(w);
        skip();
    }
    assert_int_equal(h_write_file(p, "no\n", 3), 0);
    assert_int_equal(chmod(p, 0), 0);
    drop(in, "after-secret.txt", "yes\n");
    await_exists(out, "after-secret.txt.1", true, 20000);
    assert_false(exists(out, "secret.txt.1"));
    free(p);
    free(in);
    free(out);
    rworld_end(w);
}

static int group_setup(void **state)
{
    static const char *const dirs[] = {"in-put",  "in-del",  "in-mv",  "in-fail", "in-bisect",
                                       "in-over", "in-gone", "in-pre", "in-age",  NULL};

    return rworld_group_setup_local(state, "esmfs", config, dirs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_s3_shape, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_rename_vs_in_place, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_open_file_waits_for_close, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_min_age_never_closed, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_recursive_new_dir, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_prefix_suffix, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_non_utf8_name, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_catch_up_after_restart, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_success_delete_and_move, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_failure_move_and_on_failure, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_bisect_poison_file, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_overflow_rescan, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_deleted_before_read, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_root_replaced, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_permission_denied, rworld_setup, rworld_teardown),
    };
    int rc;

    itest_filter_from_env();
    rc = cmocka_run_group_tests_name("esm_fs", tests, group_setup, rworld_group_teardown);
    return rworld_exit_code(rc);
}
