/*
 * dispatcher/funclog.c - per-function log files under <data_dir>/logs/.
 *
 * User output lines are stored with a timestamp and the request id they were printed under
 * (`<ISO time>\t<request id>\t<line>`, `-` outside an invocation); platform lines (INIT_START,
 * START, END, REPORT) are stored as Lambda prints them. Writes are buffered in stdio and
 * flushed after each REPORT, after lines printed outside an invocation, and otherwise at most
 * FUNCLOG_FLUSH_US after the previous flush: a burst of output costs no syscall per line, and
 * `tail -f` still sees a long invocation's progress within a fraction of a second.
 */
#include "dispatcher_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../broker/log.h"
#include "../broker/util/time.h"

#define FUNCLOG_FLUSH_US 200000

int funclog_open(struct funclog *fl, const char *dir, const char *name, struct sy_error *err)
{
    size_t n = strlen(dir) + strlen(name) + 8;

    fl->path = malloc(n);
    if (fl->path == NULL) {
        sy_error_set(err, "out of memory");
        return SY_ENOMEM;
    }
    snprintf(fl->path, n, "%s/%s.log", dir, name);
    fl->fp = fopen(fl->path, "ae");
    if (fl->fp == NULL) {
        sy_error_set(err, "cannot open function log %s: %s", fl->path, strerror(errno));
        sy_free(&fl->path);
        return SY_EIO;
    }
    return 0;
}

void funclog_line(struct funclog *fl, const char *request_id, const char *line, size_t len)
{
    char ts[32];

    if (fl->fp == NULL)
        return;
    time_iso8601(ts, time_wall_ms());
    fprintf(fl->fp, "%s\t%s\t%.*s\n", ts, request_id ? request_id : "-", (int)len, line);
    if (request_id == NULL || time_mono_us() - fl->last_flush_us >= FUNCLOG_FLUSH_US) {
        fflush(fl->fp);
        fl->last_flush_us = time_mono_us();
    }
}

void funclog_platform(struct funclog *fl, const char *line)
{
    if (fl->fp == NULL)
        return;
    fputs(line, fl->fp);
    fputc('\n', fl->fp);
    if (strncmp(line, "REPORT", 6) == 0 || strncmp(line, "INIT_REPORT", 11) == 0) {
        fflush(fl->fp);
        fl->last_flush_us = time_mono_us();
    }
}

void funclog_close(struct funclog *fl)
{
    if (fl->fp != NULL)
        fclose(fl->fp);
    fl->fp = NULL;
    sy_free(&fl->path);
}
