/*
 * core/fastid.h - random (version 4) UUIDs without a system call per id.
 *
 * libuuid's uuid_generate_random() costs a getrandom() plus several getpid()-style calls per
 * id; the broker makes one per request. Here random bytes come from getrandom() in blocks of
 * 4 KB kept per thread, so an id costs a few hundred nanoseconds. Ids are as unpredictable as
 * the kernel's CSPRNG output they are cut from.
 */
#ifndef SY_FASTID_H
#define SY_FASTID_H

/* Write a lower-case UUID v4 ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx") and a NUL into OUT. */
void fastid_uuid4(char out[37]);

#endif
