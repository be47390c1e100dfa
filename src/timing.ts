// Timing emulation: optional delays that make flushes and fences cost what
// they would on slower media. Delays are busy-waits (sleeping is far too
// coarse at these scales) taken inside writeback, under the entry locks, so
// a writer blocked on the entries waits as it would on the real device.
import { rangeError, typeError } from './errors.js';

export interface TimingModel {
  /** Extra ns per 64-byte cache line flushed. */
  lineNs: number;
  /** Extra ns per fence (one per writeback run). */
  fenceNs: number;
}

/** Approximates one Optane DC persistent memory DIMM (first generation,
 * App Direct): ~2.3 GB/s sustained write bandwidth -> 64 B / 2.3 GB/s ≈
 * 28 ns per flushed line; a fence waits for the last write to be accepted,
 * modelled as one media access (~300 ns, the DIMM's read latency). */
export const OPTANE: Readonly<TimingModel> = Object.freeze({ lineNs: 64 / 2.3, fenceNs: 300 });

export const TIMING_PRESETS: Readonly<Record<string, Readonly<TimingModel>>> = Object.freeze({ optane: OPTANE });

/** Parse the `timing` open option: a preset name or { lineNs, fenceNs }. */
export function parseTiming(value: unknown): TimingModel | undefined {
  if (value === undefined || value === 'none') return undefined;
  if (typeof value === 'string') {
    const preset = TIMING_PRESETS[value];
    if (!preset) throw rangeError(`timing must be one of ${Object.keys(TIMING_PRESETS).join(', ')}, none or { lineNs, fenceNs }, got '${value}'`);
    return { ...preset };
  }
  if (value === null || typeof value !== 'object') throw typeError('timing must be a preset name or { lineNs, fenceNs }');
  const t = value as Partial<TimingModel>;
  const num = (name: string, v: unknown) => {
    if (v === undefined) return 0;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw rangeError(`timing.${name} must be a finite number >= 0`);
    return v;
  };
  return { lineNs: num('lineNs', t.lineNs), fenceNs: num('fenceNs', t.fenceNs) };
}

/** Busy-wait ns nanoseconds; returns the time actually spent. */
export function spin(ns: number): number {
  if (ns <= 0) return 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(ns));
  let now = start;
  while (now < end) now = process.hrtime.bigint();
  return Number(now - start);
}
