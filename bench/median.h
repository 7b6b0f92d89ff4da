/*  median: the one statistic every benchmark here reports (this machine is noisy, so
    figures are medians of several runs). */
#ifndef STRATA_BENCH_MEDIAN_H
#define STRATA_BENCH_MEDIAN_H

#include <stdlib.h>

static int
bench_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

//  Median of v[0..n) (sorts v in place).
static inline double
bench_median (double *v, int n)
{
    qsort (v, (size_t) n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
