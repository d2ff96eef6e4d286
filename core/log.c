/* core/log.c - the broker's own stderr log. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "time.h"

int log_level_cur = LOG_LVL_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            log_level_cur = i;
            return 0;
        }
    }
    return -1;
}

void log_write(int level, const char *fmt, ...)
{
    char ts[32];
    char line[2048];
    va_list ap;
    int n;

    time_iso8601(ts, time_wall_ms());
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* One fprintf per line so that concurrent writers (children share no stderr with us, but
     * tests may interleave) never split a line. */
    fprintf(stderr, "%s %s %s%s\n", ts, level_names[level], line,
            (size_t)n >= sizeof(line) ? "..." : "");
}
