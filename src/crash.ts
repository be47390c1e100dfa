// Crash images: what a power failure right now could leave behind.
//
// The media holds what writeback flushed. A unit (cache line, sector, 8-byte
// word: the file's granularity) of a DIRTY entry whose live bytes differ
// from the media may or may not have reached the media on its own (cache
// eviction on pmem, background writeback in the page cache). Units of clean
// entries cannot differ, except after a writeback error that marked an entry
// clean: those bytes are lost, never a candidate.
//
// A crash image = the media + a chosen subset of those candidate units:
//   'none'   (pessimistic: only what was synced)
//   'all'    (every dirty unit made it)
//   'random' (each independently with `probability`, from `seed`: the same
//            seed and dirty state give the same image)
// crashStates() enumerates the subsets of at most k units (and, by default,
// the full set), the way bounded crash-state explorers for persistent memory
// do; checkRecovery() runs a recovery function over them.
import { writeFileSync } from 'node:fs';
import { rangeError, shrankError, typeError, udaxError } from './errors.js';
import { checkPath, statIdentity, type DaxFile } from './file.js';
import { sameFile, type FileIdentity } from './media.js';
import { native } from './native.js';
import { mulberry32 } from './prng.js';
import { binomialSum, combinations } from './subsets.js';
import * as check from './validate.js';

/** A unit of the file: [offset, offset+length). */
export interface Unit {
  offset: number;
  length: number;
}

export interface CrashImageOptions {
  /** Which differing units of dirty entries persisted (default 'none', or
   * 'random' when a seed is given). */
  units?: 'none' | 'all' | 'random';
  /** For 'random': a 32-bit integer (default 1). */
  seed?: number;
  /** For 'random': the chance each unit persisted (default 0.5). */
  probability?: number;
}

export interface CrashImageResult {
  path: string;
  units: 'none' | 'all' | 'random';
  seed: number | undefined;
  /** Every unit whose live bytes differed from the media (candidates). */
  differed: Unit[];
  /** The ones this image took from live memory. */
  persisted: Unit[];
}

/** The media and the candidate units, copied at one moment. */
interface Snapshot {
  base: Uint8Array;
  units: Unit[];
  data: Uint8Array[];
  /** Refuses a path that names the live file or its media. */
  checkPath: (path: unknown) => string;
}

/** Refuse a crash image of a file with no persistence domain, or whose
 * data file or media was truncated underneath (reading it would SIGBUS). */
export function checkCrashable(file: DaxFile): void {
  file.assertOpen('read');
  const p = file.persistence;
  if (p.kind === 'none') {
    throw udaxError('ERR_UDAX_NO_MEDIA', 'crash images need a persistence domain: open the file with media: \'shadow\':', { path: file.path });
  }
  file.refresh();
  const size = file.size;
  const shrank = native.fileStat(file.fileId).size < size ? file.path
    : p.media && p.media.currentSize() < Math.max(size, p.durableSize) ? p.media.path : undefined;
  if (shrank !== undefined) {
    throw udaxError('ERR_UDAX_FILE_SHRANK', `the file or its media was truncated underneath udax (below ${size} bytes):`, { syscall: 'read', path: shrank });
  }
}

/** The candidate units of a file, each with its live and its media bytes. */
export interface DifferingUnits {
  units: Unit[];
  live: Uint8Array[];
  media: Uint8Array[];
}

/** The units of DIRTY entries whose live bytes differ from the media,
 * reading only those entries (a cost in dirty entries, not file size).
 * Sizes are metadata: a crash leaves the size of the last fsync, so units
 * count only below both the live and the durable size (or upTo: a volume's
 * pending size change may keep a larger one). Caller has run
 * checkCrashable and harvested; 'pmem' files have none (what is still in the
 * CPU cache cannot be seen). */
export function differingUnits(file: DaxFile, upTo?: number): DifferingUnits {
  const out: DifferingUnits = { units: [], live: [], media: [] };
  const p = file.persistence;
  if (!p.media) return out;
  const u = p.unitSize;
  const { table, entrySize } = file;
  const live = new Uint8Array(entrySize);
  const media = new Uint8Array(entrySize);
  const limit = Math.min(file.size, upTo ?? p.durableSize);
  if (limit === 0) return out;
  table.forEachMaybeDirty(0, Math.ceil(limit / entrySize) - 1, (i) => {
    if (!table.isDirty(i)) return;
    const start = i * entrySize;
    const length = Math.min(limit, start + entrySize) - start;
    const l = live.subarray(0, length);
    const m = media.subarray(0, length);
    try {
      native.regionRead(file.fallbackRegion, start, l);
    } catch (e) {
      throw shrankError(e, file.path);
    }
    try {
      p.media!.read(start, m);
    } catch (e) {
      throw shrankError(e, p.media!.path);
    }
    const l32 = new Int32Array(l.buffer, 0, length >>> 2);
    const m32 = new Int32Array(m.buffer, 0, length >>> 2);
    const words = u >>> 2;
    for (let off = 0; off < length; off += u) {
      for (let k = off >>> 2, end = k + words; k < end; k++) {
        if (l32[k] !== m32[k]) {
          out.units.push({ offset: start + off, length: u });
          out.live.push(l.slice(off, off + u));
          out.media.push(m.slice(off, off + u));
          break;
        }
      }
    }
  });
  return out;
}

/** Copy the media and the candidate units at one moment (through native
 * code, so a file truncated underneath is an error, not a SIGBUS). */
function snapshot(file: DaxFile): Snapshot {
  checkCrashable(file);
  const p = file.persistence;
  file.harvest();  // async: what the kernel recorded as written is DIRTY too
  const checkPath = imagePathCheck([file.identity, ...(p.media ? [p.media.identity] : [])]);
  // Sizes are metadata: the image has the size of the last fsync, with the
  // media's bytes up to it (a grow since: the old bytes only; a shrink: the
  // old length with the old bytes).
  const durable = p.durableSize;
  // On a real DAX mount the file is the media: no second copy exists, and
  // what is still in the CPU cache cannot be seen. The image is the file.
  if (p.kind === 'pmem') {
    const base = new Uint8Array(durable);
    const shown = Math.min(file.size, durable);
    if (shown > 0) base.set(readWhole(shown, (into) => native.regionRead(file.fallbackRegion, 0, into), file.path));
    return { base, units: [], data: [], checkPath };
  }
  const base = readWhole(durable, (into) => p.media!.read(0, into), p.media!.path);
  const { units, live } = differingUnits(file);
  return { base, units, data: live, checkPath };
}

function readWhole(size: number, read: (into: Uint8Array) => void, path: string): Uint8Array {
  const bytes = new Uint8Array(size);
  try {
    read(bytes);
  } catch (e) {
    throw shrankError(e, path);
  }
  return bytes;
}

/** A check that refuses an image path naming one of these files (the data
 * file and its media), taken when the snapshot is: it works after close. */
function imagePathCheck(live: FileIdentity[]): (path: unknown) => string {
  return (path) => {
    checkPath('crash image path', path);
    const target = statIdentity(path as string);
    if (target && live.some((id) => sameFile(target, id))) {
      throw udaxError('ERR_UDAX_SAME_FILE', 'a crash image would overwrite the live file or its media:', { syscall: 'open', path: path as string });
    }
    return path as string;
  };
}

function build(s: Snapshot, chosen: readonly number[]): Uint8Array {
  const image = s.base.slice();
  for (const j of chosen) image.set(s.data[j], s.units[j].offset);
  return image;
}

function randomChoice(n: number, seed: number, probability: number): number[] {
  const next = mulberry32(seed);
  const chosen: number[] = [];
  for (let j = 0; j < n; j++) if (next() < probability) chosen.push(j);
  return chosen;
}

function parseSeed(seed: unknown): number {
  return check.integer('seed', seed ?? 1, -0x80000000, 0xffffffff);
}

function parseProbability(p: unknown): number {
  if (p === undefined) return 0.5;
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw rangeError(`probability must be in [0, 1], got ${String(p)}`);
  return p;
}

/** Write to path the file as a power failure right now could leave it. */
export function crashImage(file: DaxFile, path: string, opts?: CrashImageOptions): CrashImageResult {
  checkPath('crashImage: path', path);
  const o = check.options<CrashImageOptions>('crashImage options', opts);
  const units = o.units ?? (o.seed !== undefined ? 'random' : 'none');
  if (units !== 'none' && units !== 'all' && units !== 'random') {
    throw rangeError(`units must be 'none', 'all' or 'random', got ${String(units)}`);
  }
  const seed = units === 'random' ? parseSeed(o.seed) : undefined;
  const probability = parseProbability(o.probability);
  const s = snapshot(file);
  const chosen = units === 'none' ? [] : units === 'all' ? s.units.map((_, j) => j) : randomChoice(s.units.length, seed!, probability);
  writeFileSync(s.checkPath(path), build(s, chosen));
  return { path, units, seed, differed: s.units, persisted: chosen.map((j) => s.units[j]) };
}

export interface CrashStatesOptions {
  /** At most this many units persisted at a time (default 1). */
  k?: number;
  /** Also yield the state where every unit persisted (default true). */
  includeAll?: boolean;
  /** Refuse (RangeError) when there would be more states (default 100000). */
  limit?: number;
}

export interface CrashState {
  /** 0-based position in the enumeration. */
  index: number;
  /** The units taken from live memory in this state. */
  persisted: Unit[];
  /** The whole file as this crash would leave it (a fresh copy). */
  image: Uint8Array;
  /** Write the image to a file (to open it with udax, or any tool). */
  writeTo(path: string): void;
}

export interface CrashStates extends Iterable<CrashState> {
  /** The candidate units (live differs from media, entry dirty). */
  differed: Unit[];
  /** How many states iteration yields. */
  count: number;
}

function state(s: Snapshot, index: number, chosen: number[]): CrashState {
  const image = build(s, chosen);
  return {
    index,
    persisted: chosen.map((j) => s.units[j]),
    image,
    writeTo: (path: string) => writeFileSync(s.checkPath(path), image),
  };
}

/** Every crash state of the current dirty set with at most k units persisted
 * (subsets in order of size, then lexicographic), plus the all-persisted
 * state. The media and live bytes are copied when this is called; iterating
 * later does not see newer stores. Meant for small files and dirty sets. */
export function crashStates(file: DaxFile, opts?: CrashStatesOptions): CrashStates {
  const o = check.options<CrashStatesOptions>('crashStates options', opts);
  return enumerate(snapshot(file), o);
}

function enumerate(s: Snapshot, o: Partial<CrashStatesOptions>): CrashStates {
  const k = check.integer('k', o.k ?? 1, 0, 64);
  const includeAll = check.boolean('includeAll', o.includeAll, true);
  const limit = check.integer('limit', o.limit ?? 100000, 1);
  const n = s.units.length;
  const extra = includeAll && n > k ? 1 : 0;
  const count = binomialSum(n, k) + extra;
  if (count > limit) {
    throw rangeError(`crashStates: ${count} states (${n} differing units, k=${k}) exceed limit ${limit}: lower k, raise limit, or sample with checkRecovery({ random })`);
  }
  return {
    differed: s.units,
    count,
    *[Symbol.iterator]() {
      let index = 0;
      for (let size = 0; size <= Math.min(k, n); size++) {
        for (const c of combinations(n, size)) yield state(s, index++, [...c]);
      }
      if (extra) yield state(s, index++, s.units.map((_, j) => j));
    },
  };
}

export interface CheckRecoveryOptions extends CrashStatesOptions {
  /** Also check this many seeded random states (default 0). */
  random?: number;
  /** The first random state's seed (default 1); state j uses seed + j, the
   * same image as file.crashImage(path, { units: 'random', seed: seed + j }). */
  seed?: number;
  probability?: number;
}

export interface RecoveryFailure {
  kind: 'enumerated' | 'random';
  index: number;
  seed: number | undefined;
  persisted: Unit[];
  differed: Unit[];
  error: unknown;
}

export interface RecoveryReport {
  ok: boolean;
  /** States recovery was run on (up to and including a failure). */
  checked: number;
  differed: Unit[];
  failure?: RecoveryFailure;
  /** A one-paragraph description of the failure ('' when ok). */
  message: string;
}

/** A recovery function: return false or throw to reject the image. */
export type RecoverFn = (image: Uint8Array, state: CrashState) => boolean | void;

function describe(units: Unit[]): string {
  if (units.length === 0) return 'none';
  const shown = units.slice(0, 8).map((u) => `[${u.offset}, ${u.offset + u.length})`).join(' ');
  return units.length > 8 ? `${shown} … (${units.length})` : shown;
}

/** Run recover over every enumerated crash state (and `random` seeded ones);
 * stop at the first it rejects. Use from test suites:
 *   const r = checkRecovery(file, recover); expect(r.message).toBe(''); */
export function checkRecovery(file: DaxFile, recover: RecoverFn, opts?: CheckRecoveryOptions): RecoveryReport {
  if (typeof recover !== 'function') throw typeError('checkRecovery: recover must be a function');
  const o = check.options<CheckRecoveryOptions>('checkRecovery options', opts);
  const random = check.integer('random', o.random ?? 0, 0);
  const seed0 = parseSeed(o.seed);
  const probability = parseProbability(o.probability);
  const s = snapshot(file);
  const states = enumerate(s, o);
  let checked = 0;
  const fail = (kind: RecoveryFailure['kind'], st: CrashState, seed: number | undefined, error: unknown): RecoveryReport => {
    const failure: RecoveryFailure = { kind, index: st.index, seed, persisted: st.persisted, differed: states.differed, error };
    const why = error instanceof Error ? error.message : error === false ? 'recover returned false' : String(error);
    const message = `recovery of '${file.path}' rejected ${kind} crash state ${st.index}` +
      (seed === undefined ? '' : ` (seed ${seed})`) + `: ${why}. Persisted units: ${describe(st.persisted)}; ` +
      `units that differed from the media: ${describe(states.differed)}`;
    return { ok: false, checked, differed: states.differed, failure, message };
  };
  const run = (st: CrashState): unknown => {
    checked++;
    try {
      return recover(st.image, st) === false ? false : undefined;
    } catch (e) {
      return e ?? new Error('recover threw');
    }
  };
  for (const st of states) {
    const err = run(st);
    if (err !== undefined) return fail('enumerated', st, undefined, err);
  }
  if (random > 0) {
    for (let j = 0; j < random; j++) {
      const seed = seed0 + j;
      const st = state(s, j, randomChoice(s.units.length, seed, probability));
      const err = run(st);
      if (err !== undefined) return fail('random', st, seed, err);
    }
  }
  return { ok: true, checked, differed: states.differed, message: '' };
}

/** checkRecovery, throwing an Error with the report's message on failure. */
export function assertRecovers(file: DaxFile, recover: RecoverFn, opts?: CheckRecoveryOptions): RecoveryReport {
  const r = checkRecovery(file, recover, opts);
  if (!r.ok) throw Object.assign(new Error(r.message), { report: r });
  return r;
}
