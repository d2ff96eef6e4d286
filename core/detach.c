/*
 * core/detach.c - see detach.h.
 */
#include "detach.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct detach_job {
    void (*fn)(void *arg);
    void *arg;
    char name[16];
};

static void *detach_main(void *p)
{
    struct detach_job *j = p;

    pthread_setname_np(pthread_self(), j->name);
    j->fn(j->arg);
    free(j);
    return NULL;
}

int detach_run(const char *name, void (*fn)(void *arg), void *arg)
{
    struct detach_job *j = malloc(sizeof(*j));
    pthread_attr_t attr;
    pthread_t t;
    int rc = -1;

    if (j != NULL && pthread_attr_init(&attr) == 0) {
        j->fn = fn;
        j->arg = arg;
        strncpy(j->name, name, sizeof(j->name) - 1);
        j->name[sizeof(j->name) - 1] = '\0';
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&t, &attr, detach_main, j) == 0 ? 0 : -1;
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        free(j);
        fn(arg);
    }
    return rc;
}
