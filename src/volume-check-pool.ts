// The state pool: a snapshot's crash states are independent, so N worker
// threads check them at once. The calling thread takes the snapshot once and
// plans the states in the order one thread checks them; each worker gets the
// snapshot's parts (StatesWire: pending operations, durable namespace, each
// file's durable size and media tail, the units' bytes in one shared buffer)
// and copies the base image and stash itself (<dir>.w<n>, <dir>.w<n>.stash),
// then builds, checks and undoes the batches of consecutive states it is
// sent. Batches are sized to take about BATCH_MS each (from the worker's own
// time per state), and each worker has two in flight, so it never waits for
// the calling thread; a slow state delays one batch, not a fixed share.
// A worker imports the recovery from a module (a function cannot be sent to
// a thread). Failures come back with their position and are merged in state
// order; with stop-at-first, a shared bound tells workers to skip positions
// after the first failure found, and only the first in order is kept, so the
// report is the one a single thread makes. Reduction (ddmin) runs in the
// calling thread, with the recovery passed to the call, on the snapshot's own
// image, which no worker touches.
//
// Workers outlive the call: a started worker has paid for its isolate, the
// addon, the module and a warm JIT, so workers of the same module are kept
// (unreferenced: they never keep the process alive) and reused by the next
// call; one idle for IDLE_MS ends. A worker that failed is not reused.
import { existsSync, rmSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { errnoError, typeError } from './errors.js';
import { fromWire, poolWorker } from './crash-points-pool.js';
import type { PlannedState, StateChoice, StatesWire, VolumeCrashState, VolumeCrashStates } from './volume-crash.js';
import type { CheckedOptions, VolumeRecoveryFailure } from './volume-check.js';

/** The module each worker imports the recovery from. */
export interface RecoveryModule {
  path: string;
  /** The export's name (default 'recover'). */
  recover?: string;
}

/** @internal The first failing position found so far (stop-at-first). */
export const FIRST_FAILING = 0;
/** @internal Set when a worker failed: the others skip their remaining states. */
export const ABORT = 1;

/** A batch's target duration: long enough that messages cost little next to
 * it, short enough for progress, stop-at-first and the last batches' balance. */
const BATCH_MS = 20;
const MAX_BATCH = 4096;
/** An idle worker ends after this long. */
const IDLE_MS = 10_000;

/** @internal Calling thread -> worker. Each message gets one reply. */
export type StateWorkerRequest =
  | { type: 'call'; recover: string; wire: StatesWire; base: string; dir: string; flags: SharedArrayBuffer; stopAtFirst: boolean }
  | { type: 'batch'; first: number; states: Float64Array }
  | { type: 'end' };

/** @internal A failure as a worker reports it: its position, its verdict
 * and the choice of the state it built (the model's kept operations, the
 * units present). */
export interface WireFailure {
  position: number;
  kind: VolumeCrashState['kind'];
  index: number;
  seed: number | undefined;
  class: string;
  error: unknown;
  choice: StateChoice;
}

/** @internal Worker -> calling thread: 'ready' to 'call', 'checked' to
 * 'batch', 'ended' to 'end'; 'error' to any of them. */
export type StateWorkerReply =
  | { type: 'ready' }
  | { type: 'checked'; checked: number; ms: number; failures: WireFailure[] }
  | { type: 'ended' }
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

/** @internal Planned states as numbers: per state kind (0 enumerated, 1
 * random), index, seed, the operation count and indices, the unit count and
 * indices. One transferable buffer per batch, not an object graph to clone. */
export function encodeBatch(batch: readonly PlannedState[]): Float64Array {
  const out = new Float64Array(batch.reduce((n, p) => n + 5 + p.choice.operations.length + p.choice.units.length, 0));
  let at = 0;
  for (const p of batch) {
    out[at++] = p.kind === 'random' ? 1 : 0;
    out[at++] = p.index;
    out[at++] = p.seed ?? 0;
    out[at++] = p.choice.operations.length;
    for (const i of p.choice.operations) out[at++] = i;
    out[at++] = p.choice.units.length;
    for (const u of p.choice.units) out[at++] = u;
  }
  return out;
}

/** @internal encodeBatch's inverse. */
export function decodeBatch(states: Float64Array): PlannedState[] {
  const out: PlannedState[] = [];
  for (let at = 0; at < states.length;) {
    const random = states[at++] === 1;
    const index = states[at++];
    const seed = states[at++];
    const operations = Array.from(states.subarray(at + 1, at + 1 + states[at]));
    at += 1 + operations.length;
    const units = Array.from(states.subarray(at + 1, at + 1 + states[at]));
    at += 1 + units.length;
    out.push({ index, kind: random ? 'random' : 'enumerated', seed: random ? seed : undefined, choice: { operations, units } });
  }
  return out;
}

/** One worker thread; its replies come in request order, one per request. */
class StateWorker {
  readonly worker: Worker;
  /** The module's path: a worker imports it once and serves any of its exports. */
  readonly key: string;
  #waiting: ((r: StateWorkerReply) => void)[] = [];
  /** Why it cannot be used any more (it died, or reported an error). */
  failed: unknown;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(key: string) {
    this.key = key;
    this.worker = poolWorker(new URL('./volume-check-worker.js', import.meta.url), { path: key });
    this.worker.on('message', (r: StateWorkerReply) => {
      if (r.type === 'error') this.failed ??= fromWire(r.error);
      this.#waiting.shift()?.(r);
    });
    const die = (e: unknown) => {
      this.failed ??= e;
      dropIdle(this);
      for (const w of this.#waiting.splice(0)) w({ type: 'error', error: e });
    };
    this.worker.on('error', die);
    this.worker.on('exit', (code) => die(new Error(`a crash-state worker exited (code ${code})`)));
  }

  /** Post m; resolves with its reply (an error reply if the worker dies). */
  request(m: StateWorkerRequest, transfer: ArrayBuffer[] = []): Promise<StateWorkerReply> {
    if (this.failed !== undefined) return Promise.resolve({ type: 'error', error: this.failed });
    return new Promise((reply) => {
      this.#waiting.push(reply);
      this.worker.postMessage(m, transfer);
    });
  }

  /** In use by a call: it keeps the process alive until the call ends. */
  take(): this {
    clearTimeout(this.#idleTimer);
    this.worker.ref();
    return this;
  }

  idle(): void {
    this.worker.unref();
    this.#idleTimer = setTimeout(() => {
      dropIdle(this);
      void this.worker.terminate();
    }, IDLE_MS).unref();
  }
}

/** Started workers not in a call, by module path. */
const idleWorkers = new Map<string, StateWorker[]>();

function dropIdle(w: StateWorker): void {
  const list = idleWorkers.get(w.key);
  const i = list?.indexOf(w) ?? -1;
  if (i >= 0) list!.splice(i, 1);
}

/** n workers for module: idle ones first, then new ones. */
function takeWorkers(module: Required<RecoveryModule>, n: number): StateWorker[] {
  const list = idleWorkers.get(module.path) ?? [];
  const reused = list.splice(0, n);
  while (reused.length < n) reused.push(new StateWorker(module.path));
  return reused.map((w) => w.take());
}

/** Back to the idle list, or ended when it failed. */
async function giveBack(ws: StateWorker[]): Promise<void> {
  await Promise.all(ws.map(async (w) => {
    if (w.failed !== undefined) {
      w.worker.removeAllListeners('exit');
      await w.worker.terminate();
      return;
    }
    let list = idleWorkers.get(w.key);
    if (!list) idleWorkers.set(w.key, (list = []));
    list.push(w);
    w.idle();
  }));
}

/** Every state in the one-thread order (enumerated, then o.random sampled). */
function* planAll(states: VolumeCrashStates, o: CheckedOptions): Generator<PlannedState> {
  yield* states.planned();
  yield* states.plannedSample(o.random, { seed: o.seed, probability: o.probability, k: o.randomK });
}

/** @internal Check the states of a snapshot (enumerated, then o.random
 * sampled) on `workers` threads; failures in state order, unreduced; o.checked counts. */
export async function checkStatesPooled(states: VolumeCrashStates, o: CheckedOptions, workers: number, module: Required<RecoveryModule>):
  Promise<{ failures: VolumeRecoveryFailure[]; choices: StateChoice[] }> {
  const total = states.count + o.random;
  const n = Math.max(1, Math.min(workers, total));
  const dirs = workerDirs(states.dir, n);
  for (const d of dirs.flatMap((d) => [d, `${d}.stash`])) if (existsSync(d)) throw errnoError('EEXIST', 'mkdir', d, 'checkVolumeRecovery makes this worker directory: it must not exist');
  const flags = new SharedArrayBuffer(8);
  const shared = new Int32Array(flags);
  shared[FIRST_FAILING] = 0x7fffffff;
  const wire = states.toWire();
  const plan = planAll(states, o);
  const found: WireFailure[] = [];
  let position = 0;
  let planned = true;
  let checked = 0;
  let error: unknown;
  const fail = (e: unknown) => {
    error ??= e;
    Atomics.store(shared, ABORT, 1);  // the others skip their remaining states and finish
  };
  /** The next batch of size states, or none when the plan is through (or stopped). */
  const nextBatch = (size: number): { first: number; batch: PlannedState[] } | undefined => {
    const first = position;
    const batch: PlannedState[] = [];
    while (planned && batch.length < size && error === undefined && position <= Atomics.load(shared, FIRST_FAILING)) {
      const r = plan.next();
      if (r.done) planned = false;
      else {
        batch.push(r.value);
        position++;
      }
    }
    return batch.length > 0 ? { first, batch } : undefined;
  };
  const ws = takeWorkers(module, n);
  try {
    /** One worker's part: set up, then batches (two in flight) until the plan is through. */
    const drive = async (w: StateWorker, dir: string) => {
      const ready = await w.request({ type: 'call', recover: module.recover, wire, base: states.dir, dir, flags, stopAtFirst: o.stop === 'first' });
      if (ready.type === 'error') return fail(fromWire(ready.error));
      let size = 8;
      const lane = async () => {
        for (let next = nextBatch(size); next; next = nextBatch(size)) {
          const encoded = encodeBatch(next.batch);
          const r = await w.request({ type: 'batch', first: next.first, states: encoded }, [encoded.buffer as ArrayBuffer]);
          if (r.type === 'error') return fail(fromWire(r.error));
          if (r.type !== 'checked') return fail(new Error(`a crash-state worker answered ${r.type} to a batch`));
          checked += r.checked;
          for (const f of r.failures) {
            found.push(f);
            if (o.stop === 'first') for (let cur = Atomics.load(shared, FIRST_FAILING); f.position < cur; cur = Atomics.load(shared, FIRST_FAILING)) {
              if (Atomics.compareExchange(shared, FIRST_FAILING, cur, f.position) === cur) break;
            }
          }
          if (r.checked > 0) size = Math.max(1, Math.min(MAX_BATCH, Math.floor(BATCH_MS / Math.max(r.ms / r.checked, 1e-3))));
          try {
            o.progress?.(checked, total);
          } catch (e) {
            return fail(e);  // as in the calling thread, a throw from progress ends the call
          }
        }
      };
      await Promise.all([lane(), lane()]);
    };
    await Promise.all(ws.map((w, i) => drive(w, dirs[i])));
  } finally {
    // Each worker closes its states (and descriptors) before its directory goes.
    await Promise.all(ws.map((w) => w.request({ type: 'end' })));
    for (const d of dirs) for (const p of [d, `${d}.stash`]) rmSync(p, { recursive: true, force: true });
    await giveBack(ws);
  }
  if (error !== undefined) throw error;
  found.sort((a, b) => a.position - b.position);
  const kept = o.stop === 'first' ? found.slice(0, 1) : found;
  o.checked += kept.length > 0 && o.stop === 'first' ? kept[0].position + 1 : checked;
  return {
    failures: kept.map((f) => ({
      kind: f.kind, index: f.index, seed: f.seed, class: f.class, error: fromWire(f.error),
      operations: f.choice.operations.map((i) => states.pending[i]), units: f.choice.units.map((u) => states.units[u]),
    })),
    choices: kept.map((f) => f.choice),
  };
}
