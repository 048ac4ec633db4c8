/* lc_time.h: monotonic wall-clock seconds, for timings in run summaries. */
#ifndef LC_TIME_H
#define LC_TIME_H

#include <time.h>

static inline double lc_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CLOCK_REALTIME seconds: comparable with a time taken by another process
 * (`date +%s%N` before a program starts, for time-from-process-start). */
static inline double lc_wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#endif
