// States per second of checkVolumeRecovery at one instant with 1 and with N
// worker threads (the state pool, src/volume-check-pool.ts), measured in one
// run, interleaved trials. The volume: one durable file 'db' of PAGES pages,
// rewritten and not synced (PAGES * 64 cache-line units), states of at most
// K units; recover (bench/state-pool-module.ts) reads and scans 'db'. The
// time is the whole call: snapshot, worker start and base copies included.
//   node dist/bench/state-pool.js [--trials T] [--workers 1,2] [--pages P] [--k K] [--dir /dev/shm]
// Prints a table (median states/s with min–max over the trials, the ratio to
// the first row with a 95% bootstrap interval, and the target
// "2 workers ≥ 1.5× 1 worker" judged met/missed/inconclusive from the
// interval, as bench/targets.ts does; and the process's CPU seconds per call,
// all threads: near-equal rows mean the work is split, not repeated, and a
// ratio below the worker count is cores the machine did not give), then JSON.
import { rmSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkVolumeRecovery, openVolume } from '../src/index.js';
import { mulberry32 } from '../src/testing.js';
import { recover } from './state-pool-module.js';
import { ratioInterval } from './stats.js';

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const trials = Number(arg('trials', '5'));
const workerCounts = arg('workers', '1,2').split(',').map(Number);
const pages = Number(arg('pages', '2'));
const k = Number(arg('k', '2'));
const dir = arg('dir', '/dev/shm');
const module = fileURLToPath(new URL('./state-pool-module.js', import.meta.url));
const TARGET = 1.5;

const loadBefore = loadavg()[0];
const volumeDir = join(dir, `udax-bench-state-pool-${process.pid}`);
const volume = openVolume(volumeDir, { create: true });
const db = volume.create('db', pages * 4096);
db.map().bytes.fill(1);
db.sync();
volume.syncDirectory();
db.map().bytes.fill(2);  // every cache line differs from the media: a candidate unit

interface Row { workers: number; statesPerSecond: number[]; states: number; cpuSeconds: number[] }
const rows: Row[] = workerCounts.map((workers) => ({ workers, statesPerSecond: [], states: 0, cpuSeconds: [] }));
try {
  for (let t = 0; t < trials; t++) {
    for (const row of rows) {
      const opts = { dir: `${volumeDir}.states`, k, stop: 'all' as const, reduce: false };
      const cpu0 = process.cpuUsage();  // every thread of the process
      const t0 = process.hrtime.bigint();
      const r = row.workers === 1 && workerCounts[0] === 1 && row === rows[0]
        ? checkVolumeRecovery(volume, recover, opts)
        : await checkVolumeRecovery(volume, recover, { ...opts, workers: row.workers, module: { path: module } });
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (!r.ok) throw new Error(`the bench volume has violations: ${r.message}`);
      const cpu = process.cpuUsage(cpu0);
      row.cpuSeconds.push((cpu.user + cpu.system) / 1e6);
      row.statesPerSecond.push(r.checked / seconds);
      row.states = r.checked;
    }
  }
} finally {
  volume.close();
  rmSync(volumeDir, { recursive: true, force: true });
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const base = rows[0];
const ratios = rows.map((r) => ({ ratio: median(r.statesPerSecond) / median(base.statesPerSecond), interval: ratioInterval(r.statesPerSecond.map((x) => [x]), base.statesPerSecond.map((x) => [x]), mulberry32(1)) }));
console.log(`state pool: ${base.states} states (${pages * 64} units, k=${k}) per call, ${trials} trials per row, on ${dir}, ${availableParallelism()} cores, load average ${loadBefore.toFixed(1)}; row 1 worker${workerCounts[0] === 1 ? ' = the calling thread' : ''}`);
console.log('workers   states/s median   (min–max)            × first row   (95% interval)   CPU s per call (median)');
rows.forEach((r, i) => {
  const m = median(r.statesPerSecond);
  const iv = ratios[i].interval;
  console.log(`${String(r.workers).padStart(7)}   ${m.toFixed(0).padStart(15)}   (${Math.min(...r.statesPerSecond).toFixed(0)}–${Math.max(...r.statesPerSecond).toFixed(0)})`.padEnd(52) +
    `${ratios[i].ratio.toFixed(2).padStart(11)}   ${iv ? `(${iv[0].toFixed(2)}–${iv[1].toFixed(2)})` : ''}`.padEnd(30) + median(r.cpuSeconds).toFixed(2));
});
const two = rows.findIndex((r) => r.workers === 2);
const iv = two >= 0 && base.workers === 1 ? ratios[two].interval : undefined;
const verdict = iv === undefined ? 'not measured' : iv[0] >= TARGET ? 'met' : iv[1] < TARGET ? 'missed' : 'inconclusive';
console.log(`target: 2 workers ≥ ${TARGET}× 1 worker: ${verdict}${two >= 0 ? ` (${ratios[two].ratio.toFixed(2)}×)` : ''}`);
console.log(JSON.stringify({
  bench: 'state-pool', trials, pages, k, dir, cores: availableParallelism(), loadAverage: loadBefore, target: { goal: `2 workers >= ${TARGET}x 1 worker`, verdict },
  rows: rows.map((r, i) => ({ workers: r.workers, states: r.states, medianStatesPerSecond: median(r.statesPerSecond), minStatesPerSecond: Math.min(...r.statesPerSecond), maxStatesPerSecond: Math.max(...r.statesPerSecond), ratioToFirst: ratios[i].ratio, ratioInterval: ratios[i].interval, medianCpuSeconds: median(r.cpuSeconds) })),
}));
