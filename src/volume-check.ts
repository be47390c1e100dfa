// Recovery checking over a volume: run the user's recovery on each crash
// state's directory; stop at the first failure or collect them all; reduce
// each failure to a minimal set of units and operations (delta debugging,
// Zeller & Hildebrandt's ddmin, over the state's persisted units).
import { typeError } from './errors.js';
import * as check from './validate.js';
import type { Volume } from './volume.js';
import { checkStatesPooled, recoveryModule, type RecoveryModule } from './volume-check-pool.js';
import type { SampleOptions, StateChoice, VolumeCrashState, VolumeCrashStates, VolumeCrashStatesOptions, VolumeOperation, VolumeUnit } from './volume-crash.js';

/** A recovery: given a state's directory, return true or nothing to accept
 * it; return false, a string (the violation's class: 'lost-commit',
 * 'corrupt', ...) or throw to reject it. It must not change the directory
 * (copy it with state.copyTo first). */
export type VolumeRecoverFn = (dir: string, state: VolumeCrashState) => boolean | string | void;

export interface CheckVolumeRecoveryOptions extends VolumeCrashStatesOptions {
  /** Also check this many seeded random states (sample(); default 0). */
  random?: number;
  /** The first random state's seed; probability; k bound of random states. */
  seed?: SampleOptions['seed'];
  probability?: SampleOptions['probability'];
  randomK?: SampleOptions['k'];
  /** 'first' (default): stop at the first failure; 'all': check every state. */
  stop?: 'first' | 'all';
  /** Reduce each failure to a minimal set of units (default true). */
  reduce?: boolean;
  /** Called after each state with (checked, total); with workers, after
   * each batch a worker checked (about every 20 ms per worker). */
  progress?: (checked: number, total: number) => void;
}

export interface CheckVolumeRecoveryPoolOptions extends CheckVolumeRecoveryOptions {
  /** Check the states on this many worker threads (the call then returns a
   * promise; the snapshot is still taken in the call). Without it, the
   * default, the states are checked in the calling thread. Workers are kept
   * (unreferenced) for the next call with the same module. */
  workers: number;
  /** The module each worker imports the recovery from (it exports the
   * same function as recover, which reduces failures in the calling thread). */
  module: RecoveryModule;
}

export interface VolumeRecoveryFailure {
  kind: VolumeCrashState['kind'];
  index: number;
  seed: number | undefined;
  /** What the recovery said: the string it returned, 'rejected' for false,
   * or for a throw the error's code (a string code) or its name. */
  class: string;
  /** The pending operations the state kept, and the data units it took. */
  operations: VolumeOperation[];
  units: VolumeUnit[];
  error: unknown;
  /** A smallest set found that still fails with the same class (removing
   * any one of its units makes it pass or fail otherwise); the model
   * completes operations it needs. */
  minimal?: { operations: VolumeOperation[]; units: VolumeUnit[] };
}

export interface VolumeRecoveryReport {
  ok: boolean;
  /** The metadata model the states followed. */
  metadata: string;
  checked: number;
  failures: VolumeRecoveryFailure[];
  /** One paragraph per failure ('' when ok). */
  message: string;
}

/** Run recover over every enumerated crash state of the volume now (and
 * `random` sampled ones). */
export function checkVolumeRecovery(volume: Volume, recover: VolumeRecoverFn, opts: CheckVolumeRecoveryPoolOptions): Promise<VolumeRecoveryReport>;
export function checkVolumeRecovery(volume: Volume, recover: VolumeRecoverFn, opts: CheckVolumeRecoveryOptions): VolumeRecoveryReport;
export function checkVolumeRecovery(volume: Volume, recover: VolumeRecoverFn, opts: CheckVolumeRecoveryOptions | CheckVolumeRecoveryPoolOptions):
  VolumeRecoveryReport | Promise<VolumeRecoveryReport> {
  if (typeof recover !== 'function') throw typeError('checkVolumeRecovery: recover must be a function');
  const o = checkOptions(opts);
  const pooled = opts !== null && typeof opts === 'object' && 'workers' in opts;
  const workers = pooled ? check.integer('workers', (opts as CheckVolumeRecoveryPoolOptions).workers, 1, 256) : 1;
  const module = pooled ? recoveryModule((opts as CheckVolumeRecoveryPoolOptions).module) : undefined;
  const states = volume.crashStates({ dir: o.dir as string, k: o.k, includeAll: o.includeAll, limit: o.limit });
  const report = (failures: VolumeRecoveryFailure[]): VolumeRecoveryReport =>
    ({ ok: failures.length === 0, metadata: states.metadata, checked: o.checked, failures, message: failures.map((f) => describe(`volume '${volume.dir}'`, states.metadata, f)).join('\n') });
  if (!module) {
    try {
      return report(checkStates(states, recover, o));
    } finally {
      states.close();
    }
  }
  return (async () => {
    try {
      const { failures, choices } = await checkStatesPooled(states, o, workers, module);
      reduceFailures(states, recover, o, failures, choices);
      return report(failures);
    } finally {
      states.close();
    }
  })();
}

/** @internal checkVolumeRecovery's options, validated; `checked` counts. */
export interface CheckedOptions extends CheckVolumeRecoveryOptions {
  random: number;
  stop: 'first' | 'all';
  reduce: boolean;
  checked: number;
  /** Reduce only the first failure of each class (default: every one). */
  reduceFirstOfClass?: boolean;
}

/** @internal */
export function checkOptions(opts: CheckVolumeRecoveryOptions): CheckedOptions {
  const o = check.options<CheckVolumeRecoveryOptions>('checkVolumeRecovery options', opts);
  const random = check.integer('random', o.random ?? 0, 0);
  const stop = o.stop ?? 'first';
  if (stop !== 'first' && stop !== 'all') throw typeError(`stop must be 'first' or 'all', got ${String(stop)}`);
  const reduce = check.boolean('reduce', o.reduce, true);
  if (o.progress !== undefined && typeof o.progress !== 'function') throw typeError('progress must be a function');
  return { ...o, random, stop, reduce, checked: 0 } as CheckedOptions;
}

/** @internal Run recover on every state of a snapshot (enumerated, then
 * o.random sampled), classify and reduce the failures; o.checked counts. */
export function checkStates(states: VolumeCrashStates, recover: VolumeRecoverFn, o: CheckedOptions): VolumeRecoveryFailure[] {
  const total = states.count + o.random;
  const failures: VolumeRecoveryFailure[] = [];
  const choices: StateChoice[] = [];  // what rebuilds each failure's state
  let checked = 0;
  const visit = (st: VolumeCrashState): boolean => {
    checked++;
    const verdict = runRecover(recover, st);
    if (verdict !== undefined) {
      failures.push({ kind: st.kind, index: st.index, seed: st.seed, class: verdict.class, operations: st.operations, units: st.units, error: verdict.error });
      choices.push(choiceOf(states, st));
    }
    o.progress?.(checked, total);
    return verdict !== undefined && o.stop === 'first';
  };
  let stopped = false;
  for (const st of states) if ((stopped = visit(st))) break;
  if (!stopped && o.random > 0) {
    for (const st of states.sample(o.random, { seed: o.seed, probability: o.probability, k: o.randomK })) if (visit(st)) break;
  }
  o.checked += checked;
  reduceFailures(states, recover, o, failures, choices);
  return failures;
}

/** Set each failure's minimal set (choices[i] rebuilds failure i's state). */
function reduceFailures(states: VolumeCrashStates, recover: VolumeRecoverFn, o: CheckedOptions, failures: VolumeRecoveryFailure[], choices: StateChoice[]): void {
  if (!o.reduce) return;
  const reduced = new Set<string>();
  failures.forEach((f, i) => {
    if (o.reduceFirstOfClass && reduced.has(f.class)) return;
    reduced.add(f.class);
    f.minimal = minimise(states, recover, choices[i], f.class);
  });
}

/** The class of a throw: its string code, else its name. */
function thrownClass(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  return e instanceof Error ? e.name : 'thrown';
}

/** @internal undefined: recover accepted the state; else why not. */
export function runRecover(recover: VolumeRecoverFn, st: VolumeCrashState): { class: string; error: unknown } | undefined {
  try {
    const r = recover(st.path, st);
    if (r === false) return { class: 'rejected', error: false };
    if (typeof r === 'string') return { class: r === '' ? 'rejected' : r, error: r };
    return undefined;
  } catch (e) {
    return { class: thrownClass(e), error: e ?? new Error('recover threw') };
  }
}

/** @internal The choice that rebuilds st: its units and operations as indices. */
export function choiceOf(states: VolumeCrashStates, st: VolumeCrashState): StateChoice {
  return { operations: st.operations.map((op) => op.index), units: st.units.map((u) => states.units.indexOf(u)) };
}

/** ddmin over the state's elements: each data unit, and each operation (the
 * model adds back what a kept operation needs: for ext4/xfs a prefix). */
function minimise(states: VolumeCrashStates, recover: VolumeRecoverFn, choice: StateChoice, cls: string): VolumeRecoveryFailure['minimal'] {
  type Element = { op: number } | { unit: number };
  const elements: Element[] = [...choice.operations.map((op) => ({ op })), ...choice.units.map((unit) => ({ unit }))];
  const fails = (subset: Element[]) => states.with({
    operations: subset.flatMap((e) => ('op' in e ? [e.op] : [])),
    units: subset.flatMap((e) => ('unit' in e ? [e.unit] : [])),
  }, (st) => runRecover(recover, st)?.class === cls);
  const minimal = ddmin(elements, fails);
  return states.with({
    operations: minimal.flatMap((e) => ('op' in e ? [e.op] : [])),
    units: minimal.flatMap((e) => ('unit' in e ? [e.unit] : [])),
  }, (st) => ({ operations: st.operations, units: st.units }));
}

/** Zeller's ddmin: a 1-minimal failing subset of items (fails(items) holds). */
export function ddmin<T>(items: T[], fails: (subset: T[]) => boolean): T[] {
  if (fails([])) return [];
  let c = items;
  let n = 2;
  while (c.length >= 2) {
    const chunk = Math.ceil(c.length / n);
    let reduced = false;
    for (let i = 0; i * chunk < c.length && !reduced; i++) {
      const part = c.slice(i * chunk, (i + 1) * chunk);
      const rest = [...c.slice(0, i * chunk), ...c.slice((i + 1) * chunk)];
      if (fails(part)) {
        c = part;
        n = 2;
        reduced = true;
      } else if (n > 2 && fails(rest)) {
        c = rest;
        n = Math.max(n - 1, 2);
        reduced = true;
      }
    }
    if (!reduced) {
      if (n >= c.length) break;
      n = Math.min(c.length, 2 * n);
    }
  }
  return c;
}

const list = (xs: string[]) => (xs.length === 0 ? 'none' : xs.length > 8 ? `${xs.slice(0, 8).join(', ')} … (${xs.length})` : xs.join(', '));
const units = (us: VolumeUnit[]) => list(us.map((u) => `${u.file}[${u.offset}, ${u.offset + u.length})`));
const ops = (os: VolumeOperation[]) => list(os.map((op) => op.description));

/** @internal One paragraph for a failure; `what` names the volume or point. */
export function describe(what: string, metadata: string, f: VolumeRecoveryFailure): string {
  const why = f.error instanceof Error ? f.error.message : f.error === false ? 'recover returned false' : `recover returned '${String(f.error)}'`;
  return `recovery of ${what} rejected ${f.kind} crash state ${f.index}${f.seed === undefined ? '' : ` (seed ${f.seed})`}` +
    ` under the ${metadata} metadata model: ${why} (class '${f.class}'). Operations kept: ${ops(f.operations)}; units persisted: ${units(f.units)}` +
    (f.minimal ? `; minimal: operations ${ops(f.minimal.operations)}, units ${units(f.minimal.units)}` : '');
}

/** @internal Short forms for tables. */
export const formatUnits = units;
export const formatOperations = ops;
