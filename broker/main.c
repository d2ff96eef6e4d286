/*
 * broker/main.c - the `switchyard` executable: everything happens in cli_main().
 *
 * libevent's pthreads support is switched on first: worker threads (the async queue's store,
 * the file destination, host-name lookups) wake the loop with event_active(), which is only
 * safe once evthread_use_pthreads() has run, before any event_base exists.
 */
#include <stdio.h>

#include <event2/thread.h>

#include "cli.h"

int main(int argc, char **argv)
{
    if (evthread_use_pthreads() != 0) {
        fputs("switchyard: cannot enable libevent's thread support\n", stderr);
        return 1;
    }
    return cli_main(argc, argv);
}
