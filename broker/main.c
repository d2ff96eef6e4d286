/*
 * broker/main.c - the `switchyard` executable: everything happens in cli_main().
 *
 * libevent's pthreads support is switched on first: worker threads (the async queue's store,
 * the file destination, host-name lookups) wake the loop with event_active(), which is only
 * safe once evthread_use_pthreads() has run, before any event_base exists.
 *
 * malloc keeps up to 8 MB of freed memory at the top of the heap instead of giving it back at
 * every free (glibc's default trims above 128 KB): a mapping's batches are tens of KB each, and
 * bench_esm measured about 7% of the loop thread in brk() under load with the default. RSS
 * after a burst may stay that much higher; the memory targets leave room for it.
 */
#include <malloc.h>
#include <stdio.h>

#include <event2/thread.h>

#include "cli.h"

int main(int argc, char **argv)
{
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_TOP_PAD, 1 << 20);
    if (evthread_use_pthreads() != 0) {
        fputs("switchyard: cannot enable libevent's thread support\n", stderr);
        return 1;
    }
    return cli_main(argc, argv);
}
