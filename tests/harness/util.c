/*
 * tests/harness/util.c - clocks, temp dirs, file I/O, strings, base64 and JSON helpers for the
 * integration harness (see util.h).
 */
#include "harness/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

int64_t h_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        continue;
}

char *h_tmpdir_create(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *tmpl;

    if (base == NULL || *base == '\0')
        base = "/tmp";
    tmpl = h_strfmt("%s/sy-%s-XXXXXX", base, tag);
    if (mkdtemp(tmpl) == NULL) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", tmpl, strerror(errno));
        free(tmpl);
        return NULL;
    }
    return tmpl;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "harness: remove %s: %s\n", path, strerror(errno));
    return 0;
}

int h_rm_rf(const char *path)
{
    if (path == NULL)
        return 0;
    /* FTW_DEPTH: children before their directory; FTW_PHYS: never follow a symlink out. */
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 || errno == ENOENT ? 0 : -1;
}

int h_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const char *p = data;

    if (fd < 0) {
        fprintf(stderr, "harness: open %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "harness: write %s: %s\n", path, strerror(errno));
            close(fd);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd) == 0 ? 0 : -1;
}

char *h_read_file(const char *path, size_t offset, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = 4096, n = 0;
    char *buf;

    if (fd < 0)
        return NULL;
    if (offset > 0 && lseek(fd, (off_t)offset, SEEK_SET) < 0) {
        close(fd);
        return NULL;
    }
    buf = malloc(cap);
    if (buf == NULL)
        abort();
    for (;;) {
        ssize_t r;

        if (cap - n < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (buf == NULL)
                abort();
        }
        r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            close(fd);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

size_t h_file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

char *h_strfmt(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    return s;
}

char *h_str_replace(const char *s, const char *from, const char *to)
{
    size_t nfrom = strlen(from), nto = strlen(to);
    size_t count = h_str_count(s, from);
    char *out = malloc(strlen(s) + count * nto + 1);
    char *o = out;
    const char *p;

    if (out == NULL)
        abort();
    while ((p = strstr(s, from)) != NULL && nfrom > 0) {
        memcpy(o, s, (size_t)(p - s));
        o += p - s;
        memcpy(o, to, nto);
        o += nto;
        s = p + nfrom;
    }
    strcpy(o, s);
    return out;
}

size_t h_str_count(const char *hay, const char *needle)
{
    size_t n = 0, k = strlen(needle);
    const char *p;

    if (hay == NULL || k == 0)
        return 0;
    while ((p = strstr(hay, needle)) != NULL) {
        n++;
        hay = p + k;
    }
    return n;
}

char *h_b64_decode(const char *in, size_t *len)
{
    size_t n = strlen(in), pad = 0;
    unsigned char *out;
    int r;

    if (n % 4 != 0)
        return NULL;
    out = malloc(n / 4 * 3 + 1);
    if (out == NULL)
        abort();
    /* EVP_DecodeBlock counts padding as zero bytes: subtract them afterwards. */
    r = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (r < 0) {
        free(out);
        return NULL;
    }
    if (n >= 1 && in[n - 1] == '=')
        pad++;
    if (n >= 2 && in[n - 2] == '=')
        pad++;
    out[r - (int)pad] = '\0';
    if (len != NULL)
        *len = (size_t)r - pad;
    return (char *)out;
}

json_t *h_json_parse(const char *s, size_t len)
{
    json_error_t err;

    if (s == NULL)
        return NULL;
    return json_loadb(s, len, JSON_DECODE_ANY, &err);
}

json_t *h_json_file(const char *path)
{
    size_t len;
    char *s = h_read_file(path, 0, &len);
    json_t *j = s != NULL ? h_json_parse(s, len) : NULL;

    free(s);
    return j;
}

json_t *h_json_first_file(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    json_t *j = NULL;

    while (d != NULL && j == NULL && (de = readdir(d)) != NULL) {
        char *p;

        if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp") != NULL)
            continue;
        p = h_strfmt("%s/%s", dir, de->d_name);
        j = h_json_file(p);
        free(p);
    }
    if (d != NULL)
        closedir(d);
    return j;
}

const char *h_json_str(const json_t *obj, const char *key)
{
    json_t *v;

    if (obj == NULL || !json_is_object(obj))
        return NULL;
    v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

long long h_json_int(const json_t *obj, const char *key, long long dflt)
{
    json_t *v;

    if (obj == NULL || !json_is_object(obj))
        return dflt;
    v = json_object_get(obj, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

const char *h_source_dir(void)
{
    static char dir[PATH_MAX];
    const char *env = getenv("SY_SOURCE_DIR");
    char *slash;

    if (env != NULL && *env != '\0')
        return env;
    if (dir[0] == '\0') {
        /* __FILE__ is <source>/tests/harness/util.c: strip three components. */
        snprintf(dir, sizeof(dir), "%s", __FILE__);
        for (int i = 0; i < 3 && (slash = strrchr(dir, '/')) != NULL; i++)
            *slash = '\0';
    }
    return dir;
}

const char *h_binary(void)
{
    static char path[PATH_MAX];
    const char *env = getenv("SY_BINARY");

    if (env != NULL && *env != '\0')
        return env;
    if (path[0] == '\0')
        snprintf(path, sizeof(path), "%s/build/broker/switchyard", h_source_dir());
    return path;
}

char *h_json_string_of_len(size_t len)
{
    char *s;

    if (len < 2)
        abort();
    s = malloc(len + 1);
    if (s == NULL)
        abort();
    memset(s, 'a', len);
    s[0] = '"';
    s[len - 1] = '"';
    s[len] = '\0';
    return s;
}
