// Summaries of per-operation samples.

export interface Summary {
  count: number;
  medianNs: number;
  minNs: number;
  maxNs: number;
  /** 5th and 95th percentiles: the spread the chart's whiskers show. */
  p5Ns: number;
  p95Ns: number;
}

/** The q-quantile of sorted samples, interpolated between neighbours. */
function quantile(sorted: readonly number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  return sorted[lo] + (sorted[Math.ceil(at)] - sorted[lo]) * (at - lo);
}

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { count: 0, medianNs: NaN, minNs: NaN, maxNs: NaN, p5Ns: NaN, p95Ns: NaN };
  const s = [...samples].sort((a, b) => a - b);
  return {
    count: s.length, medianNs: quantile(s, 0.5), minNs: s[0], maxNs: s[s.length - 1],
    p5Ns: quantile(s, 0.05), p95Ns: quantile(s, 0.95),
  };
}
