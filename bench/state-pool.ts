// States per second of checkVolumeRecovery at one instant in the calling
// thread and on 1 and 2 worker threads (the state pool,
// src/volume-check-pool.ts), for recoveries of three costs, measured in one
// run with interleaved trials (a slow moment of the shared machine hits
// every row alike):
//   node dist/bench/state-pool.js [--trials T] [--workers 1,2] [--recoveries cheap,hash,sqlite,hash-alloc] [--dir /dev/shm]
// - cheap: a durable file 'db' of 2 pages rewritten and not synced (128
//   cache-line units), k=2: 8,258 states; recover reads and scans 'db'
//   (bench/state-pool-module.ts), tens of µs a state.
// - hash: 'db' of 8 pages rewritten (512 units) beside a durable 1 MiB file,
//   k=1: 514 states; hashRecover reads every file into a buffer it keeps and
//   hashes it (SHA-256), a millisecond or two a state. hash-alloc (not in
//   the default set): the same with readFileSync, a fresh 1 MiB buffer a state.
// - sqlite: a durable SQLite database (50 rows) beside 'db' of 4 pages
//   rewritten (256 units), k=1: 258 states; examples/sqlite/pool-recover.mjs
//   copies the state, opens it and runs PRAGMA integrity_check: a real
//   engine's restart, 1-3 ms a state. The target "2 workers ≥ 1.5× the calling thread" is
//   judged on this row.
// The time is the whole call: snapshot, base copies, planning, checking.
// Before the trials each row makes one call that is not counted: it warms
// the calling thread and starts the workers (kept and reused by later
// calls; its cost is printed as "first call"). Prints a table per recovery:
// median states/s with its 95% interval, the ratio to the calling thread
// with its 95% interval (bootstrap over the trials, bench/stats.ts), the
// process's CPU seconds per call (all threads: near-equal rows mean the work
// is split, not repeated) and minor page faults per call; then a control —
// what 2 plain threads hashing get against one on this machine in the same
// trials, the ceiling for any pool's ratio — the load average before and
// after, and JSON.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { checkVolumeRecovery, openVolume, type Volume, type VolumeRecoverFn } from '../src/index.js';
import { mulberry32 } from '../src/testing.js';
import { hashAllocRecover, hashRecover, recover } from './state-pool-module.js';
import { medianInterval, ratioInterval } from './stats.js';
import { statePoolTarget } from './targets.js';
import { option } from './options.js';

const trials = Number(option('trials', '7'));
const workerCounts = option('workers', '1,2').split(',').map(Number);
const dir = option('dir', '/dev/shm');
const module = fileURLToPath(new URL('./state-pool-module.js', import.meta.url));
const PAGE = 4096;

interface Recovery { name: string; fn: VolumeRecoverFn; module: string; exportName: string; k: number; describe: string; build: (volume: Volume) => void }

/** 'db' durable with 1s, then rewritten with 2s: every cache line a unit. */
function rewrittenDb(volume: Volume, pages: number): void {
  const db = volume.create('db', pages * PAGE);
  db.map().bytes.fill(1);
  db.sync();
  volume.syncDirectory();
  db.map().bytes.fill(2);
}

/** A durable file of random bytes. */
function durableData(volume: Volume, name: string, bytes: number): void {
  const data = volume.create(name, bytes);
  const m = data.map().bytes;
  const random = mulberry32(7);
  for (let i = 0; i < m.length; i++) m[i] = random() * 256;
  data.sync();
  volume.syncDirectory();
}

const sqliteModule = fileURLToPath(new URL('../../examples/sqlite/pool-recover.mjs', import.meta.url));
const SQLITE_ROWS = 50;
type SqliteModule = { recover: VolumeRecoverFn; buildDatabase: (dir: string, rows: number) => void };
const loadSqlite = async () => await import(pathToFileURL(sqliteModule).href) as SqliteModule;

const RECOVERIES: Recovery[] = [
  { name: 'cheap', fn: recover, module, exportName: 'recover', k: 2, describe: 'db of 2 pages rewritten (128 units)', build: (v) => rewrittenDb(v, 2) },
  {
    name: 'hash', fn: hashRecover, module, exportName: 'hashRecover', k: 1, describe: 'db of 8 pages rewritten (512 units), a durable 1 MiB file',
    build: (v) => { durableData(v, 'data', 2 ** 20); rewrittenDb(v, 8); },
  },
  {
    name: 'hash-alloc', fn: hashAllocRecover, module, exportName: 'hashAllocRecover', k: 1, describe: 'as hash',
    build: (v) => { durableData(v, 'data', 2 ** 20); rewrittenDb(v, 8); },
  },
  {
    name: 'sqlite', fn: (dir, st) => sqlite!.recover(dir, st), module: sqliteModule, exportName: 'recover', k: 1,
    describe: `a durable SQLite database of ${SQLITE_ROWS} rows beside db of 4 pages rewritten (256 units)`,
    build: (v) => {
      const scratch = `${v.dir}.build`;
      mkdirSync(scratch);
      try {
        sqlite!.buildDatabase(scratch, SQLITE_ROWS);
        const bytes = readFileSync(join(scratch, 'test.db'));
        v.create('test.db', bytes.length).write(bytes, 0);
        v.open('test.db').sync();
        v.syncDirectory();
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
      rewrittenDb(v, 4);
    },
  },
];
const chosen = option('recoveries', 'cheap,hash,sqlite').split(',').map((n) => {
  const r = RECOVERIES.find((x) => x.name === n);
  if (!r) throw new RangeError(`unknown recovery ${n}: one of ${RECOVERIES.map((x) => x.name).join(', ')}`);
  return r;
});
const sqlite = chosen.some((r) => r.name === 'sqlite') ? await loadSqlite() : undefined;

function benchVolume(r: Recovery): Volume {
  const volume = openVolume(join(dir, `udax-bench-state-pool-${process.pid}-${r.name}`), { create: true });
  r.build(volume);
  return volume;
}

interface Row { label: string; workers: number; statesPerSecond: number[]; cpuSeconds: number[]; faults: number[]; states: number; firstCall?: { seconds: number; cpuSeconds: number } }

async function call(volume: Volume, r: Recovery, workers: number): Promise<{ seconds: number; cpuSeconds: number; faults: number; states: number }> {
  const opts = { dir: `${volume.dir}.states`, k: r.k, stop: 'all' as const, reduce: false };
  const faults0 = process.resourceUsage().minorPageFault;
  const cpu0 = process.cpuUsage();  // every thread of the process
  const t0 = process.hrtime.bigint();
  const report = workers === 0
    ? checkVolumeRecovery(volume, r.fn, opts)
    : await checkVolumeRecovery(volume, r.fn, { ...opts, workers, module: { path: r.module, recover: r.exportName } });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  if (!report.ok) throw new Error(`the bench volume has violations: ${report.message}`);
  return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, faults: process.resourceUsage().minorPageFault - faults0, states: report.checked };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const interval = (iv: [number, number] | undefined, digits: number) => (iv ? `${iv[0].toFixed(digits)}–${iv[1].toFixed(digits)}` : '');

/** The machine's own parallelism now: SHA-256 of a 1 MiB buffer, `jobs`
 * times in the calling thread, or jobs/2 in each of 2 plain worker threads
 * (started once, no udax): what 2 threads can get on this shared machine at
 * the moment, the ceiling for the pool's ratio. */
const CONTROL_JOBS = 200;
const controlSource = `const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const data = Buffer.alloc(2 ** 20, 7);
parentPort.on('message', (jobs) => { for (let i = 0; i < jobs; i++) createHash('sha256').update(data).digest(); parentPort.postMessage(jobs); });`;
const controlWorkers = [0, 1].map(() => new Worker(controlSource, { eval: true }));
const controlData = Buffer.alloc(2 ** 20, 7);
async function control(threads: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  if (threads === 1) for (let i = 0; i < CONTROL_JOBS; i++) createHash('sha256').update(controlData).digest();
  else await Promise.all(controlWorkers.map((w) => new Promise((done) => { w.once('message', done); w.postMessage(CONTROL_JOBS / 2); })));
  return CONTROL_JOBS / (Number(process.hrtime.bigint() - t0) / 1e9);
}

const loadBefore = loadavg();
const results = [];
const controlRates: number[][] = [[], []];
for (const r of chosen) {
  const volume = benchVolume(r);
  const rows: Row[] = [{ label: 'calling thread', workers: 0, statesPerSecond: [], cpuSeconds: [], faults: [], states: 0 },
    ...workerCounts.map((workers) => ({ label: `${workers} worker${workers === 1 ? '' : 's'}`, workers, statesPerSecond: [], cpuSeconds: [], faults: [], states: 0 }))];
  try {
    for (const row of rows) {
      const first = await call(volume, r, row.workers);  // warms the thread, starts the workers
      if (row.workers > 0) row.firstCall = { seconds: first.seconds, cpuSeconds: first.cpuSeconds };
    }
    for (const threads of [1, 2]) await control(threads);
    for (let t = 0; t < trials; t++) {
      for (const threads of [1, 2]) controlRates[threads - 1].push(await control(threads));
      for (const row of rows) {
        const c = await call(volume, r, row.workers);
        row.statesPerSecond.push(c.states / c.seconds);
        row.cpuSeconds.push(c.cpuSeconds);
        row.faults.push(c.faults);
        row.states = c.states;
      }
    }
  } finally {
    const d = volume.dir;
    volume.close();
    rmSync(d, { recursive: true, force: true });
  }
  const base = rows[0].statesPerSecond;
  const random = mulberry32(1);
  const out = rows.map((row) => ({
    label: row.label, workers: row.workers, states: row.states,
    medianStatesPerSecond: median(row.statesPerSecond), statesPerSecondInterval: medianInterval(row.statesPerSecond.map((x) => [x]), random),
    ratioToThread: median(row.statesPerSecond) / median(base), ratioInterval: ratioInterval(row.statesPerSecond.map((x) => [x]), base.map((x) => [x]), random),
    medianCpuSecondsPerCall: median(row.cpuSeconds), medianPageFaultsPerCall: median(row.faults), firstCall: row.firstCall,
  }));
  const two = out.find((x) => x.workers === 2);
  const target = r.name === 'sqlite' && two ? statePoolTarget(two.ratioToThread, two.ratioInterval) : undefined;
  console.log(`\nstate pool, ${r.name} recovery: ${rows[0].states} states per call (${r.describe}; k=${r.k}), ${trials} trials per row, on ${dir}`);
  console.log('row               states/s median   (95% interval)      × calling thread   (95% interval)   CPU s per call   page faults per call   first call (s, CPU s)');
  for (const x of out) {
    console.log(`${x.label.padEnd(16)}  ${x.medianStatesPerSecond.toFixed(0).padStart(15)}   ${`(${interval(x.statesPerSecondInterval, 0)})`.padEnd(19)} ${x.ratioToThread.toFixed(2).padStart(16)}   ${`(${interval(x.ratioInterval, 2)})`.padEnd(16)} ${x.medianCpuSecondsPerCall.toFixed(3).padStart(14)}   ${x.medianPageFaultsPerCall.toFixed(0).padStart(20)}   ${x.firstCall ? `${x.firstCall.seconds.toFixed(3)}, ${x.firstCall.cpuSeconds.toFixed(3)}` : ''}`);
  }
  if (target) console.log(`target: ${target.goal}: ${target.verdict} (${target.measured!.toFixed(2)}×)`);
  results.push({ recovery: r.name, k: r.k, volume: r.describe, rows: out, target });
}
await Promise.all(controlWorkers.map((w) => w.terminate()));
const controlRatio = median(controlRates[1]) / median(controlRates[0]);
const controlInterval = ratioInterval(controlRates[1].map((x) => [x]), controlRates[0].map((x) => [x]), mulberry32(2));
console.log(`\ncontrol (the machine, no udax): 2 threads hashing get ${controlRatio.toFixed(2)}× one thread (95% interval ${interval(controlInterval, 2)}), in the same trials`);
const loadAfter = loadavg();
console.log(`\n${availableParallelism()} cores; load average (1, 5, 15 min) before ${loadBefore.map((l) => l.toFixed(1)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(1)).join(' ')}`);
console.log(JSON.stringify({ bench: 'state-pool', trials, dir, cores: availableParallelism(), loadAverage: { before: loadBefore, after: loadAfter }, control: { ratio: controlRatio, interval: controlInterval }, results }));
