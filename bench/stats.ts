// Summaries of per-operation samples.

export interface Summary {
  count: number;
  medianNs: number;
  minNs: number;
  maxNs: number;
}

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { count: 0, medianNs: NaN, minNs: NaN, maxNs: NaN };
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const medianNs = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { count: s.length, medianNs, minNs: s[0], maxNs: s[s.length - 1] };
}
