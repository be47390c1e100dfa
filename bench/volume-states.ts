// What one crash state of a volume costs (build it, then undo it), against
// file size and dirty units, next to copying the whole file per state (what
// a per-file crash image costs), measured in one run.
//   npm install && node dist/bench/volume-states.js [--rounds N] [--trials T] [--sizes 1,64,256 (MiB)] [--dir /dev/shm]
// Each configuration: a volume with one file of SIZE (a store into each of
// DIRTY pages, unsynced: one cache-line unit each), ten small durable files
// (and one row with 1,000 in 25 directories, an engine's data directory),
// and two pending namespace operations (create + rename). A state keeps both
// operations and a random half of the units. Prints a table, then JSON, and
// the target "≤ 1 ms per state at 256 MiB" judged like bench/targets.ts.
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openVolume, type VolumeCrashStates } from '../src/index.js';
import { mulberry32 } from '../src/testing.js';
import { summarize, type TrialSamples } from './stats.js';
import { crashStateTarget } from './targets.js';
import { formatBytes, formatNs } from './units.js';
import { option } from './options.js';

const rounds = Number(option('rounds', '200'));
const trials = Number(option('trials', '3'));
const dir = option('dir', '/dev/shm');
const MiB = 2 ** 20;
const PAGE = 4096;
const SIZES = option('sizes', '1,64,256').split(',').map((m) => Number(m) * MiB);
const DIRTY = [4, 64];
const WHOLE_COPY_ROUNDS = 10;

const now = () => Number(process.hrtime.bigint());

interface Row {
  size: number;
  dirtyUnits: number;
  smallFiles: number;
  /** ns per state (build + undo), per trial. */
  samples: number[][];
  /** ns per whole-file copy, per trial. */
  copySamples: number[][];
  bytesPerState: number;
}

function trial(size: number, dirty: number, t: number, row: Row): void {
  const base = join(dir, `udax-bench-volume-${process.pid}-${t}`);
  const volume = openVolume(base, { create: true });
  let states: VolumeCrashStates | undefined;
  try {
    for (let d = 0; d < 25; d++) volume.mkdir(`d${d}`);
    for (let i = 0; i < row.smallFiles; i++) volume.create(`d${i % 25}/small-${i}`);
    const big = volume.create('big', size);
    big.sync();
    volume.syncDirectory();
    const bytes = big.map().bytes;
    const random = mulberry32(t + 1);
    const pages = size / PAGE;
    for (let k = 0; k < dirty; k++) bytes[Math.floor((k + random()) * (pages / dirty)) * PAGE] = 1;
    volume.create('tmp').sync();
    volume.rename('tmp', 'log');
    states = volume.crashStates({ dir: `${base}.states`, k: 0 });
    const all = states.pending.map((op) => op.index);
    const units = states.units.map((_, i) => i);
    const samples: number[] = [];
    let written = 0;
    for (let r = 0; r < rounds + 5; r++) {
      const choice = { operations: all, units: units.filter(() => random() < 0.5) };
      const t0 = now();
      states.with(choice, (s) => (written = s.cost.bytes));
      if (r >= 5) samples.push(now() - t0);
    }
    row.samples.push(samples);
    row.bytesPerState = Math.max(row.bytesPerState, written);
    const copies: number[] = [];
    for (let r = 0; r < WHOLE_COPY_ROUNDS; r++) {
      const t0 = now();
      copyFileSync(join(base, 'big'), `${base}.copy`);
      copies.push(now() - t0);
    }
    row.copySamples.push(copies);
  } finally {
    states?.close();
    volume.close();
    rmSync(base, { recursive: true, force: true });
    rmSync(`${base}.copy`, { force: true });
  }
}

const configs = [
  ...SIZES.flatMap((size) => DIRTY.map((dirtyUnits) => ({ size, dirtyUnits, smallFiles: 10 }))),
  { size: SIZES[SIZES.length - 1], dirtyUnits: DIRTY[0], smallFiles: 1000 },
];
const rows: Row[] = [];
for (const c of configs) {
  const row: Row = { ...c, samples: [], copySamples: [], bytesPerState: 0 };
  for (let t = 0; t < trials; t++) trial(c.size, c.dirtyUnits, t, row);
  rows.push(row);
}

const median = (s: TrialSamples) => summarize(s.flat()).medianNs;
console.log(`volume crash states: ${rounds} states × ${trials} trials per row, on ${dir}; a state keeps 2 pending operations and half the units`);
console.log('file size   dirty units   small files   per state (p5–p95)            whole-file copy   × cheaper   bytes written/state');
for (const r of rows) {
  const s = summarize(r.samples.flat());
  const copy = median(r.copySamples);
  console.log(`${formatBytes(r.size).padStart(9)}  ${String(r.dirtyUnits).padStart(12)}  ${String(r.smallFiles).padStart(12)}   ${formatNs(s.medianNs).padStart(9)} (${formatNs(s.p5Ns)}–${formatNs(s.p95Ns)})`.padEnd(74) +
    `${formatNs(copy).padStart(10)}  ${(copy / s.medianNs).toFixed(0).padStart(10)}  ${String(r.bytesPerState).padStart(20)}`);
}
const target = crashStateTarget(rows.filter((r) => r.size === 256 * MiB && r.dirtyUnits === DIRTY[0] && r.smallFiles === 10).flatMap((r) => r.samples));
console.log(`target ${target.name}: ${target.goal} — ${target.verdict} (median ${formatNs(target.measured ?? NaN)}${target.interval ? `, 95% CI ${formatNs(target.interval[0])}–${formatNs(target.interval[1])}` : ''})`);
console.log(JSON.stringify({
  bench: 'volume-states', rounds, trials, dir,
  rows: rows.map((r) => ({ size: r.size, dirtyUnits: r.dirtyUnits, smallFiles: r.smallFiles, medianStateNs: median(r.samples), medianWholeCopyNs: median(r.copySamples), bytesPerState: r.bytesPerState })),
  target,
}));
