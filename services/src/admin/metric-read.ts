/**
 * Reads a process' own numbers back out of its prom-client registry (services/src/metrics/
 * metrics.ts), so the dashboard shows what Prometheus scrapes, counted once. Series are summed
 * over their labels (an optional filter picks some), so a label added to a metric later keeps the
 * totals right. A metric that is not registered reads as 0 (or an empty histogram).
 */
import type { Registry } from 'prom-client';
import type { CumulativeHistogram } from './histogram.js';

type Labels = Record<string, string | number | undefined>;
type LabelFilter = (labels: Labels) => boolean;

interface Value {
  value: number;
  labels: Labels;
  metricName?: string;
}

async function valuesOf(registry: Registry, name: string): Promise<Value[]> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return [];
  const got = (await metric.get()) as { values: Value[] };
  return got.values;
}

/** A counter's or gauge's value summed over its series (those `filter` keeps). */
export async function sumOf(registry: Registry, name: string, filter: LabelFilter = () => true): Promise<number> {
  let sum = 0;
  for (const v of await valuesOf(registry, name)) if (filter(v.labels) && Number.isFinite(v.value)) sum += v.value;
  return sum;
}

/** A histogram summed over its series: cumulative count per bucket bound, and the total. */
export async function histogramOf(registry: Registry, name: string, filter: LabelFilter = () => true): Promise<CumulativeHistogram> {
  const byBound = new Map<number, number>();
  let total = 0;
  for (const v of await valuesOf(registry, name)) {
    const { le, ...rest } = v.labels;
    if (!filter(rest)) continue;
    if (v.metricName === `${name}_count`) total += v.value;
    else if (v.metricName === `${name}_bucket` && le !== undefined && le !== '+Inf') {
      const bound = Number(le);
      byBound.set(bound, (byBound.get(bound) ?? 0) + v.value);
    }
  }
  const bounds = [...byBound.keys()].sort((a, b) => a - b);
  return { bounds, cumulative: bounds.map((b) => byBound.get(b)!), total };
}

/** The observation count of a histogram (the series `filter` keeps). */
export async function countOf(registry: Registry, name: string, filter: LabelFilter = () => true): Promise<number> {
  let n = 0;
  for (const v of await valuesOf(registry, name)) {
    const { le: _le, ...rest } = v.labels;
    if (v.metricName === `${name}_count` && filter(rest)) n += v.value;
  }
  return n;
}
