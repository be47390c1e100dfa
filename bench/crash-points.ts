// States per second of exploreCrashPoints (udax crash) with 1 and with N
// worker threads, measured in one run: the pool explores points at once, each
// worker replaying the workload to its point and checking every state there.
//   npm install && node dist/bench/crash-points.js [--trials T] [--workers 1,2] [--k K] [--dir /dev/shm]
// The workload (bench/crash-points-module.ts): 4 commits of write-temp,
// fsync, rename, fsync-dir of an 8 KiB file (128 cache-line units), points
// at every fsync, states of at most K units. Prints a table (median states/s
// with min–max over the trials, and the ratio to 1 worker), then JSON.
import { rmSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exploreCrashPoints } from '../src/index.js';
import { recover, workload } from './crash-points-module.js';
import { option } from './options.js';

const trials = Number(option('trials', '5'));
const workerCounts = option('workers', '1,2').split(',').map(Number);
const k = Number(option('k', '3'));
const dir = option('dir', '/dev/shm');
const module = fileURLToPath(new URL('./crash-points-module.js', import.meta.url));

interface Row { workers: number; statesPerSecond: number[]; states: number; points: number }

async function trial(workers: number, t: number): Promise<{ rate: number; states: number; points: number }> {
  const base = join(dir, `udax-bench-crash-points-${process.pid}-${workers}-${t}`);
  try {
    const t0 = process.hrtime.bigint();
    const r = await exploreCrashPoints(base, workload, recover, { k, stop: 'all', workers, module: { path: module } });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (!r.ok) throw new Error(`the bench workload has violations: ${r.message}`);
    return { rate: r.checked / seconds, states: r.checked, points: r.points };
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

const loadBefore = loadavg()[0];
const rows: Row[] = workerCounts.map((workers) => ({ workers, statesPerSecond: [], states: 0, points: 0 }));
// Interleaved trials: a slow moment of the shared machine hits every row alike.
for (let t = 0; t < trials; t++) {
  for (const row of rows) {
    const r = await trial(row.workers, t);
    row.statesPerSecond.push(r.rate);
    row.states = r.states;
    row.points = r.points;
  }
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const base = median(rows[0].statesPerSecond);
const load = [loadBefore, loadavg()[0]].map((l) => l.toFixed(1)).join(' → ');
console.log(`crash points: ${rows[0].points} points at fsync, ${rows[0].states} states (k=${k}) per run, ${trials} trials per row, on ${dir}, ${availableParallelism()} cores, load average ${load}`);
console.log('workers   states/s median   (min–max)            × 1 worker');
for (const r of rows) {
  const m = median(r.statesPerSecond);
  console.log(`${String(r.workers).padStart(7)}   ${m.toFixed(0).padStart(15)}   (${Math.min(...r.statesPerSecond).toFixed(0)}–${Math.max(...r.statesPerSecond).toFixed(0)})`.padEnd(52) + `${(m / base).toFixed(2)}`);
}
console.log(JSON.stringify({
  bench: 'crash-points', trials, k, dir, cores: availableParallelism(), loadAverage: [loadBefore, loadavg()[0]],
  rows: rows.map((r) => ({ workers: r.workers, points: r.points, states: r.states, medianStatesPerSecond: median(r.statesPerSecond), minStatesPerSecond: Math.min(...r.statesPerSecond), maxStatesPerSecond: Math.max(...r.statesPerSecond), ratioToFirst: median(r.statesPerSecond) / base })),
}));
