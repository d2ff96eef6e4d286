/*
 * tests/unit/test_packages.c - packages/, the code-package store, on zips built here with
 * libzip: modes, symlinks and mtimes kept; the content-addressed reuse (also by concurrent
 * unpacks); every refusal (unsafe names and links, duplicates, corrupt archives, a bomb, the
 * entry and size limits) with nothing left in the store afterwards; layer merges in order with
 * their reuse; pkg_dir_size(); pkg_gc(). A temp dir per test, no network, well under a second.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zip.h>

#include "core/sha256.h"
#include "packages/packages.h"

/* ------------------------------------------------------------------------------------------ */
/* Fixtures                                                                                   */

struct fx {
    char root[64];   /* the test's temp dir */
    char store[128]; /* root/packages */
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    snprintf(fx->root, sizeof(fx->root), "/tmp/sy-test-packages-XXXXXX");
    assert_non_null(mkdtemp(fx->root));
    snprintf(fx->store, sizeof(fx->store), "%s/packages", fx->root);
    *state = fx;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (flag == FTW_DP)
        (void)chmod(path, 0700);
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *fx = *state;

    nftw(fx->root, rm_one, 32, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* Entries of the zip a test builds. */
/* File, directory, symlink, file without Unix attributes, MODE holds the type bits too. */
enum zkind { ZF, ZD, ZL, ZF_DOS, ZRAW };

struct zent {
    const char *name;
    enum zkind kind;
    const char *data; /* file content or link target (NUL-terminated unless len is set) */
    unsigned mode;    /* permission bits for the Unix attributes */
    size_t len;       /* 0: strlen(data) */
    int store;        /* ZIP_CM_STORE instead of deflate */
    time_t mtime;     /* 0: libzip's default */
};

/* Build a zip of N entries; returns new (free()) with *LEN set. */
static unsigned char *build_zip(const char *dir, const struct zent *ents, size_t n, size_t *len)
{
    char path[256];
    zip_t *za;
    int zerr = 0;
    unsigned char *buf;
    struct stat st;
    FILE *f;

    snprintf(path, sizeof(path), "%s/build.zip", dir);
    za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    assert_non_null(za);
    for (size_t i = 0; i < n; i++) {
        const struct zent *e = &ents[i];
        zip_int64_t idx;

        if (e->kind == ZD) {
            idx = zip_dir_add(za, e->name, 0);
            assert_true(idx >= 0);
            assert_int_equal(zip_file_set_external_attributes(za, (zip_uint64_t)idx, 0,
                                                              ZIP_OPSYS_UNIX,
                                                              (S_IFDIR | e->mode) << 16),
                             0);
            continue;
        }
        {
            size_t dlen = e->len ? e->len : strlen(e->data);
            /* libzip reads the buffer at zip_close(): it stays valid until then. */
            zip_source_t *src = zip_source_buffer(za, e->data, dlen, 0);

            assert_non_null(src);
            idx = zip_file_add(za, e->name, src, ZIP_FL_ENC_UTF_8);
            assert_true(idx >= 0);
        }
        if (e->kind == ZF_DOS) {
            assert_int_equal(
                zip_file_set_external_attributes(za, (zip_uint64_t)idx, 0, ZIP_OPSYS_DOS, 0), 0);
        } else {
            unsigned type = e->kind == ZL ? S_IFLNK : e->kind == ZRAW ? 0 : S_IFREG;

            assert_int_equal(zip_file_set_external_attributes(
                                 za, (zip_uint64_t)idx, 0, ZIP_OPSYS_UNIX, (type | e->mode) << 16),
                             0);
        }
        if (e->store)
            assert_int_equal(zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0), 0);
        else
            assert_int_equal(zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 1), 0);
        if (e->mtime)
            assert_int_equal(zip_file_set_mtime(za, (zip_uint64_t)idx, e->mtime, 0), 0);
    }
    assert_int_equal(zip_close(za), 0);

    assert_int_equal(stat(path, &st), 0);
    buf = malloc((size_t)st.st_size);
    assert_non_null(buf);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
    fclose(f);
    unlink(path);
    *len = (size_t)st.st_size;
    return buf;
}

/* Names in DIR (no . and ..). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

static char *read_text(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "rb");
    size_t n;

    if (f == NULL)
        return NULL;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static mode_t mode_of(const char *dir, const char *rel)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode;
}

/* Unpack ENTS with LIM; expect KIND (PKG_OK: success, INFO filled) and nothing left on error. */
static int unpack_ents(struct fx *fx, const struct zent *ents, size_t n,
                       const struct pkg_limits *lim, struct pkg_info *info, struct pkg_error *err)
{
    size_t len;
    unsigned char *zip = build_zip(fx->root, ents, n, &len);
    int rc = pkg_unpack(fx->store, zip, len, lim, info, err);

    free(zip);
    return rc;
}

static void expect_refused(struct fx *fx, const struct zent *ents, size_t n,
                           const struct pkg_limits *lim, enum pkg_err kind, const char *in_msg)
{
    struct pkg_info info;
    struct pkg_error err;
    int rc = unpack_ents(fx, ents, n, lim, &info, &err);

    if (rc == 0 || err.kind != kind)
        fail_msg("expected %s, got rc %d kind %s: %s", pkg_err_name(kind), rc,
                 pkg_err_name(err.kind), err.msg);
    assert_null(info.dir);
    if (in_msg != NULL && strstr(err.msg, in_msg) == NULL)
        fail_msg("'%s' not in '%s'", in_msg, err.msg);
    /* Nothing of the failed unpack may stay: not the package, not a temp dir. */
    assert_int_equal(count_entries(fx->store), 0);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------------------------ */
/* Unpacking                                                                                  */

static const struct zent normal[] = {
    {.name = "bootstrap",
     .kind = ZF,
     .data = "#!/bin/sh\necho hi\n",
     .mode = 0755,
     .mtime = 1600000000},
    {.name = "lib/", .kind = ZD, .data = NULL, .mode = 0755},
    {.name = "lib/nested/mod.py", .kind = ZF, .data = "print('mod')\n", .mode = 0644},
    {.name = "README", .kind = ZF_DOS, .data = "no unix attributes\n", .mode = 0},
    {.name = "suid", .kind = ZF, .data = "x", .mode = 06777},
    {.name = "private", .kind = ZF, .data = "y", .mode = 0600},
    {.name = "inside", .kind = ZL, .data = "lib/nested/mod.py", .mode = 0777},
    {.name = "lib/nested/up", .kind = ZL, .data = "../../bootstrap", .mode = 0777},
    {.name = "./lib//other.txt", .kind = ZF, .data = "normalised", .mode = 0644},
};

static void test_unpack_normal(void **state)
{
    struct fx *fx = *state;
    struct pkg_info info;
    struct pkg_error err;
    unsigned char md[SHA256_LEN];
    char path[512], link[64];
    struct stat st;
    size_t len;
    unsigned char *zip = build_zip(fx->root, normal, N(normal), &len);
    struct pkg_limits lim = pkg_limits_lambda();
    ssize_t tl;

    assert_int_equal(pkg_unpack(fx->store, zip, len, &lim, &info, &err), 0);
    sha256(zip, len, md);
    free(zip);

    /* Named by the zip's digest, hex for the directory and base64 as Lambda's CodeSha256. */
    assert_int_equal(strlen(info.sha256_hex), 64);
    assert_int_equal(strlen(info.sha256_b64), 44);
    snprintf(path, sizeof(path), "%s/%s", fx->store, info.sha256_hex);
    assert_string_equal(info.dir, path);
    assert_int_equal(info.zip_size, len);
    assert_int_equal(info.unzipped_size, strlen("#!/bin/sh\necho hi\n") + strlen("print('mod')\n") +
                                             strlen("no unix attributes\n") + 1 + 1 +
                                             strlen("normalised"));
    assert_int_equal(count_entries(fx->store), 1); /* no temp dir left */

    assert_string_equal(read_text(strcat(strcpy(path, info.dir), "/bootstrap")),
                        "#!/bin/sh\necho hi\n");
    assert_string_equal(read_text(strcat(strcpy(path, info.dir), "/lib/nested/mod.py")),
                        "print('mod')\n");
    assert_string_equal(read_text(strcat(strcpy(path, info.dir), "/lib/other.txt")), "normalised");
    /* Modes: exec kept, setuid/setgid/sticky and group/other write dropped, defaults. */
    assert_int_equal(mode_of(info.dir, "bootstrap") & 07777, 0755);
    assert_int_equal(mode_of(info.dir, "lib/nested/mod.py") & 07777, 0644);
    assert_int_equal(mode_of(info.dir, "README") & 07777, 0644);
    assert_int_equal(mode_of(info.dir, "suid") & 07777, 0755);
    assert_int_equal(mode_of(info.dir, "private") & 07777, 0600);
    assert_int_equal(mode_of(info.dir, "lib") & 07777, 0755);
    assert_int_equal(mode_of(info.dir, "lib/nested") & 07777, 0755); /* implied */
    assert_int_equal(mode_of(info.dir, ".") & 07777, 0755);
    assert_true(S_ISLNK(mode_of(info.dir, "inside")));
    /* The zip's mtime (Python checks .pyc files against it). */
    assert_int_equal(stat(strcat(strcpy(path, info.dir), "/bootstrap"), &st), 0);
    assert_int_equal(st.st_mtime, 1600000000);
    /* Symlinks as stored, and they resolve inside. */
    tl = readlink(strcat(strcpy(path, info.dir), "/lib/nested/up"), link, sizeof(link) - 1);
    assert_true(tl > 0);
    link[tl] = '\0';
    assert_string_equal(link, "../../bootstrap");
    assert_string_equal(read_text(path), "#!/bin/sh\necho hi\n");
    assert_string_equal(read_text(strcat(strcpy(path, info.dir), "/inside")), "print('mod')\n");
    pkg_info_clear(&info);
    assert_null(info.dir);
    pkg_info_clear(&info);
}

static void test_unpack_reuse(void **state)
{
    struct fx *fx = *state;
    struct pkg_info a, b, c;
    struct pkg_error err;
    char marker[512], zpath[256];
    size_t len;
    unsigned char *zip = build_zip(fx->root, normal, N(normal), &len);
    struct pkg_limits lim = pkg_limits_lambda();
    FILE *f;

    assert_int_equal(pkg_unpack(fx->store, zip, len, &lim, &a, &err), 0);
    /* A file the zip does not have: still there after the second unpack, so no re-extract. */
    snprintf(marker, sizeof(marker), "%s/marker", a.dir);
    f = fopen(marker, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(pkg_unpack(fx->store, zip, len, &lim, &b, &err), 0);
    assert_string_equal(a.dir, b.dir);
    assert_string_equal(a.sha256_b64, b.sha256_b64);
    assert_int_equal(a.unzipped_size, b.unzipped_size); /* marker is empty */
    assert_int_equal(access(marker, F_OK), 0);

    /* From a file: the same package. */
    snprintf(zpath, sizeof(zpath), "%s/code.zip", fx->root);
    f = fopen(zpath, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(zip, 1, len, f), len);
    fclose(f);
    assert_int_equal(pkg_unpack_file(fx->store, zpath, &lim, &c, &err), 0);
    assert_string_equal(c.dir, a.dir);
    assert_int_equal(c.zip_size, len);

    /* Reused, but the limits were lowered since: refused. */
    pkg_info_clear(&b);
    lim.max_unzipped_bytes = 10;
    assert_int_not_equal(pkg_unpack(fx->store, zip, len, &lim, &b, &err), 0);
    pkg_info_clear(&b);
    assert_int_equal(err.kind, PKG_E_TOO_LARGE_UNZIPPED);
    assert_non_null(strstr(err.msg, "Unzipped size must be smaller than 10 bytes"));

    assert_int_equal(count_entries(fx->store), 1);
    free(zip);
    pkg_info_clear(&a);
    pkg_info_clear(&c);
}

struct race {
    const char *store;
    const unsigned char *zip;
    size_t len;
    int rc;
    char dir[512];
};

static void *race_one(void *arg)
{
    struct race *r = arg;
    struct pkg_info info;
    struct pkg_error err;

    r->rc = pkg_unpack(r->store, r->zip, r->len, NULL, &info, &err);
    if (r->rc == 0)
        snprintf(r->dir, sizeof(r->dir), "%s", info.dir);
    pkg_info_clear(&info);
    return NULL;
}

static void test_unpack_concurrent(void **state)
{
    struct fx *fx = *state;
    struct race r[4];
    pthread_t t[4];
    size_t len;
    unsigned char *zip = build_zip(fx->root, normal, N(normal), &len);

    for (int i = 0; i < 4; i++) {
        r[i] = (struct race){.store = fx->store, .zip = zip, .len = len};
        assert_int_equal(pthread_create(&t[i], NULL, race_one, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].rc, 0);
        assert_string_equal(r[i].dir, r[0].dir);
    }
    /* The losers dropped their copies. */
    assert_int_equal(count_entries(fx->store), 1);
    assert_string_equal(read_text(strcat(r[0].dir, "/bootstrap")), "#!/bin/sh\necho hi\n");
    free(zip);
}

static void test_unsafe_paths(void **state)
{
    struct fx *fx = *state;
    static const char *const bad[] = {
        "../evil", "/abs", "a/../../x", "a/..", "..\\evil", "a\\..\\..\\x", "C:\\win", "C:/win",
    };

    for (size_t i = 0; i < N(bad); i++) {
        struct zent z[] = {{.name = "ok", .kind = ZF, .data = "fine", .mode = 0644},
                           {.name = bad[i], .kind = ZF, .data = "evil", .mode = 0644}};

        expect_refused(fx, z, N(z), NULL, PKG_E_UNSAFE_PATH, "is not allowed");
    }
    {
        /* A file where a directory is needed, and two names for one path. */
        struct zent z1[] = {{.name = "x", .kind = ZF, .data = "file", .mode = 0644},
                            {.name = "x/y", .kind = ZF, .data = "under a file", .mode = 0644}};
        struct zent z2[] = {{.name = "a/b", .kind = ZF, .data = "one", .mode = 0644},
                            {.name = "a//b", .kind = ZF, .data = "two", .mode = 0644}};
        struct zent z3[] = {{.name = "a/b", .kind = ZF, .data = "one", .mode = 0644},
                            {.name = "a\\b", .kind = ZF, .data = "two", .mode = 0644}};
        struct zent z4[] = {{.name = "d/", .kind = ZD, .data = NULL, .mode = 0755},
                            {.name = "d", .kind = ZF, .data = "file over dir", .mode = 0644}};
        struct zent z5[] = {{.name = "fifo", .kind = ZRAW, .data = "", .mode = S_IFIFO | 0644}};

        expect_refused(fx, z1, N(z1), NULL, PKG_E_UNSAFE_PATH, "is a file, not a directory");
        expect_refused(fx, z2, N(z2), NULL, PKG_E_UNSAFE_PATH, "same path");
        expect_refused(fx, z3, N(z3), NULL, PKG_E_UNSAFE_PATH, "same path");
        expect_refused(fx, z4, N(z4), NULL, PKG_E_UNSAFE_PATH, "same path");
        expect_refused(fx, z5, N(z5), NULL, PKG_E_UNSAFE_PATH, "device, FIFO or socket");
    }
}

static void test_unsafe_links(void **state)
{
    struct fx *fx = *state;
    struct pkg_info info;
    struct pkg_error err;
    struct zent abs[] = {{.name = "passwd", .kind = ZL, .data = "/etc/passwd", .mode = 0777}};
    struct zent up[] = {{.name = "sub/", .kind = ZD, .data = NULL, .mode = 0755},
                        {.name = "sub/l", .kind = ZL, .data = "../../x", .mode = 0777}};
    /* On paper c -> a/b/.. is "a"; the kernel goes a/b -> .. (the root), then .. above it. */
    struct zent chain[] = {{.name = "a/", .kind = ZD, .data = NULL, .mode = 0755},
                           {.name = "c", .kind = ZL, .data = "a/b/..", .mode = 0777},
                           {.name = "a/b", .kind = ZL, .data = "..", .mode = 0777}};
    struct zent through[] = {
        {.name = "sub/", .kind = ZD, .data = NULL, .mode = 0755},
        {.name = "l", .kind = ZL, .data = "sub", .mode = 0777},
        {.name = "l/x", .kind = ZF, .data = "written through the link", .mode = 0644}};
    struct zent fine[] = {{.name = "sub/x", .kind = ZF, .data = "x", .mode = 0644},
                          {.name = "sub/l", .kind = ZL, .data = "../sub/./x", .mode = 0777},
                          {.name = "dangling", .kind = ZL, .data = "nowhere/at/all", .mode = 0777},
                          {.name = "self", .kind = ZL, .data = ".", .mode = 0777}};

    expect_refused(fx, abs, N(abs), NULL, PKG_E_UNSAFE_LINK, "absolute path ('/etc/passwd')");
    expect_refused(fx, up, N(up), NULL, PKG_E_UNSAFE_LINK, "outside the package");
    expect_refused(fx, chain, N(chain), NULL, PKG_E_UNSAFE_LINK, "resolves outside");
    expect_refused(fx, through, N(through), NULL, PKG_E_UNSAFE_LINK, "symbolic link 'l'");

    assert_int_equal(unpack_ents(fx, fine, N(fine), NULL, &info, &err), 0);
    assert_true(S_ISLNK(mode_of(info.dir, "sub/l")));
    pkg_info_clear(&info);
}

static void test_corrupt(void **state)
{
    struct fx *fx = *state;
    struct pkg_info info;
    struct pkg_error err;
    struct zent z[] = {{.name = "data.txt",
                        .kind = ZF,
                        .data = "the quick brown fox jumps over the lazy dog",
                        .mode = 0644,
                        .store = 1}};
    size_t len;
    unsigned char *zip = build_zip(fx->root, z, N(z), &len);
    unsigned char *p;
    static const char lambda[] =
        "Could not unzip uploaded file. Please check your file, then try to upload again.";

    /* Cut in half: no end of central directory. */
    assert_int_not_equal(pkg_unpack(fx->store, zip, len / 2, NULL, &info, &err), 0);
    assert_int_equal(err.kind, PKG_E_CORRUPT);
    assert_memory_equal(err.msg, lambda, strlen(lambda));
    assert_int_equal(count_entries(fx->store), 0);

    /* Not a zip at all. */
    assert_int_not_equal(pkg_unpack(fx->store, "hello, world", 12, NULL, &info, &err), 0);
    assert_int_equal(err.kind, PKG_E_CORRUPT);
    assert_int_not_equal(pkg_unpack(fx->store, "", 0, NULL, &info, &err), 0);
    assert_int_equal(err.kind, PKG_E_CORRUPT);

    /* One byte of the stored data flipped: the CRC no longer matches. */
    p = memmem(zip, len, "quick", 5);
    assert_non_null(p);
    p[0] ^= 0x20;
    assert_int_not_equal(pkg_unpack(fx->store, zip, len, NULL, &info, &err), 0);
    assert_int_equal(err.kind, PKG_E_CORRUPT);
    assert_memory_equal(err.msg, lambda, strlen(lambda));
    assert_non_null(strstr(err.msg, "data.txt"));
    assert_non_null(strstr(err.msg, "CRC"));
    assert_null(info.dir);
    assert_int_equal(count_entries(fx->store), 0);
    free(zip);
}

static void test_bomb(void **state)
{
    struct fx *fx = *state;
    size_t big = 4u * 1024 * 1024; /* 4 MiB of zeros deflate to ~4 KB: ratio ~1000 */
    char *zeros = calloc(1, big);
    struct zent z[] = {{.name = "zeros", .kind = ZF, .data = zeros, .mode = 0644, .len = big}};
    struct pkg_limits lim = pkg_limits_lambda();

    assert_non_null(zeros);
    expect_refused(fx, z, N(z), &lim, PKG_E_BOMB, "zip bomb");
    free(zeros);
}

/* Replace every FROM in the N bytes of BUF with TO (same length): names in both headers. */
static void patch_all(unsigned char *buf, size_t n, const char *from, const char *to)
{
    size_t fl = strlen(from);
    unsigned char *p = buf;

    while ((p = memmem(p, n - (size_t)(p - buf), from, fl)) != NULL) {
        memcpy(p, to, fl);
        p += fl;
    }
}

static void test_bomb_overlap_and_duplicates(void **state)
{
    struct fx *fx = *state;
    size_t big = 512u * 1024, len, cd, eocd, cdlen; /* under the 1 MiB of the ratio rule */
    char *zeros = calloc(1, big);
    struct zent z[] = {{.name = "z1", .kind = ZF, .data = zeros, .mode = 0644, .len = big}};
    struct zent dup[] = {{.name = "a/b", .kind = ZF, .data = "one", .mode = 0644},
                         {.name = "a/c", .kind = ZF, .data = "two", .mode = 0644}};
    unsigned char *zip, *two, *p;
    struct pkg_info info;
    struct pkg_error err;

    /*
     * A second central-directory record for the same data (Fifield's overlapping bomb): each
     * entry alone is harmless, together they cost twice what the file holds.
     */
    assert_non_null(zeros);
    zip = build_zip(fx->root, z, N(z), &len);
    p = memmem(zip, len, "PK\x01\x02", 4);
    assert_non_null(p);
    cd = (size_t)(p - zip);
    p = memmem(zip, len, "PK\x05\x06", 4);
    assert_non_null(p);
    eocd = (size_t)(p - zip);
    cdlen = eocd - cd;
    two = malloc(len + cdlen);
    assert_non_null(two);
    memcpy(two, zip, eocd);                   /* data and the first record */
    memcpy(two + eocd, zip + cd, cdlen);      /* the second record... */
    patch_all(two + eocd, cdlen, "z1", "z2"); /* ...named z2 */
    memcpy(two + eocd + cdlen, zip + eocd, len - eocd);
    p = two + eocd + cdlen;
    p[8] = p[10] = 2;                   /* entries on this disk, in total */
    p[12] = (unsigned char)(2 * cdlen); /* central directory size (little endian) */
    p[13] = (unsigned char)((2 * cdlen) >> 8);
    assert_int_not_equal(pkg_unpack(fx->store, two, len + cdlen, NULL, &info, &err), 0);
    assert_int_equal(err.kind, PKG_E_BOMB);
    assert_non_null(strstr(err.msg, "share compressed data"));
    assert_int_equal(count_entries(fx->store), 0);
    free(two);
    free(zip);
    free(zeros);

    /* Two entries with exactly one name (libzip itself will not write that). */
    zip = build_zip(fx->root, dup, N(dup), &len);
    patch_all(zip, len, "a/c", "a/b");
    assert_int_not_equal(pkg_unpack(fx->store, zip, len, NULL, &info, &err), 0);
    assert_int_equal(err.kind, PKG_E_UNSAFE_PATH);
    assert_non_null(strstr(err.msg, "same path"));
    assert_int_equal(count_entries(fx->store), 0);
    free(zip);
}

static void test_limits(void **state)
{
    struct fx *fx = *state;
    struct pkg_limits lambda = pkg_limits_lambda(), lim = lambda;
    struct pkg_info info;
    struct pkg_error err;
    char big[2000], zpath[256];
    struct zent four[] = {{.name = "a", .kind = ZF, .data = "a", .mode = 0644},
                          {.name = "b", .kind = ZF, .data = "b", .mode = 0644},
                          {.name = "c/", .kind = ZD, .data = NULL, .mode = 0755},
                          {.name = "c/d", .kind = ZF, .data = "d", .mode = 0644}};
    struct zent large[] = {
        {.name = "big", .kind = ZF, .data = big, .mode = 0644, .len = sizeof(big)}};
    size_t len;
    unsigned char *zip;
    FILE *f;

    assert_int_equal(lambda.max_zip_bytes, 52428800);
    assert_int_equal(lambda.max_unzipped_bytes, 262144000);
    assert_int_equal(lambda.max_entries, 20000);
    assert_int_equal(lambda.max_ratio, 200);

    lim.max_entries = 3;
    expect_refused(fx, four, N(four), &lim, PKG_E_TOO_MANY_ENTRIES, "4 entries; at most 3");
    lim.max_entries = 4;
    assert_int_equal(unpack_ents(fx, four, N(four), &lim, &info, &err), 0);
    pkg_info_clear(&info);
    nftw(fx->store, rm_one, 32, FTW_DEPTH | FTW_PHYS);

    memset(big, 'x', sizeof(big));
    lim = lambda;
    lim.max_unzipped_bytes = 1000;
    expect_refused(fx, large, N(large), &lim, PKG_E_TOO_LARGE_UNZIPPED,
                   "Unzipped size must be smaller than 1000 bytes");

    /* Lambda's number for 50 MiB is 69905067 (base64 of the request); for 100 bytes 134. */
    zip = build_zip(fx->root, large, N(large), &len);
    lim = lambda;
    lim.max_zip_bytes = 100;
    assert_int_not_equal(pkg_unpack(fx->store, zip, len, &lim, &info, &err), 0);
    assert_int_equal(err.kind, PKG_E_TOO_LARGE_ZIP);
    assert_non_null(
        strstr(err.msg, "Request must be smaller than 134 bytes for the CreateFunction operation"));
    snprintf(zpath, sizeof(zpath), "%s/code.zip", fx->root);
    f = fopen(zpath, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(zip, 1, len, f), len);
    fclose(f);
    assert_int_not_equal(pkg_unpack_file(fx->store, zpath, &lim, &info, &err), 0);
    assert_int_equal(err.kind, PKG_E_TOO_LARGE_ZIP);
    lim.max_zip_bytes = lambda.max_zip_bytes;
    {
        /* And the real figure. */
        unsigned char one = 0;

        lim.max_zip_bytes = 52428800;
        assert_int_not_equal(pkg_unpack(fx->store, &one, 52428801, &lim, &info, &err), 0);
        assert_non_null(strstr(err.msg, "Request must be smaller than 69905067 bytes"));
    }
    assert_int_not_equal(pkg_unpack_file(fx->store, "/nonexistent.zip", &lim, &info, &err), 0);
    assert_int_equal(err.kind, PKG_E_IO);
    assert_int_equal(count_entries(fx->store), 0);
    free(zip);
}

/* ------------------------------------------------------------------------------------------ */
/* Merging, sizes, gc                                                                         */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_merge(void **state)
{
    struct fx *fx = *state;
    struct zent l1[] = {{.name = "bin/tool", .kind = ZF, .data = "one", .mode = 0755},
                        {.name = "lib/a.so", .kind = ZF, .data = "a", .mode = 0644},
                        {.name = "x/f", .kind = ZF, .data = "x was a dir", .mode = 0644},
                        {.name = "bin/link", .kind = ZL, .data = "tool", .mode = 0777}};
    struct zent l2[] = {{.name = "bin/tool", .kind = ZF, .data = "two", .mode = 0755},
                        {.name = "python/m.py", .kind = ZF, .data = "m", .mode = 0644},
                        {.name = "x", .kind = ZF, .data = "x is a file now", .mode = 0644}};
    struct pkg_info i1, i2;
    struct pkg_error err;
    char path[512], plain[256], marker[512], *o12 = NULL, *o12b = NULL, *o21 = NULL, *op = NULL,
                                             *op2 = NULL, *none = (char *)1;
    const char *dirs[2];
    uint64_t size, s;
    struct stat a, b;

    assert_int_equal(unpack_ents(fx, l1, N(l1), NULL, &i1, &err), 0);
    assert_int_equal(unpack_ents(fx, l2, N(l2), NULL, &i2, &err), 0);

    assert_int_equal(pkg_merge(fx->store, NULL, 0, &none, &size, &err), 0);
    assert_null(none);
    assert_int_equal(size, 0);

    dirs[0] = i1.dir;
    dirs[1] = i2.dir;
    assert_int_equal(pkg_merge(fx->store, dirs, 2, &o12, &size, &err), 0);
    assert_non_null(strstr(o12, "/opt-"));
    /* Later layers overwrite; what only the earlier had stays. */
    assert_string_equal(read_text(strcat(strcpy(path, o12), "/bin/tool")), "two");
    assert_string_equal(read_text(strcat(strcpy(path, o12), "/lib/a.so")), "a");
    assert_string_equal(read_text(strcat(strcpy(path, o12), "/python/m.py")), "m");
    assert_string_equal(read_text(strcat(strcpy(path, o12), "/x")), "x is a file now");
    assert_true(S_ISLNK(mode_of(o12, "bin/link")));
    assert_string_equal(read_text(strcat(strcpy(path, o12), "/bin/link")), "two");
    assert_int_equal(mode_of(o12, "bin/tool") & 07777, 0755);
    assert_int_equal(size, 3 + 1 + 1 + strlen("x is a file now"));
    assert_int_equal(pkg_dir_size(o12, &s, &err), 0);
    assert_int_equal(s, size);
    /* Same file system: a hard link, not a copy. */
    assert_int_equal(stat(strcat(strcpy(path, o12), "/lib/a.so"), &a), 0);
    assert_int_equal(stat(strcat(strcpy(path, i1.dir), "/lib/a.so"), &b), 0);
    assert_int_equal(a.st_ino, b.st_ino);

    /* Reused: same dir, not rebuilt. */
    snprintf(marker, sizeof(marker), "%s/marker", o12);
    write_file(marker, "");
    assert_int_equal(pkg_merge(fx->store, dirs, 2, &o12b, &size, &err), 0);
    assert_string_equal(o12, o12b);
    assert_int_equal(access(marker, F_OK), 0);

    /* The other order is another /opt. */
    dirs[0] = i2.dir;
    dirs[1] = i1.dir;
    assert_int_equal(pkg_merge(fx->store, dirs, 2, &o21, &size, &err), 0);
    assert_string_not_equal(o21, o12);
    assert_string_equal(read_text(strcat(strcpy(path, o21), "/bin/tool")), "one");
    assert_string_equal(read_text(strcat(strcpy(path, o21), "/x/f")), "x was a dir");

    /* A plain directory: fingerprinted by its files, so a change makes a new merge. */
    snprintf(plain, sizeof(plain), "%s/plain", fx->root);
    assert_int_equal(mkdir(plain, 0755), 0);
    snprintf(path, sizeof(path), "%s/bin", plain);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/bin/tool", plain);
    write_file(path, "plain");
    dirs[0] = i1.dir;
    dirs[1] = plain;
    assert_int_equal(pkg_merge(fx->store, dirs, 2, &op, &size, &err), 0);
    assert_string_equal(read_text(strcat(strcpy(path, op), "/bin/tool")), "plain");
    snprintf(path, sizeof(path), "%s/bin/tool", plain);
    write_file(path, "plain, longer");
    assert_int_equal(pkg_merge(fx->store, dirs, 2, &op2, &size, &err), 0);
    assert_string_not_equal(op, op2);
    assert_string_equal(read_text(strcat(strcpy(path, op2), "/bin/tool")), "plain, longer");

    /* The store itself is no layer. */
    dirs[0] = fx->root;
    assert_int_not_equal(pkg_merge(fx->store, dirs, 1, &none, &size, &err), 0);
    assert_int_equal(err.kind, PKG_E_UNSAFE_PATH);
    dirs[0] = "/nonexistent-layer";
    assert_int_not_equal(pkg_merge(fx->store, dirs, 1, &none, &size, &err), 0);
    assert_int_equal(err.kind, PKG_E_IO);
    assert_null(none);

    /* Two packages, four merges: no temp dir left. */
    assert_int_equal(count_entries(fx->store), 6);
    free(o12);
    free(o12b);
    free(o21);
    free(op);
    free(op2);
    pkg_info_clear(&i1);
    pkg_info_clear(&i2);
}

static void test_dir_size(void **state)
{
    struct fx *fx = *state;
    char path[512];
    uint64_t size;
    struct pkg_error err;

    snprintf(path, sizeof(path), "%s/t", fx->root);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/t/a", fx->root);
    write_file(path, "12345");
    snprintf(path, sizeof(path), "%s/t/d", fx->root);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/t/d/b", fx->root);
    write_file(path, "678");
    snprintf(path, sizeof(path), "%s/t/d/l", fx->root);
    assert_int_equal(symlink("/etc/passwd", path), 0); /* not followed, counts nothing */
    snprintf(path, sizeof(path), "%s/t", fx->root);
    assert_int_equal(pkg_dir_size(path, &size, &err), 0);
    assert_int_equal(size, 8);
    assert_int_not_equal(pkg_dir_size("/nonexistent-dir", &size, &err), 0);
    assert_int_equal(err.kind, PKG_E_IO);
}

static void test_gc(void **state)
{
    struct fx *fx = *state;
    struct zent za[] = {{.name = "a", .kind = ZF, .data = "a", .mode = 0644}};
    struct zent zb[] = {{.name = "b", .kind = ZF, .data = "b", .mode = 0644}};
    struct pkg_info ia, ib;
    struct pkg_error err;
    char old_tmp[256], new_tmp[256], other[256], *opt = NULL;
    const char *dirs[1], *keep[3];
    struct timespec two_hours_ago[2];
    uint64_t size;

    assert_int_equal(unpack_ents(fx, za, N(za), NULL, &ia, &err), 0);
    assert_int_equal(unpack_ents(fx, zb, N(zb), NULL, &ib, &err), 0);
    dirs[0] = ib.dir;
    assert_int_equal(pkg_merge(fx->store, dirs, 1, &opt, &size, &err), 0);
    snprintf(old_tmp, sizeof(old_tmp), "%s/.tmp-crashed-abc", fx->store);
    snprintf(new_tmp, sizeof(new_tmp), "%s/.tmp-building-xyz", fx->store);
    snprintf(other, sizeof(other), "%s/README", fx->store);
    assert_int_equal(mkdir(old_tmp, 0700), 0);
    write_file(strcat(strcpy((char[512]){0}, old_tmp), "/half"), "half");
    assert_int_equal(mkdir(new_tmp, 0700), 0);
    write_file(other, "not ours");
    clock_gettime(CLOCK_REALTIME, &two_hours_ago[0]);
    two_hours_ago[0].tv_sec -= 7200;
    two_hours_ago[1] = two_hours_ago[0];
    assert_int_equal(utimensat(AT_FDCWD, old_tmp, two_hours_ago, 0), 0);

    /* Keep A (by path) and the merge (by bare name); B goes, and the old temp dir. */
    keep[0] = ia.dir;
    keep[1] = NULL;
    keep[2] = strrchr(opt, '/') + 1;
    assert_int_equal(pkg_gc(fx->store, keep, 3, &err), 0);
    assert_int_equal(access(ia.dir, F_OK), 0);
    assert_int_equal(access(opt, F_OK), 0);
    assert_int_equal(access(ib.dir, F_OK), -1);
    assert_int_equal(access(old_tmp, F_OK), -1);
    assert_int_equal(access(new_tmp, F_OK), 0);
    assert_int_equal(access(other, F_OK), 0);
    assert_int_equal(count_entries(fx->store), 4);
    /* The merge's files are hard links: they outlive B. */
    assert_string_equal(read_text(strcat(strcpy((char[512]){0}, opt), "/b")), "b");

    /* Nothing kept: only the young temp dir and the foreign file stay. */
    assert_int_equal(pkg_gc(fx->store, NULL, 0, &err), 0);
    assert_int_equal(count_entries(fx->store), 2);
    assert_int_equal(pkg_gc("/nonexistent-store", NULL, 0, &err), 0);
    free(opt);
    pkg_info_clear(&ia);
    pkg_info_clear(&ib);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unpack_normal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpack_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpack_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsafe_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsafe_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bomb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bomb_overlap_and_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
    };

    /* Modes must come from the zip, not from the process's umask. */
    umask(077);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
