/**
 * A mergeable latency histogram: logarithmic buckets 1 % wide from 1 µs up, so several load
 * generator processes can report histograms that the runner adds up. Percentiles are the upper
 * edge of the bucket that holds them (at most 1 % high); min, max and mean are exact.
 */
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);

export interface HistData {
  /** bucket index -> count */
  b: Record<string, number>;
  n: number;
  sum: number;
  min: number;
  max: number;
}

export class Hist {
  private readonly buckets = new Map<number, number>();
  n = 0;
  sum = 0;
  min = Infinity;
  max = 0;

  /** Records a latency in milliseconds. */
  add(ms: number): void {
    const us = Math.max(1, ms * 1000);
    const i = Math.floor(Math.log(us) / LOG_GROWTH);
    this.buckets.set(i, (this.buckets.get(i) ?? 0) + 1);
    this.n++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  merge(d: HistData): void {
    for (const [k, v] of Object.entries(d.b)) this.buckets.set(Number(k), (this.buckets.get(Number(k)) ?? 0) + v);
    this.n += d.n;
    this.sum += d.sum;
    if (d.n > 0) {
      this.min = Math.min(this.min, d.min);
      this.max = Math.max(this.max, d.max);
    }
  }

  toJSON(): HistData {
    return { b: Object.fromEntries(this.buckets), n: this.n, sum: this.sum, min: this.n ? this.min : 0, max: this.max };
  }

  static from(d: HistData): Hist {
    const h = new Hist();
    h.merge(d);
    return h;
  }

  /** q in [0, 1]; milliseconds. */
  quantile(q: number): number {
    if (this.n === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.n));
    const keys = [...this.buckets.keys()].sort((a, b) => a - b);
    let seen = 0;
    for (const k of keys) {
      seen += this.buckets.get(k) ?? 0;
      if (seen >= rank) return Math.min(this.max, Math.pow(GROWTH, k + 1) / 1000);
    }
    return this.max;
  }

  summary(): LatencySummary {
    return {
      count: this.n,
      mean: this.n ? this.sum / this.n : NaN,
      p50: this.quantile(0.5),
      p90: this.quantile(0.9),
      p99: this.quantile(0.99),
      p999: this.quantile(0.999),
      max: this.n ? this.max : NaN,
    };
  }
}

export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}
