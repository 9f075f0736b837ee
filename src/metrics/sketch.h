/*
 * turnpike — the fixed-memory quantile sketch behind the latency percentiles (src/metrics).
 *
 * Log buckets in the manner of DDSketch: bucket i (i >= 1) holds the values v with
 * 2^((i-1)/36) <= v < 2^(i/36), i.e. 36 buckets per octave (gamma = 2^(1/36) = 1.0194); bucket
 * 0 holds 0. A value is reported as the harmonic mean of its bucket's bounds, whose relative
 * distance to any value of the bucket is at most (gamma-1)/(gamma+1) = 0.963 %. The index is
 * found without log(): the octave from the leading bit, the place within the octave from the
 * next 12 bits through a 4096-entry table (cell width 2^-12 = 0.024 % of the value), so a value
 * is at most 0.963 % + 0.024 % < 1 % from what its bucket reports.
 *
 * Values are integers (microseconds in the gateway), 0 .. 2^32-1 (71 minutes); larger values
 * land in the last bucket and are reported as about 2^32. TP_SKETCH_BUCKETS counters per sketch:
 * the memory of a sketch does not depend on how many values it holds.
 */
#ifndef TURNPIKE_METRICS_SKETCH_H
#define TURNPIKE_METRICS_SKETCH_H

#include <stddef.h>
#include <stdint.h>

#define TP_SKETCH_PER_OCTAVE 36
#define TP_SKETCH_OCTAVES 32
#define TP_SKETCH_BUCKETS (1 + TP_SKETCH_PER_OCTAVE * TP_SKETCH_OCTAVES) /* 1153 */
#define TP_SKETCH_FRAC_BITS 12
#define TP_SKETCH_MAX_ERROR 0.01 /* documented relative error bound */

/* floor(36 * log2(1 + j / 4096)) for j < 4096 (filled by tp_sketch_init). */
extern unsigned char tp_sketch_frac[1u << TP_SKETCH_FRAC_BITS];

/** Fill the index table once (thread-safe; call before the first tp_sketch_index). */
void tp_sketch_init(void);

/** The bucket of value v (0 .. TP_SKETCH_BUCKETS - 1). */
static inline unsigned tp_sketch_index(uint64_t v)
{
    if (v == 0)
        return 0;
    if (v >= (UINT64_C(1) << TP_SKETCH_OCTAVES))
        return TP_SKETCH_BUCKETS - 1;
    unsigned k = 63u - (unsigned)__builtin_clzll(v);
    uint64_t frac =
        k >= TP_SKETCH_FRAC_BITS ? v >> (k - TP_SKETCH_FRAC_BITS) : v << (TP_SKETCH_FRAC_BITS - k);
    frac &= (1u << TP_SKETCH_FRAC_BITS) - 1;
    return 1 + k * TP_SKETCH_PER_OCTAVE + tp_sketch_frac[frac];
}

/** The value bucket idx stands for (the harmonic mean of its bounds; 0 for bucket 0). */
double tp_sketch_value(unsigned idx);

/**
 * Quantiles of a histogram of bucket counts: for each qs[i] in [0, 1], the value of the
 * element of rank ceil(q * n) (1-based, at least 1) among the n counted, as its bucket reports
 * it; out[i] = 0 when n is 0. counts has TP_SKETCH_BUCKETS entries, of which only [lo, hi] are
 * read (pass 0 and TP_SKETCH_BUCKETS - 1 for all); qs ascending.
 */
void tp_sketch_quantiles(const uint64_t *counts, unsigned lo, unsigned hi, uint64_t n,
                         const double *qs, size_t nq, double *out);

#endif
