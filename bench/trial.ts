// One trial: a fresh `node` process runs one workload through one variant
// and prints its samples as one JSON line. With threads > 1 each thread works
// on its own part of the file (worker_threads attaching to the owner's set-up).
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { open, PAGE_SIZE, type DaxStats } from '../src/index.js';
import { mapUntracked } from '../src/testing.js';
import { attachTarget, createOwner, createProcessesOwner, openPeerTarget, type Partition, type SharedVariant, type VariantName } from './variants.js';
import { workloadByName, type CompanionResult, type RunContext } from './workloads.js';

export interface TrialSpec {
  workload: string;
  variant: VariantName;
  threads: number;
  /** The trial creates this file and removes it when done. */
  path: string;
  size: number;
  entrySize: number;
  budgetMs: number;
  seed: number;
}

export interface TrialResult {
  /** ns per operation, one per measured round (all threads together). */
  samples: number[];
  /** udax's own counters for the trial (faults, time in the handler, ...). */
  detail?: Record<string, number>;
  /** The companion's samples (ns per operation: each of its syncs). */
  companionSamples?: number[];
}

interface Run {
  samples: number[];
  companion?: CompanionResult;
}

/** Split the file into per-thread parts, 2 MiB aligned where it fits. */
export function partitions(size: number, threads: number): Partition[] {
  const align = size / threads >= 2 ** 21 ? 2 ** 21 : 4096;
  const each = Math.floor(size / threads / align) * align;
  if (each === 0) throw new RangeError(`size ${size} is too small for ${threads} threads`);
  return Array.from({ length: threads }, (_, k) => ({ offset: k * each, length: k === threads - 1 ? size - k * each : each }));
}

function context(spec: TrialSpec, thread: number): RunContext {
  return { budgetNs: spec.budgetMs * 1e6, entrySize: spec.entrySize, seed: spec.seed + thread * 7919 };
}

interface WorkerInput {
  spec: TrialSpec;
  shared: SharedVariant;
  part: Partition;
  thread: number;
  /** For the companion thread: the stop flag the writers' end sets. */
  stop?: SharedArrayBuffer;
}

/** The writers, each on its part, and the workload's companion thread, if
 * any, on the whole file until the writers are done. */
async function runThreads(spec: TrialSpec, shared: SharedVariant, parts: Partition[]): Promise<Run> {
  const workload = workloadByName(spec.workload)!;
  const stop = new SharedArrayBuffer(4);
  const companion = workload.companion
    ? new Worker(new URL(import.meta.url), { workerData: { spec, shared, part: { offset: 0, length: spec.size }, thread: parts.length, stop } satisfies WorkerInput })
    : undefined;
  const companionDone = companion && new Promise<CompanionResult>((resolve, reject) => {
    companion.on('message', (m: unknown) => { if (m !== 'ready') resolve(m as CompanionResult); });
    companion.once('error', reject);
  });
  const workers = parts.map((part, thread) => new Worker(new URL(import.meta.url), { workerData: { spec, shared, part, thread } satisfies WorkerInput }));
  const ready = workers.map((w) => new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
  }));
  await Promise.all(ready);
  const done = workers.map((w) => new Promise<number[]>((resolve, reject) => {
    w.once('message', (samples: number[]) => resolve(samples));
    w.once('error', reject);
  }));
  companion?.postMessage('go');
  for (const w of workers) w.postMessage('go');  // start together
  const all = await Promise.all(done);
  Atomics.store(new Int32Array(stop), 0, 1);
  const measured = await companionDone;
  await Promise.all([...workers, ...(companion ? [companion] : [])].map((w) => w.terminate()));
  return { samples: all.flat(), companion: measured };
}

// ---- a workload across processes ---------------------------------------------

/** What a peer process gets on its command line. */
interface PeerInput {
  spec: TrialSpec;
  part: Partition;
  thread: number;
  /** For the companion: the file whose first word the writers' end sets. */
  stopPath?: string;
}

/** A peer process of this trial: answers 'ready' once it has the file open
 * and mapped, starts on 'go', and prints its result as one JSON line. */
class PeerProcess {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  readonly result: Promise<unknown>;

  constructor(input: PeerInput) {
    this.child = spawn(process.execPath, [new URL(import.meta.url).pathname, '--peer', JSON.stringify(input)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: this.child.stdout! });
    const exited = new Promise<never>((_, reject) => this.child.once('exit', (code, signal) =>
      reject(new Error(`trial peer ${input.thread} exited (${signal ?? `exit ${code}`}) before it answered`))));
    const next = () => Promise.race([new Promise<string>((resolve) => lines.once('line', resolve)), exited]);
    this.ready = next().then(() => undefined);
    this.result = this.ready.then(next).then((line) => JSON.parse(line));
    this.result.catch(() => undefined);  // awaited by the trial; a failure before that must not be unhandled
  }

  go(): void {
    this.child.stdin!.write('go\n');
  }
}

/** The writers, each a process on its part, and the companion, a process on
 * the whole file until the writers are done: each opens the file itself, so
 * every sync harvests (async) or write-protects (sigbus) the others. */
async function runProcesses(spec: TrialSpec, parts: Partition[]): Promise<Run> {
  const workload = workloadByName(spec.workload)!;
  const stopPath = `${spec.path}.stop`;
  rmSync(stopPath, { force: true });
  const stopFile = open(stopPath, { create: true, size: PAGE_SIZE });
  const peers: PeerProcess[] = [];
  try {
    const flag = mapUntracked(stopFile).bytes;
    const stop = new Int32Array(flag.buffer, flag.byteOffset, 1);
    const companion = workload.companion
      ? new PeerProcess({ spec, part: { offset: 0, length: spec.size }, thread: parts.length, stopPath })
      : undefined;
    const writers = parts.map((part, thread) => new PeerProcess({ spec, part, thread }));
    peers.push(...writers, ...(companion ? [companion] : []));
    await Promise.all(peers.map((p) => p.ready));
    for (const p of peers) p.go();
    const all = await Promise.all(writers.map((w) => w.result as Promise<number[]>));
    Atomics.store(stop, 0, 1);
    const measured = companion && (await companion.result) as CompanionResult;
    return { samples: all.flat(), companion: measured };
  } finally {
    for (const p of peers) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    stopFile.close();
    rmSync(stopPath, { force: true });
  }
}

/** A peer process: open and map the file, then run the writer or companion. */
async function peerMain(input: PeerInput): Promise<void> {
  const workload = workloadByName(input.spec.workload)!;
  const target = openPeerTarget(input.spec.variant, input.spec.path);
  const stopFile = input.stopPath === undefined ? undefined : open(input.stopPath);
  const flag = stopFile && mapUntracked(stopFile).bytes;
  const lines = createInterface({ input: process.stdin });
  process.stdout.write('ready\n');
  await new Promise((resolve) => lines.once('line', resolve));
  const result = flag
    ? workload.companion!(target, input.part, new Int32Array(flag.buffer, flag.byteOffset, 1))
    : workload.run(target, input.part, context(input.spec, input.thread));
  target.close();
  stopFile?.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  lines.close();
}

/** udax's counters over the run, per fault and per sync. */
function counters(before: DaxStats, after: DaxStats): Record<string, number> {
  const faults = after.writeFaults - before.writeFaults;
  const syncs = after.syncs - before.syncs;
  return {
    writeFaults: faults,
    handlerNsPerFault: faults ? (after.faultTimeNs - before.faultTimeNs) / faults : 0,
    syncs,
    entriesPerSync: syncs ? (after.entriesCleaned - before.entriesCleaned) / syncs : 0,
    syncNsPerSync: syncs ? (after.syncTimeNs - before.syncTimeNs) / syncs : 0,
    coarsened: after.coarsenedBlocks + after.coarsenedMappings,
    pagesHarvested: after.pagesHarvested - before.pagesHarvested,
    harvestNsPerSync: syncs ? (after.harvestTimeNs - before.harvestTimeNs) / syncs : 0,
  };
}

async function main(spec: TrialSpec): Promise<TrialResult> {
  const workload = workloadByName(spec.workload);
  if (!workload) throw new RangeError(`unknown workload '${spec.workload}'`);
  rmSync(spec.path, { force: true });
  const setup = { variant: spec.variant, path: spec.path, size: spec.size, entrySize: spec.entrySize };
  const parts = partitions(spec.size, workload.threads ?? spec.threads);
  // Across processes the file is only held open here; else the owner maps it.
  const owner = workload.processes ? { ...createProcessesOwner(setup), start: () => runProcesses(spec, parts) } : (() => {
    const o = createOwner(setup);
    const start = async (): Promise<Run> => (parts.length === 1 && !workload.companion
      ? { samples: workload.run(o.target(parts[0]), parts[0], context(spec, 0)) }
      : runThreads(spec, o.shared, parts));
    return { ...o, start };
  })();
  try {
    const before = owner.stats?.();
    const run = await owner.start();
    const after = owner.stats?.();
    const detail = { ...(before && after ? counters(before, after) : {}), ...run.companion?.detail };
    return { samples: run.samples, detail: Object.keys(detail).length ? detail : undefined, companionSamples: run.companion?.samples };
  } finally {
    owner.dispose();
    rmSync(spec.path, { force: true });
  }
}

if (isMainThread && process.argv[2] === '--peer') {
  peerMain(JSON.parse(process.argv[3]) as PeerInput).then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(`${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
} else if (isMainThread) {
  const text = process.argv[2];
  if (!text) {
    process.stderr.write('usage: node trial.js <trial spec as JSON> (started by `udax bench`)\n');
    process.exit(2);
  }
  main(JSON.parse(text) as TrialSpec).then(
    (result) => process.stdout.write(JSON.stringify(result) + '\n'),
    (e) => {
      process.stderr.write(`${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
} else {
  const input = workerData as WorkerInput;
  const workload = workloadByName(input.spec.workload)!;
  const target = attachTarget(input.shared, input.part);
  parentPort!.postMessage('ready');
  parentPort!.once('message', () => {
    const result = input.stop
      ? workload.companion!(target, input.part, new Int32Array(input.stop))
      : workload.run(target, input.part, context(input.spec, input.thread));
    target.close();
    parentPort!.postMessage(result);
  });
}
