/**
 * Histogram arithmetic for the dashboard: the difference of two cumulative snapshots (one report
 * interval), the sum of several nodes' intervals, and quantiles estimated from bucket counts the
 * way Prometheus' `histogram_quantile` does (linear within the bucket that holds the rank).
 */

/** A Prometheus histogram snapshot: bucket upper bounds and the cumulative count at each, plus the total (+Inf). */
export interface CumulativeHistogram {
  bounds: number[];
  /** `cumulative[i]`: observations <= bounds[i]. */
  cumulative: number[];
  total: number;
}

/** Per-bucket counts of an interval: `counts[i]` for (bounds[i-1], bounds[i]], the last one above every bound. */
export interface BucketCounts {
  bounds: number[];
  counts: number[];
}

export const EMPTY_BUCKETS: BucketCounts = Object.freeze({ bounds: [], counts: [0] }) as BucketCounts;

/**
 * The observations made between `before` and `after` (the same histogram, later), per bucket.
 * A counter that went down (the process restarted: not possible within one process, but cheap to
 * guard) counts from zero.
 */
export function intervalBuckets(before: CumulativeHistogram | null, after: CumulativeHistogram): BucketCounts {
  const sameShape = before !== null && before.bounds.length === after.bounds.length && before.bounds.every((b, i) => b === after.bounds[i]);
  const base = sameShape && before.total <= after.total ? before : null;
  const counts: number[] = [];
  let prevAfter = 0;
  let prevBefore = 0;
  for (let i = 0; i < after.bounds.length; i++) {
    const a = after.cumulative[i] ?? 0;
    const b = base?.cumulative[i] ?? 0;
    counts.push(Math.max(0, a - prevAfter - (b - prevBefore)));
    prevAfter = a;
    prevBefore = b;
  }
  counts.push(Math.max(0, after.total - prevAfter - ((base?.total ?? 0) - prevBefore)));
  return { bounds: [...after.bounds], counts };
}

/** Sums intervals that share their bounds; those with other bounds (another version mid-upgrade) are left out. */
export function mergeBuckets(list: BucketCounts[]): BucketCounts {
  const first = list.find((h) => h.bounds.length > 0);
  if (!first) return EMPTY_BUCKETS;
  const counts = new Array<number>(first.bounds.length + 1).fill(0);
  for (const h of list) {
    if (h.bounds.length !== first.bounds.length || !h.bounds.every((b, i) => b === first.bounds[i])) continue;
    h.counts.forEach((c, i) => { if (i < counts.length) counts[i]! += c; });
  }
  return { bounds: [...first.bounds], counts };
}

/**
 * The q-quantile (0 < q < 1) of an interval's observations, or null when there were none. Within
 * a bucket the observations are taken as evenly spread; a rank in the overflow bucket answers the
 * largest bound (the histogram knows nothing above it), as Prometheus does.
 */
export function quantile(h: BucketCounts, q: number): number | null {
  const total = h.counts.reduce((s, c) => s + c, 0);
  if (total === 0 || h.bounds.length === 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < h.bounds.length; i++) {
    const n = h.counts[i] ?? 0;
    if (n > 0 && below + n >= rank) {
      const lower = i === 0 ? 0 : h.bounds[i - 1]!;
      return lower + (h.bounds[i]! - lower) * ((rank - below) / n);
    }
    below += n;
  }
  return h.bounds[h.bounds.length - 1]!;
}

/** p50, p95 and p99 of an interval. */
export function percentiles(h: BucketCounts): { p50: number | null; p95: number | null; p99: number | null } {
  return { p50: quantile(h, 0.5), p95: quantile(h, 0.95), p99: quantile(h, 0.99) };
}
