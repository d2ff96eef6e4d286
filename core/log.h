/*
 * core/log.h - the broker's own log (stderr, one line per event).
 *
 * Lines read `2026-11-22T13:45:00.123Z error [scope] message`. The macros test the level
 * before evaluating their arguments. No locking of its own: each line is one fprintf() to
 * stderr (stdio locks the stream), so the helper threads (async store, checkpointer, function
 * log writer) log through it too; the level is set once, before any thread starts. Child
 * processes never log through here.
 */
#ifndef SY_LOG_H
#define SY_LOG_H

enum log_level {
    LOG_LVL_ERROR = 0,
    LOG_LVL_WARN = 1,
    LOG_LVL_INFO = 2,
    LOG_LVL_DEBUG = 3,
};

/* Current threshold; messages above it are skipped. Default LOG_LVL_INFO. */
extern int log_level_cur;

/* Parse "error|warn|info|debug"; returns 0 and sets the level, or -1 for anything else. */
int log_set_level(const char *name);

/* Write one line at LEVEL. Use the macros below instead. */
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)                                                                               \
    do {                                                                                           \
        if (log_level_cur >= LOG_LVL_ERROR)                                                        \
            log_write(LOG_LVL_ERROR, __VA_ARGS__);                                                 \
    } while (0)
#define log_warn(...)                                                                              \
    do {                                                                                           \
        if (log_level_cur >= LOG_LVL_WARN)                                                         \
            log_write(LOG_LVL_WARN, __VA_ARGS__);                                                  \
    } while (0)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_level_cur >= LOG_LVL_INFO)                                                         \
            log_write(LOG_LVL_INFO, __VA_ARGS__);                                                  \
    } while (0)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_level_cur >= LOG_LVL_DEBUG)                                                        \
            log_write(LOG_LVL_DEBUG, __VA_ARGS__);                                                 \
    } while (0)

#endif
