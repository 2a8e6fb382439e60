/* Moves the wall clock of a process (and its children) by FEEDGATE_CLOCK_OFFSET seconds, for
 * `make test-future`: a test that passes today must pass on any day.
 *
 * Why not libfaketime: it moves the monotonic clock with the wall clock, and Python's timed
 * lock waits (sem_clockwait on CLOCK_MONOTONIC, which it does not intercept) then wait the
 * whole offset; with FAKETIME_DONT_FAKE_MONOTONIC it still shifts clock_nanosleep's absolute
 * deadline, so time.sleep fails with EINVAL. Here only the real-time clock moves: clock_gettime
 * (CLOCK_REALTIME*), gettimeofday and time. Timeouts, sleeps and asyncio are left alone.
 *
 * Build: cc -shared -fPIC -O2 -o clock_offset.so clock_offset.c -ldl
 * Use:   FEEDGATE_CLOCK_OFFSET=31536000 LD_PRELOAD=$PWD/clock_offset.so command ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long offset_seconds(void) {
    static int known;
    static long long offset;
    if (!known) {
        const char *text = getenv("FEEDGATE_CLOCK_OFFSET");
        offset = text ? atoll(text) : 0;
        known = 1;
    }
    return offset;
}

int clock_gettime(clockid_t clock, struct timespec *now) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int done = real(clock, now);
    if (done == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE))
        now->tv_sec += offset_seconds();
    return done;
}

int gettimeofday(struct timeval *restrict now, void *restrict zone) {
    static int (*real)(struct timeval *restrict, void *restrict);
    if (!real)
        real = (int (*)(struct timeval *restrict, void *restrict))dlsym(RTLD_NEXT, "gettimeofday");
    int done = real(now, zone);
    if (done == 0) now->tv_sec += offset_seconds();
    return done;
}

time_t time(time_t *out) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (out) *out = now.tv_sec;
    return now.tv_sec;
}
