// The state pool: a snapshot's crash states are independent, so N worker
// threads check them at once. The calling thread takes the snapshot once;
// each worker gets its parts (StatesWire: pending operations, durable
// namespace, unit data) and its own copy of the base image and stash
// (<dir>.w<n>, <dir>.w<n>.stash; copied once per worker), and builds, checks
// and undoes the states at positions n, n + N, n + 2N, ... (round-robin: the
// enumeration's later states take more units, so chunks would not balance).
// A worker imports the recovery from a module (a function cannot be sent to
// a thread). Failures come back with their position and are merged in state
// order; with stop-at-first, a shared bound tells workers to skip positions
// after the first failure found, and only the first in order is kept, so the
// report is the one a single thread makes. Reduction (ddmin) runs in the
// calling thread, with the recovery passed to the call, on the snapshot's own
// image, which no worker touches.
import { cpSync, existsSync, rmSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { errnoError, typeError } from './errors.js';
import { fromWire } from './crash-points-pool.js';
import type { StateChoice, StatesWire, VolumeCrashState, VolumeCrashStates } from './volume-crash.js';
import type { CheckedOptions, VolumeRecoveryFailure } from './volume-check.js';

/** The module each worker imports the recovery from. */
export interface RecoveryModule {
  path: string;
  /** The export's name (default 'recover'). */
  recover?: string;
}

/** @internal What a state-pool worker is told at start. */
export interface StateWorkerSetup {
  module: Required<RecoveryModule>;
  wire: StatesWire;
  dir: string;
  worker: number;
  workers: number;
  random: number;
  sample: { seed?: number; probability?: number; k?: number };
  stopAtFirst: boolean;
  /** Int32[FIRST_FAILING], Int32[ABORT]: shared with every worker. */
  flags: SharedArrayBuffer;
}

/** @internal The first failing position found so far (stop-at-first). */
export const FIRST_FAILING = 0;
/** @internal Set when a worker failed: the others stop at their next state. */
export const ABORT = 1;

/** @internal A failure as a worker reports it. */
export interface WireFailure {
  position: number;
  kind: VolumeCrashState['kind'];
  index: number;
  seed: number | undefined;
  class: string;
  error: unknown;
  choice: StateChoice;
}

/** @internal */
export type StateWorkerMessage =
  | { type: 'failure'; failure: WireFailure }
  | { type: 'progress'; checked: number }
  | { type: 'done'; checked: number }
  | { type: 'error'; error: unknown };

/** @internal */
export function recoveryModule(m: RecoveryModule | undefined): Required<RecoveryModule> {
  if (m === undefined || m === null || typeof m !== 'object' || typeof m.path !== 'string' || m.path === '') {
    throw typeError('workers needs module: { path, recover? }, the module each worker imports the recovery from (it exports the same recover)');
  }
  if (m.recover !== undefined && (typeof m.recover !== 'string' || m.recover === '')) throw typeError('module.recover must be an export name');
  return { path: isAbsolute(m.path) ? m.path : resolve(m.path), recover: m.recover ?? 'recover' };
}

/** @internal Each worker's state directory. */
export const workerDirs = (dir: string, workers: number) => Array.from({ length: workers }, (_, n) => `${dir}.w${n}`);

/** @internal Check the states of a snapshot (enumerated, then o.random
 * sampled) on `workers` threads; failures in state order, unreduced; o.checked counts. */
export async function checkStatesPooled(states: VolumeCrashStates, o: CheckedOptions, workers: number, module: Required<RecoveryModule>):
  Promise<{ failures: VolumeRecoveryFailure[]; choices: StateChoice[] }> {
  const dirs = workerDirs(states.dir, workers);
  for (const d of dirs.flatMap((d) => [d, `${d}.stash`])) if (existsSync(d)) throw errnoError('EEXIST', 'mkdir', d, 'checkVolumeRecovery makes this worker directory: it must not exist');
  const total = states.count + o.random;
  const flags = new SharedArrayBuffer(8);
  new Int32Array(flags)[FIRST_FAILING] = 0x7fffffff;
  const wire = states.toWire();
  const found: WireFailure[] = [];
  const checked = new Array<number>(workers).fill(0);
  const started: Worker[] = [];
  let error: unknown;
  try {
    for (const d of dirs) {
      cpSync(states.dir, d, { recursive: true });
      cpSync(`${states.dir}.stash`, `${d}.stash`, { recursive: true });
    }
    await Promise.all(dirs.map((dir, worker) => new Promise<void>((done) => {
      const setup: StateWorkerSetup = { module, wire, dir, worker, workers, random: o.random, sample: { seed: o.seed, probability: o.probability, k: o.randomK }, stopAtFirst: o.stop === 'first', flags };
      const w = new Worker(new URL('./volume-check-worker.js', import.meta.url), { workerData: setup });
      started.push(w);
      let finished = false;
      const finish = () => {
        finished = true;
        done();
      };
      // A worker that dies (or cannot load the module) fails the call; one that exits after 'done' is through.
      const fail = (e: unknown) => {
        if (finished) return;
        error ??= e;
        Atomics.store(new Int32Array(flags), ABORT, 1);  // the others stop, close their descriptors and finish
        finish();
      };
      w.on('message', (m: StateWorkerMessage) => {
        if (m.type === 'failure') found.push(m.failure);
        else if (m.type === 'error') fail(fromWire(m.error));
        else {
          checked[worker] = m.checked;
          o.progress?.(checked.reduce((a, b) => a + b, 0), total);
          if (m.type === 'done') finish();
        }
      });
      w.on('error', fail);
      w.on('exit', (code) => fail(new Error(`a crash-state worker exited (code ${code})`)));
    })));
  } finally {
    for (const w of started) w.removeAllListeners('exit');
    await Promise.all(started.map((w) => w.terminate()));
    for (const d of dirs) for (const p of [d, `${d}.stash`]) rmSync(p, { recursive: true, force: true });
  }
  if (error !== undefined) throw error;
  found.sort((a, b) => a.position - b.position);
  const kept = o.stop === 'first' ? found.slice(0, 1) : found;
  o.checked += kept.length > 0 && o.stop === 'first' ? kept[0].position + 1 : checked.reduce((a, b) => a + b, 0);
  return {
    failures: kept.map((f) => ({
      kind: f.kind, index: f.index, seed: f.seed, class: f.class, error: fromWire(f.error),
      operations: f.choice.operations.map((i) => states.pending[i]), units: f.choice.units.map((u) => states.units[u]),
    })),
    choices: kept.map((f) => f.choice),
  };
}
