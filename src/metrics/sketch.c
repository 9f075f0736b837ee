/*
 * The latency quantile sketch (see sketch.h for the bucket layout and its error bound).
 */
#include "metrics/sketch.h"

#include <math.h>
#include <pthread.h>

unsigned char tp_sketch_frac[1u << TP_SKETCH_FRAC_BITS];

static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void fill_table(void)
{
    for (unsigned j = 0; j < (1u << TP_SKETCH_FRAC_BITS); j++) {
        double x = 1.0 + (double)j / (double)(1u << TP_SKETCH_FRAC_BITS);
        unsigned s = (unsigned)floor(TP_SKETCH_PER_OCTAVE * log2(x));
        tp_sketch_frac[j] =
            (unsigned char)(s < TP_SKETCH_PER_OCTAVE ? s : TP_SKETCH_PER_OCTAVE - 1);
    }
}

void tp_sketch_init(void)
{
    pthread_once(&table_once, fill_table);
}

double tp_sketch_value(unsigned idx)
{
    if (idx == 0)
        return 0.0;
    double lo = exp2((double)(idx - 1) / TP_SKETCH_PER_OCTAVE);
    double hi = exp2((double)idx / TP_SKETCH_PER_OCTAVE);
    return 2.0 * lo * hi / (lo + hi);
}

void tp_sketch_quantiles(const uint64_t *counts, unsigned lo, unsigned hi, uint64_t n,
                         const double *qs, size_t nq, double *out)
{
    size_t qi = 0;
    if (n == 0) {
        for (; qi < nq; qi++)
            out[qi] = 0.0;
        return;
    }
    uint64_t seen = 0;
    for (unsigned i = lo; i <= hi && i < TP_SKETCH_BUCKETS && qi < nq; i++) {
        seen += counts[i];
        while (qi < nq) {
            double r = ceil(qs[qi] * (double)n);
            uint64_t rank = r < 1.0 ? 1 : r > (double)n ? n : (uint64_t)r;
            if (seen < rank)
                break;
            out[qi++] = tp_sketch_value(i);
        }
    }
    for (; qi < nq; qi++) /* counts summed to less than n (a racing reader): the largest */
        out[qi] = tp_sketch_value(hi < TP_SKETCH_BUCKETS ? hi : TP_SKETCH_BUCKETS - 1);
}
