/* lc_omp.h: OpenMP's runtime calls, or their one-thread values when the
 * build has no OpenMP (the on-device runtime by default; its `omp simd`
 * loops still vectorise with -fopenmp-simd). */
#ifndef LC_OMP_H
#define LC_OMP_H

#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_in_parallel(void) { return 0; }
#endif

#endif
