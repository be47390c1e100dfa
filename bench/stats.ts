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

/** Samples of one row, trial by trial (each trial is a fresh process). */
export type TrialSamples = readonly (readonly number[])[];

const BOOTSTRAP_ROUNDS = 2000;
/** Samples per trial the bootstrap draws from (evenly spaced quantiles of
 * the trial's sorted samples: its distribution, at a bounded cost). */
const BOOTSTRAP_PER_TRIAL = 200;

function thin(samples: readonly number[]): number[] {
  const s = [...samples].sort((a, b) => a - b);
  if (s.length <= BOOTSTRAP_PER_TRIAL) return s;
  return Array.from({ length: BOOTSTRAP_PER_TRIAL }, (_, i) => quantile(s, i / (BOOTSTRAP_PER_TRIAL - 1)));
}

/** One bootstrap draw of a row's median: trials with replacement, then
 * samples with replacement within each drawn trial. */
function drawMedian(trials: number[][], random: () => number): number {
  const pooled: number[] = [];
  for (let t = 0; t < trials.length; t++) {
    const trial = trials[Math.floor(random() * trials.length)];
    for (let k = 0; k < trial.length; k++) pooled.push(trial[Math.floor(random() * trial.length)]);
  }
  pooled.sort((a, b) => a - b);
  return quantile(pooled, 0.5);
}

/** A 95% confidence interval for median(a) / median(b), by a two-level
 * bootstrap (trials, then samples), seeded so a run reports the same
 * interval for the same samples. */
export function ratioInterval(a: TrialSamples, b: TrialSamples, random: () => number): [number, number] | undefined {
  const ta = a.filter((t) => t.length > 0).map(thin);
  const tb = b.filter((t) => t.length > 0).map(thin);
  if (ta.length === 0 || tb.length === 0) return undefined;
  const ratios: number[] = [];
  for (let i = 0; i < BOOTSTRAP_ROUNDS; i++) ratios.push(drawMedian(ta, random) / drawMedian(tb, random));
  ratios.sort((x, y) => x - y);
  return [quantile(ratios, 0.025), quantile(ratios, 0.975)];
}

/** The same for median(a) alone (absolute targets). */
export function medianInterval(a: TrialSamples, random: () => number): [number, number] | undefined {
  const ta = a.filter((t) => t.length > 0).map(thin);
  if (ta.length === 0) return undefined;
  const medians: number[] = [];
  for (let i = 0; i < BOOTSTRAP_ROUNDS; i++) medians.push(drawMedian(ta, random));
  medians.sort((x, y) => x - y);
  return [quantile(medians, 0.025), quantile(medians, 0.975)];
}
