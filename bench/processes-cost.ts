// What a sync costs when the stores it writes back were made by another
// process (its harvest scans the peer's page tables through
// /proc/PID/pagemap), next to the same sync of stores made in this process,
// measured in one run, configurations interleaved round by round so drift
// hits them alike (async, sigbus or sigsegv tracker, docs/processes.md).
//   npm install && node dist/bench/processes-cost.js [--rounds N] [--dir /dev/shm] [--tracker async|sigbus|sigsegv]
// Each round, per configuration, 64 scattered pages (1 in 16 of a 4 MiB
// file) are stored, then one sync here is timed:
//   local           stored here, no other process attached (the baseline)
//   local, idle peer  stored here; a peer has the file mapped, stores nothing
//   remote          stored by the peer process
//   stopped         stored by another peer process, stopped (SIGSTOP) for the
//                   sync (sigsegv: its shootdown goes unacked, the entries
//                   are flushed and stay DIRTY)
// Then store throughput: writers in two peer processes for 1 s each, alone
// and with this process syncing in a loop. Prints a table (median, p10, p90,
// ratio to the baseline's median), then JSON.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { open } from '../src/index.js';
import { option } from './options.js';

const rounds = Number(option('rounds', '300'));
const dir = option('dir', '/dev/shm');
const tracker = option('tracker', 'async') as 'async' | 'sigbus' | 'sigsegv';
const PAGE = 4096;
const SIZE = 1024 * PAGE;
const DIRTY = 64;
const index = new URL('../src/index.js', import.meta.url).pathname;

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))];

/** A peer process: opens paths, maps them, and on "store k" stores 64
 * scattered pages of file k; on "run ms" stores in a loop for ms and
 * answers the stores made. One answer line per command. */
const peerScript = `
  import { open } from ${JSON.stringify(index)};
  import { createInterface } from 'node:readline';
  const maps = process.argv.slice(1).map((p) => open(p).map());
  let v = 0;
  createInterface({ input: process.stdin }).on('line', (line) => {
    const [op, arg] = line.split(' ');
    const m = maps[Number(arg)] ?? maps[0];
    if (op === 'store') {
      v = (v + 1) & 255;
      for (let k = 0; k < ${DIRTY}; k++) m.bytes[k * 16 * ${PAGE} + 8] = v;
      console.log('ok');
    } else if (op === 'run') {
      const end = performance.now() + Number(arg);
      let n = 0, x = 1;
      while (performance.now() < end) for (let k = 0; k < 1000; k++, n++) { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; m.bytes[(x >>> 8) % ${SIZE}] = x; }
      console.log(String(n));
    }
  });
`;

class Peer {
  readonly child: ChildProcess;
  readonly #answers: string[] = [];
  #wake: (() => void) | undefined;
  constructor(paths: string[]) {
    this.child = spawn(process.execPath, ['--input-type=module', '-e', peerScript, ...paths], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.child.stdout! }).on('line', (l) => {
      this.#answers.push(l);
      this.#wake?.();
    });
  }
  async ask(line: string): Promise<string> {
    this.child.stdin!.write(`${line}\n`);
    while (this.#answers.length === 0) await new Promise<void>((r) => (this.#wake = r));
    return this.#answers.shift()!;
  }
}

const name = (tag: string) => join(dir, `udax-processes-cost-${process.pid}-${tag}`);
const local = open(name('local'), { create: true, size: SIZE, tracker });
const idle = open(name('idle'), { create: true, size: SIZE, tracker });
const remote = open(name('remote'), { create: true, size: SIZE, tracker });
const stoppable = open(name('stopped'), { create: true, size: SIZE, tracker });
const [localMap, idleMap] = [local.map(), idle.map()];
const peer = new Peer([idle.path, remote.path]);
const stopped = new Peer([stoppable.path]);
await peer.ask('store 1');  // attached and mapped
await stopped.ask('store 0');
remote.sync();
stoppable.sync();

/** Until the kernel reports process pid stopped (SIGSTOP is asynchronous). */
const untilStopped = async (pid: number) => {
  while (!/^\S+ \(.*\) [Tt]/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) await new Promise((r) => setTimeout(r, 1));
};

const samples = new Map<string, number[]>();
const add = (n: string) => samples.get(n) ?? (samples.set(n, []), samples.get(n)!);
const timedSync = (n: string, f: typeof local) => {
  const t0 = process.hrtime.bigint();
  f.sync();
  add(n).push(Number(process.hrtime.bigint() - t0));
};
let v = 0;
const shootdownWaits: number[] = [];  // sigsegv: per remote sync, the time it waited for the peer's ack
for (let r = 0; r < rounds; r++) {
  v = (v + 1) & 255;
  for (let k = 0; k < DIRTY; k++) localMap.bytes[k * 16 * PAGE + 8] = v;
  timedSync('sync, stored here (baseline)', local);
  for (let k = 0; k < DIRTY; k++) idleMap.bytes[k * 16 * PAGE + 8] = v;
  timedSync('sync, stored here, an idle peer', idle);
  await peer.ask('store 1');
  const waitedBefore = remote.stats().shootdownTimeNs;
  timedSync('sync, stored by a peer process', remote);
  shootdownWaits.push(remote.stats().shootdownTimeNs - waitedBefore);
  await stopped.ask('store 0');
  stopped.child.kill('SIGSTOP');
  await untilStopped(stopped.child.pid!);
  timedSync('sync, stored by a stopped peer', stoppable);
  stopped.child.kill('SIGCONT');
}
const keptDirty = stoppable.stats().dirtyEntries;
// sigsegv: the shootdown round trips of the remote syncs (requests posted, time waited for acks).
const shot = remote.stats();
const shootdown = { requests: shot.shootdowns, unacked: shot.shootdownsUnacked, waitMedianNs: quantile(shootdownWaits, 0.5), waitP10Ns: quantile(shootdownWaits, 0.1), waitP90Ns: quantile(shootdownWaits, 0.9) };
const base = quantile(samples.get('sync, stored here (baseline)')!, 0.5);
const results = [...samples].map(([n, xs]) => ({ name: n, medianNs: quantile(xs, 0.5), p10Ns: quantile(xs, 0.1), p90Ns: quantile(xs, 0.9), ratio: quantile(xs, 0.5) / base }));

// Throughput: two writer processes on one file, alone, then with syncs here.
const shared = open(name('shared'), { create: true, size: SIZE, tracker });
const writers = [new Peer([shared.path]), new Peer([shared.path])];
const run = async (ms: number) => (await Promise.all(writers.map((w) => w.ask(`run ${ms}`)))).reduce((a, b) => a + Number(b), 0);
const alone = await run(1000);
let syncs = 0;
const syncLatency: number[] = [];
const flushedBefore = shared.stats().bytesFlushed;
const during = run(1000);
let done = false;
void during.then(() => { done = true; });
while (!done) {
  const t0 = process.hrtime.bigint();
  shared.sync();
  syncLatency.push(Number(process.hrtime.bigint() - t0));
  syncs++;
  await new Promise((r) => setImmediate(r));
}
const withSyncs = await during;
const pagesPerSync = (shared.stats().bytesFlushed - flushedBefore) / PAGE / syncs;

console.log(`processes cost, ${tracker}, ${rounds} rounds, ${dir}, ${DIRTY} scattered dirty pages of a 4 MiB file (ratio: to the sync of stores made here)`);
for (const r of results) {
  console.log(`${r.name.padEnd(36)} ${(r.medianNs / 1000).toFixed(1).padStart(8)} us  p10 ${(r.p10Ns / 1000).toFixed(1).padStart(7)}  p90 ${(r.p90Ns / 1000).toFixed(1).padStart(7)}  x${r.ratio.toFixed(2)}`);
}
const throughput = { storesPerSecAlone: alone, storesPerSecWithSyncs: withSyncs, syncs, pagesPerSync, syncMedianNs: quantile(syncLatency, 0.5), syncP90Ns: quantile(syncLatency, 0.9) };
console.log(`2 writer processes: ${(alone / 1e6).toFixed(2)} M stores/s alone, ${(withSyncs / 1e6).toFixed(2)} M stores/s with ${syncs} syncs from a third (${pagesPerSync.toFixed(0)} pages each, median ${(throughput.syncMedianNs / 1000).toFixed(0)} us, p90 ${(throughput.syncP90Ns / 1000).toFixed(0)} us)`);
console.log(`stopped peer: ${keptDirty} entries still DIRTY after its last sync (flushed; sigsegv: cleaned by a sync it acks)`);
if (shootdown.requests) {
  console.log(`shootdowns of the remote syncs: ${shootdown.requests} requests, ${shootdown.unacked} unacked; wait for the ack per sync: median ` +
    `${(shootdown.waitMedianNs / 1000).toFixed(1)} us, p10 ${(shootdown.waitP10Ns / 1000).toFixed(1)}, p90 ${(shootdown.waitP90Ns / 1000).toFixed(1)}`);
}
console.log(JSON.stringify({ bench: 'processes-cost', tracker, rounds, dir, results, throughput, stoppedPeerDirtyEntries: keptDirty, shootdown }));
for (const w of [peer, stopped, ...writers]) w.child.kill();
for (const f of [local, idle, remote, stoppable, shared]) {
  f.close();
  rmSync(f.path, { force: true });
}
