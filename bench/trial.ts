// One trial: a fresh `node` process runs one workload through one variant
// and prints its samples as one JSON line. With threads > 1 each thread works
// on its own part of the file (worker_threads attaching to the owner's set-up).
import { rmSync } from 'node:fs';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { attachTarget, createOwner, type Partition, type SharedVariant, type VariantName } from './variants.js';
import { workloadByName, type RunContext } from './workloads.js';

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
async function runThreads(spec: TrialSpec, shared: SharedVariant, parts: Partition[]): Promise<{ samples: number[]; companion?: Record<string, number> }> {
  const workload = workloadByName(spec.workload)!;
  const stop = new SharedArrayBuffer(4);
  const companion = workload.companion
    ? new Worker(new URL(import.meta.url), { workerData: { spec, shared, part: { offset: 0, length: spec.size }, thread: parts.length, stop } satisfies WorkerInput })
    : undefined;
  const companionDone = companion && new Promise<Record<string, number>>((resolve, reject) => {
    companion.on('message', (m: unknown) => { if (m !== 'ready') resolve(m as Record<string, number>); });
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

async function main(spec: TrialSpec): Promise<TrialResult> {
  const workload = workloadByName(spec.workload);
  if (!workload) throw new RangeError(`unknown workload '${spec.workload}'`);
  rmSync(spec.path, { force: true });
  const owner = createOwner({ variant: spec.variant, path: spec.path, size: spec.size, entrySize: spec.entrySize });
  try {
    const threads = workload.threads ?? spec.threads;
    const parts = partitions(spec.size, threads);
    const before = owner.stats?.();
    const run = threads === 1 && !workload.companion
      ? { samples: workload.run(owner.target(parts[0]), parts[0], context(spec, 0)), companion: undefined }
      : await runThreads(spec, owner.shared, parts);
    const samples = run.samples;
    const after = owner.stats?.();
    let detail: Record<string, number> | undefined;
    if (before && after) {
      const faults = after.writeFaults - before.writeFaults;
      const syncs = after.syncs - before.syncs;
      detail = {
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
    if (run.companion) detail = { ...detail, ...run.companion };
    return { samples, detail };
  } finally {
    owner.dispose();
    rmSync(spec.path, { force: true });
  }
}

if (isMainThread) {
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
