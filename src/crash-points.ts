// Crash points without hand work (docs/volumes.md, "Crash points"): run a
// workload on a fresh volume and explore the volume's crash states at every
// fsync (before and after) or every call.
//
// Stopping at a point is deterministic replay: a first run counts the points
// (an observer on the volume, Volume.observe); then, for each point i, the
// workload runs again from scratch on a fresh volume, and when it reaches
// point i the observer snapshots the volume's crash states (the snapshot is
// taken inside the call, so it is the volume at that instant) and throws a
// stop signal that unwinds the workload. Every later call of the volume
// throws it too, so a workload that catches it cannot change what was
// snapshotted (it could not anyway: the snapshot is a copy). The states are
// then checked with the workload stopped: recover runs outside the
// workload's stack, and whatever the workload recorded (commits that
// returned) is what it had recorded at the point. A replay that makes other
// calls than the first run is ERR_UDAX_NONDETERMINISTIC.
import { existsSync, rmSync } from 'node:fs';
import { errnoError, rangeError, typeError, udaxError } from './errors.js';
import { checkPath } from './file.js';
import { METADATA_MODELS, type MetadataModelName } from './metadata.js';
import * as check from './validate.js';
import { openVolume, SYNC_CALLS, type Volume, type VolumeCall, type VolumeEvent, type VolumeOptions } from './volume.js';
import type { VolumeCrashState, VolumeCrashStates } from './volume-crash.js';
import { checkOptions, checkStates, describe, type CheckedOptions, type VolumeRecoveryFailure } from './volume-check.js';
import { PointPool, poolDirs, poolModule, type PoolModule } from './crash-points-pool.js';

/** One instant of the workload at which the volume is crashed. */
export interface CrashPoint {
  /** 0-based, in the order the workload reaches them. */
  index: number;
  /** 'before': the call is about to start; 'after': it has returned. */
  phase: 'before' | 'after';
  call: VolumeCall;
  name: string;
  to?: string;
  /** "before fsync 'db.tmp'". */
  description: string;
}

/** The user's code: deterministic (the same calls on the volume every run). */
export type CrashPointWorkload = (volume: Volume) => void | Promise<void>;

export interface CrashPointInfo {
  point: CrashPoint;
  state: VolumeCrashState;
  metadata: MetadataModelName;
}

/** As VolumeRecoverFn: true or nothing accepts; false, a class string
 * ('lost-commit', 'corrupt', ...) or a throw is a violation. */
export type CrashPointRecoverFn = (dir: string, info: CrashPointInfo) => boolean | string | void;

export interface ExploreCrashPointsOptions {
  /** 'fsync' (default): before and after each fsync, msync and directory
   * fsync. 'operation': before and after every call (create, unlink,
   * rename, mkdir, rmdir, write, resize and the syncs). */
  at?: 'fsync' | 'operation';
  /** At most k units per enumerated state (default 1); includeAll and limit
   * as for crashStates. */
  k?: number;
  includeAll?: boolean;
  limit?: number;
  /** Also check this many seeded random states per point (default 0). */
  samples?: number;
  seed?: number;
  probability?: number;
  /** The metadata model (default 'ext4/xfs'), or 'both' (each in turn). */
  metadata?: MetadataModelName | 'both';
  /** 'first' (default): stop at the first violation; 'all': every point,
   * every state. */
  stop?: 'first' | 'all';
  /** Reduce the first violation of each class at each point (default true). */
  reduce?: boolean;
  /** Where states are built (default `<volumeDir>.states`; must not exist). */
  dir?: string;
  /** The volume's persistence options (granularity, tracker, ...). */
  volume?: Omit<VolumeOptions, 'metadata' | 'create'>;
  /** After each state: where the run is. */
  progress?: (p: CrashPointsProgress) => void;
  /** Explore this many points at once, each in a worker thread (default 1:
   * in this thread). Workers need `module`. */
  workers?: number;
  /** With workers: the module each worker imports, exporting the same
   * workload and recover (the names default to 'workload' and 'recover').
   * A function cannot be sent to a thread; a module can be imported there. */
  module?: PoolModule;
}

export interface CrashPointsProgress {
  metadata: MetadataModelName;
  /** The point being explored, of `points`. */
  point: number;
  points: number;
  /** States checked at this point, of `states`. */
  checked: number;
  states: number;
}

export interface CrashPointViolation extends VolumeRecoveryFailure {
  point: CrashPoint;
  metadata: MetadataModelName;
}

export interface CrashPointSummary {
  metadata: MetadataModelName;
  point: CrashPoint;
  /** States checked at it. */
  states: number;
  violations: number;
}

export interface CrashPointsReport {
  ok: boolean;
  at: 'fsync' | 'operation';
  /** The models explored, in order. */
  metadata: MetadataModelName[];
  /** Crash points of the workload (per model). */
  points: number;
  /** fsync, msync and directory-fsync calls the workload made (0: every
   * crash state is the initial one — see warnings). */
  syncs: number;
  /** States checked, all points and models. */
  checked: number;
  summary: CrashPointSummary[];
  violations: CrashPointViolation[];
  warnings: string[];
  /** One paragraph per violation ('' when ok). */
  message: string;
}

/** The signal that unwinds a workload at its crash point. */
class CrashPointStop extends Error {
  constructor() {
    super('udax: the workload was stopped at a crash point (exploreCrashPoints): do not catch this');
    this.name = 'CrashPointStop';
  }
}

const describePoint = (phase: string, call: string, name: string, to?: string) =>
  `${phase} ${call} '${name}'${to === undefined ? '' : ` -> '${to}'`}`;

/** A point's identity across runs. */
const signature = (e: VolumeEvent) => describePoint(e.phase, e.call, e.name, e.to);

function pointOf(e: VolumeEvent, index: number): CrashPoint {
  return { index, phase: e.phase, call: e.call, name: e.name, ...(e.to === undefined ? {} : { to: e.to }), description: signature(e) };
}

/** Run the workload on a fresh volume at volumeDir; observe(event) sees
 * each of its crash-point events. The volume is closed and removed after. */
async function runOnFreshVolume(volumeDir: string, metadata: MetadataModelName, volumeOptions: object, workload: CrashPointWorkload,
  observe: (e: VolumeEvent, volume: Volume) => void): Promise<{ error: unknown; threw: boolean }> {
  rmSync(volumeDir, { recursive: true, force: true });
  const volume = openVolume(volumeDir, { ...volumeOptions, metadata, create: true });
  volume.observe((e) => observe(e, volume));
  try {
    await workload(volume);
    return { error: undefined, threw: false };
  } catch (e) {
    return { error: e, threw: true };
  } finally {
    volume.close();
    rmSync(volumeDir, { recursive: true, force: true });
  }
}

/** @internal What one point's exploration needs besides its job. */
export interface PointContext {
  volumeDir: string;
  statesDir: string;
  volumeOptions: object;
  at: 'fsync' | 'operation';
  workload: CrashPointWorkload;
  recover: CrashPointRecoverFn;
  /** checkVolumeRecovery's options (no progress, checked unused). */
  check: CheckedOptions;
}

/** @internal One crash point to explore: replay to it under a model. */
export interface PointJob {
  metadata: MetadataModelName;
  /** The first run's point signatures. */
  expected: string[];
  index: number;
}

/** @internal */
export interface PointResult {
  point: CrashPoint;
  states: number;
  failures: VolumeRecoveryFailure[];
}

const isPointIn = (at: 'fsync' | 'operation') => (e: VolumeEvent) => at === 'operation' || SYNC_CALLS.includes(e.call);

/** @internal Replay to job's point, check every state there (also run in
 * each worker of the pool, src/crash-points-worker.ts). */
export async function explorePoint(ctx: PointContext, job: PointJob, progress?: (checked: number, total: number) => void): Promise<PointResult> {
  const snap = await snapshotAt(ctx.volumeDir, job.metadata, ctx.volumeOptions, ctx.workload, isPointIn(ctx.at), job.expected, job.index, ctx.statesDir, ctx.check);
  const point = pointOf(snap.event, job.index);
  const o: CheckedOptions = { ...ctx.check, checked: 0, progress };
  try {
    const failures = checkStates(snap.states, (dir, state) => ctx.recover(dir, { point, metadata: job.metadata, state }), o);
    return { point, states: o.checked, failures };
  } finally {
    snap.states.close();
  }
}

/** Run workload on a fresh volume at volumeDir (which must not exist), and
 * at each crash point check recover on the volume's crash states. */
export async function exploreCrashPoints(volumeDir: string, workload: CrashPointWorkload, recover: CrashPointRecoverFn,
  opts?: ExploreCrashPointsOptions): Promise<CrashPointsReport> {
  checkPath('exploreCrashPoints: volumeDir', volumeDir);
  if (typeof workload !== 'function') throw typeError('exploreCrashPoints: workload must be a function');
  if (typeof recover !== 'function') throw typeError('exploreCrashPoints: recover must be a function');
  const o = check.options<ExploreCrashPointsOptions>('exploreCrashPoints options', opts);
  const at = o.at ?? 'fsync';
  if (at !== 'fsync' && at !== 'operation') throw typeError(`at must be 'fsync' or 'operation', got ${String(at)}`);
  const metadataOption = o.metadata ?? 'ext4/xfs';
  const models: MetadataModelName[] = metadataOption === 'both' ? [...METADATA_MODELS] : [metadataOption];
  if (!models.every((m) => METADATA_MODELS.includes(m))) throw rangeError(`metadata must be ${METADATA_MODELS.map((m) => `'${m}'`).join(', ')} or 'both', got ${String(metadataOption)}`);
  const checkOpts = checkOptions({ dir: o.dir ?? `${volumeDir}.states`, k: o.k, includeAll: o.includeAll, limit: o.limit,
    random: o.samples, seed: o.seed, probability: o.probability, stop: o.stop, reduce: o.reduce });
  checkOpts.reduceFirstOfClass = true;
  if (o.progress !== undefined && typeof o.progress !== 'function') throw typeError('progress must be a function');
  const workers = check.integer('workers', o.workers ?? 1, 1, 256);
  const module = workers > 1 ? poolModule(o.module) : undefined;
  const statesDir = checkPath('dir', checkOpts.dir);
  const volumeOptions = check.options<object>('volume options', o.volume);
  const ctx: PointContext = { volumeDir, statesDir, volumeOptions, at, workload, recover, check: checkOpts };
  const taken = [volumeDir, statesDir, ...(module ? poolDirs(ctx, workers).flatMap((d) => [d.volumeDir, d.statesDir]) : [])];
  for (const path of taken) if (existsSync(path)) throw errnoError('EEXIST', 'mkdir', path, 'exploreCrashPoints makes this directory: it must not exist');
  const isPoint = isPointIn(at);

  const report: CrashPointsReport = { ok: true, at, metadata: models, points: 0, syncs: 0, checked: 0, summary: [], violations: [], warnings: [], message: '' };
  const pool = module ? new PointPool(ctx, module, workers) : undefined;
  let unsyncedFiles: string[] = [];
  try {
    for (const metadata of models) {
      // The first run: the points, in order.
      const expected: string[] = [];
      let syncs = 0;
      const unsynced = new UnsyncedWrites();
      const first = await runOnFreshVolume(volumeDir, metadata, volumeOptions, workload, (e) => {
        if (isPoint(e)) expected.push(signature(e));
        if (e.phase === 'before' && SYNC_CALLS.includes(e.call)) syncs++;
        unsynced.see(e);
      });
      if (first.threw) throw first.error;  // the user's bug: as it would without udax
      report.points = expected.length;
      report.syncs = syncs;
      unsyncedFiles = unsynced.files();
      const jobs = expected.map((_, index) => ({ metadata, expected, index }));
      const progressOf = (i: number) => o.progress && ((checked: number, total: number) => o.progress!({ metadata, point: i, points: expected.length, checked, states: total }));
      const results = pool
        ? await pool.run(jobs, progressOf, checkOpts.stop === 'first')
        : await sequentially(jobs, (job) => explorePoint(ctx, job, progressOf(job.index)), checkOpts.stop === 'first');
      for (const r of results) {
        report.checked += r.states;
        report.summary.push({ metadata, point: r.point, states: r.states, violations: r.failures.length });
        for (const f of r.failures) report.violations.push({ ...f, point: r.point, metadata });
      }
      if (report.violations.length > 0 && checkOpts.stop === 'first') break;
    }
  } finally {
    await pool?.close();
  }
  report.ok = report.violations.length === 0;
  if (report.syncs === 0) report.warnings.push('no fsync in the workload: every crash state is the initial one (a runtime whose fdatasync is a no-op makes an engine never sync)');
  else if (unsyncedFiles.length > 0) {
    report.warnings.push(`written and never synced after (no fsync or msync of the file followed a write or resize of it): ${unsyncedFiles.map((n) => `'${n}'`).join(', ')} (a runtime whose fdatasync is a no-op makes an engine that uses it for these files look like this)`);
  }
  report.message = report.violations.map((v) => describe(`the volume ${v.point.description} (crash point ${v.point.index})`, v.metadata, v)).join('\n');
  return report;
}

/** Files of the volume that a workload wrote (write, resize) and never
 * synced after (fsync or msync of the file), still there at its end:
 * followed through renames, forgotten when unlinked or replaced. Sees only
 * calls that returned. */
class UnsyncedWrites {
  #next = 0;
  readonly #byName = new Map<string, number>();
  /** Files written and not synced since their first write. */
  readonly #written = new Set<number>();
  /** Files synced after a write: never reported. */
  readonly #synced = new Set<number>();

  #key(name: string): number {
    let k = this.#byName.get(name);
    if (k === undefined) this.#byName.set(name, (k = this.#next++));
    return k;
  }

  see(e: VolumeEvent): void {
    if (e.phase !== 'after') return;
    if (e.call === 'create') this.#byName.set(e.name, this.#next++);
    else if (e.call === 'unlink') this.#byName.delete(e.name);
    else if (e.call === 'rename' && e.to !== undefined && e.to !== e.name) {
      const k = this.#key(e.name);
      this.#byName.delete(e.name);
      this.#byName.set(e.to, k);
    } else if (e.call === 'write' || e.call === 'resize') {
      const k = this.#key(e.name);
      if (!this.#synced.has(k)) this.#written.add(k);
    } else if (e.call === 'fsync' || e.call === 'msync') {
      const k = this.#key(e.name);
      if (this.#written.delete(k)) this.#synced.add(k);
    }
  }

  /** Their names at the end, sorted. */
  files(): string[] {
    return [...this.#byName].filter(([, k]) => this.#written.has(k)).map(([name]) => name).sort();
  }
}

/** The points in order; with stopAtFirst, up to the first that fails. */
async function sequentially(jobs: PointJob[], run: (job: PointJob) => Promise<PointResult>, stopAtFirst: boolean): Promise<PointResult[]> {
  const out: PointResult[] = [];
  for (const job of jobs) {
    const r = await run(job);
    out.push(r);
    if (stopAtFirst && r.failures.length > 0) break;
  }
  return out;
}

/** Replay the workload to point i and snapshot the volume's crash states there. */
async function snapshotAt(volumeDir: string, metadata: MetadataModelName, volumeOptions: object, workload: CrashPointWorkload,
  isPoint: (e: VolumeEvent) => boolean, expected: string[], i: number, statesDir: string,
  o: { k?: number; includeAll?: boolean; limit?: number }): Promise<{ states: VolumeCrashStates; event: VolumeEvent }> {
  let seen = 0;
  let stopped = false;
  let states: VolumeCrashStates | undefined;
  let event: VolumeEvent | undefined;
  let failure: unknown;
  const diverged = (what: string) => udaxError('ERR_UDAX_NONDETERMINISTIC',
    `the workload made other calls when run again (${what}): exploreCrashPoints replays it from the start for each crash point, so it must make the same calls on the volume every run (no clock, randomness without a seed, or state kept between runs) in`, { path: volumeDir });
  const run = await runOnFreshVolume(volumeDir, metadata, volumeOptions, workload, (e, volume) => {
    if (stopped) throw new CrashPointStop();
    if (!isPoint(e)) return;
    const j = seen++;
    if (signature(e) !== expected[j]) {
      failure = diverged(`crash point ${j} was ${expected[j]}, now ${signature(e)}`);
    } else if (j === i) {
      event = e;
      try {
        states = volume.crashStates({ dir: statesDir, k: o.k, includeAll: o.includeAll, limit: o.limit });
      } catch (err) {
        failure = err;
      }
    } else {
      return;
    }
    stopped = true;
    throw new CrashPointStop();
  });
  if (failure !== undefined) {
    states?.close();
    throw failure;
  }
  if (!stopped) {
    throw run.threw
      ? Object.assign(diverged(`it threw before crash point ${i}, ${expected[i]}, which the first run reached`), { cause: run.error })
      : diverged(`it returned after ${seen} crash points; the first run had ${expected.length}`);
  }
  return { states: states!, event: event! };
}
