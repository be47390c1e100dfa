// The crash-point pool: points are independent (each replays the workload
// from scratch on its own volume), so N worker threads explore N points at
// once. A worker imports the user's module (a function cannot be sent to a
// thread) and runs explorePoint, with its own volume and states directories
// (<volumeDir>.w<n>, <volumeDir>.w<n>.states). Results come back in point
// order; with stop-at-first, the points after the first failing one are
// dropped, so the report is the one a single thread would make.
import { rmSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { DaxError, typeError } from './errors.js';
import type { PointContext, PointJob, PointResult } from './crash-points.js';
import type { VolumeRecoveryFailure } from './volume-check.js';

/** A pool's worker thread. It does not inherit the process's eval options
 * (`node --input-type=module -e ...` would make Worker refuse a file). */
export function poolWorker(url: URL, workerData: unknown): Worker {
  const execArgv: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') { i++; continue; }
    if (a.startsWith('--input-type') || a.startsWith('--eval=') || a.startsWith('--print=')) continue;
    execArgv.push(a);
  }
  return new Worker(url, { workerData, execArgv });
}

/** The module a worker imports: its path and the names of its exports. */
export interface PoolModule {
  path: string;
  workload?: string;
  recover?: string;
}

/** @internal What a worker is told at start. */
export interface WorkerSetup {
  module: Required<PoolModule>;
  volumeDir: string;
  statesDir: string;
  volumeOptions: object;
  at: PointContext['at'];
  check: Omit<PointContext['check'], 'progress'>;
}

/** @internal A message from a worker. */
export type WorkerMessage =
  | { type: 'progress'; index: number; checked: number; total: number }
  | { type: 'done'; result: PointResult }
  | { type: 'error'; error: unknown };

/** @internal */
export function poolModule(m: PoolModule | undefined): Required<PoolModule> {
  if (m === undefined || typeof m !== 'object' || typeof m.path !== 'string' || m.path === '') {
    throw typeError('workers > 1 needs module: { path, workload?, recover? }, the module each worker imports (it exports the same workload and recover)');
  }
  const name = (what: string, v: unknown, fallback: string) => {
    if (v === undefined) return fallback;
    if (typeof v !== 'string' || v === '') throw typeError(`module.${what} must be an export name`);
    return v;
  };
  return { path: isAbsolute(m.path) ? m.path : resolve(m.path), workload: name('workload', m.workload, 'workload'), recover: name('recover', m.recover, 'recover') };
}

/** @internal */
export function poolDirs(ctx: Pick<PointContext, 'volumeDir'>, workers: number): { volumeDir: string; statesDir: string }[] {
  return Array.from({ length: workers }, (_, n) => ({ volumeDir: `${ctx.volumeDir}.w${n}`, statesDir: `${ctx.volumeDir}.w${n}.states` }));
}

/** @internal A thrown value as it crosses a thread: an Error by name, message and code. */
export function toWire(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const code = (e as { code?: unknown }).code;
  return { wireError: true, name: e.name, message: e.message, ...(typeof code === 'string' ? { code } : {}) };
}

/** @internal */
export function fromWire(e: unknown): unknown {
  const w = e as { wireError?: boolean; name: string; message: string; code?: string } | null;
  if (!w || typeof w !== 'object' || w.wireError !== true) return e;
  const err = w.name === 'DaxError' && w.code !== undefined ? new DaxError(w.message, { code: w.code }) : new Error(w.message);
  if (err.name !== w.name) err.name = w.name;
  if (w.code !== undefined) Object.assign(err, { code: w.code });
  return err;
}

/** @internal */
export const failuresToWire = (fs: VolumeRecoveryFailure[]) => fs.map((f) => ({ ...f, error: toWire(f.error) }));

interface Slot {
  worker: Worker;
  busy: ((m: WorkerMessage) => void) | undefined;
  dirs: { volumeDir: string; statesDir: string };
}

/** @internal */
export class PointPool {
  readonly #slots: Slot[];
  #failed: unknown;

  constructor(ctx: PointContext, module: Required<PoolModule>, workers: number) {
    const { progress: _progress, ...check } = ctx.check;
    this.#slots = poolDirs(ctx, workers).map((dirs) => {
      const setup: WorkerSetup = { module, ...dirs, volumeOptions: ctx.volumeOptions, at: ctx.at, check };
      const worker = poolWorker(new URL('./crash-points-worker.js', import.meta.url), setup);
      const slot: Slot = { worker, busy: undefined, dirs };
      worker.on('message', (m: WorkerMessage) => slot.busy?.(m));
      // A worker that dies (or fails to load the module) fails the run: its job, or the next.
      const die = (error: unknown) => {
        this.#failed ??= error;
        slot.busy?.({ type: 'error', error: toWire(error) });
      };
      worker.on('error', die);
      worker.on('exit', (code) => die(new Error(`a crash-point worker exited (code ${code})`)));
      return slot;
    });
  }

  /** Explore jobs on the workers; results in job order. */
  async run(jobs: PointJob[], progressOf: (i: number) => ((checked: number, total: number) => void) | undefined, stopAtFirst: boolean): Promise<PointResult[]> {
    const results: (PointResult | undefined)[] = new Array(jobs.length);
    let next = 0;
    let firstFailing = Infinity;
    let error: unknown;
    const drive = async (slot: Slot) => {
      while (error === undefined && next < jobs.length && next < firstFailing) {
        const job = jobs[next++];
        const progress = progressOf(job.index);
        const m = await new Promise<WorkerMessage & { type: 'done' | 'error' }>((resolveJob) => {
          if (this.#failed !== undefined) return resolveJob({ type: 'error', error: toWire(this.#failed) });
          slot.busy = (msg) => {
            if (msg.type === 'progress') progress?.(msg.checked, msg.total);
            else resolveJob(msg);
          };
          slot.worker.postMessage(job);
        });
        slot.busy = undefined;
        if (m.type === 'error') {
          error ??= fromWire(m.error);
          return;
        }
        const r = m.result;
        r.failures = r.failures.map((f) => ({ ...f, error: fromWire(f.error) }));
        results[job.index] = r;
        if (stopAtFirst && r.failures.length > 0) firstFailing = Math.min(firstFailing, job.index);
      }
    };
    await Promise.all(this.#slots.map(drive));
    if (error !== undefined) throw error;
    const done = results.filter((r): r is PointResult => r !== undefined);
    return stopAtFirst ? done.filter((r) => r.point.index <= firstFailing) : done;
  }

  async close(): Promise<void> {
    for (const s of this.#slots) s.worker.removeAllListeners('exit');
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
    for (const { dirs } of this.#slots) for (const d of [dirs.volumeDir, dirs.statesDir, `${dirs.statesDir}.stash`]) rmSync(d, { recursive: true, force: true });
  }
}
