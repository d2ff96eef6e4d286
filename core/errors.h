/*
 * core/errors.h - the broker-wide error codes and the error-message holder.
 *
 * Functions return 0 or a negative SY_E* code (never errno). Constructors return NULL and fill
 * a `struct sy_error`. The code list is one X-macro table.
 */
#ifndef SY_ERRORS_H
#define SY_ERRORS_H

#define SY_ERRORS(X)                                                                               \
    X(SY_ENOMEM, -1, "out of memory")                                                              \
    X(SY_EINVAL, -2, "invalid argument")                                                           \
    X(SY_EIO, -3, "I/O error")                                                                     \
    X(SY_ENOENT, -4, "not found")                                                                  \
    X(SY_EBUSY, -5, "busy")                                                                        \
    X(SY_ETOOBIG, -6, "too large")                                                                 \
    X(SY_ECLOSED, -7, "closed")                                                                    \
    X(SY_ESTATE, -8, "invalid state")                                                              \
    X(SY_ETIMEDOUT, -9, "timed out")                                                               \
    X(SY_ECANCELED, -10, "canceled")                                                               \
    X(SY_ENOSPC, -11, "no space left on device")                                                   \
    X(SY_EEXIST, -12, "already exists")

enum sy_err {
#define SY_ERR_ENUM(name, val, text) name = val,
    SY_ERRORS(SY_ERR_ENUM)
#undef SY_ERR_ENUM
};

/* Text for an SY_E* code ("unknown error" for anything else). */
const char *sy_strerror(int code);

struct sy_error {
    char msg[512];
};

/* Fill ERR (may be NULL) with a formatted message. */
void sy_error_set(struct sy_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Guards our own invariants (a magic on a callback argument, a list that must not be empty),
 * in release builds too; never for bad input, which is an error outcome. Prints and aborts.
 */
#define SY_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            sy_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)

void sy_assert_fail(const char *what, const char *file, int line) __attribute__((noreturn));

/* Free *P and set it to NULL. */
void sy_free(void *pp);

#endif
