// Crash states of a whole volume at one instant (docs/volumes.md).
//
// A state = the durable namespace + a set of pending namespace operations the
// metadata model lets a crash keep + a set of candidate data units (per
// file, as src/crash.ts: units of DIRTY entries whose live bytes differ from
// the media) that reached the media on their own.
//
// Cost: the snapshot copies each file's media once into a base image (the
// durable namespace, as plain files) and a stash beside it (files no durable
// name holds). Each state is then built in place and undone: pwrite of its
// units, renames between stash and image for its operations. A state costs
// what it changes, not the size of the files.
import { closeSync, copyFileSync, cpSync, ftruncateSync, mkdirSync, openSync, readSync, renameSync, rmdirSync, rmSync, truncateSync, writeSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { checkCrashable, differingUnits, type Unit } from './crash.js';
import { errnoError, rangeError, udaxError } from './errors.js';
import { checkPath, type DaxFile } from './file.js';
import { applyOp, describeOp, metadataModel, NamespaceOverlay, type MetadataModel, type MetadataModelName, type MetaOp, type Namespace, type NamespaceNode } from './metadata.js';
import { native } from './native.js';
import { mulberry32 } from './prng.js';
import { freezeStores } from './tracker.js';
import { binomialSum, combinations } from './subsets.js';
import * as check from './validate.js';
import type { Incarnation, Volume } from './volume.js';

/** A candidate data unit of one file. */
export interface VolumeUnit extends Unit {
  /** The file's name (now, or the last it had). */
  file: string;
  /** Its incarnation (a re-created name is another one). */
  incarnation: number;
}

/** A pending namespace operation, as a state reports it. */
export interface VolumeOperation {
  /** 0-based position among the pending operations. */
  index: number;
  kind: MetaOp['kind'];
  path: string;
  to?: string;
  /** A size change's new size. */
  size?: number;
  /** "rename 'a' -> 'b'", "size 'a' -> 8192". */
  description: string;
}

/** Which units a state takes: pending operations (indices into `pending`)
 * that persisted at least, and data units (indices into `units`). */
export interface StateChoice {
  operations: readonly number[];
  units: readonly number[];
}

export interface VolumeCrashState {
  /** 0-based position in the enumeration, or the sample's number. */
  index: number;
  kind: 'enumerated' | 'random';
  /** For random states: the seed that draws it. */
  seed: number | undefined;
  /** The directory as this crash leaves it; valid until the next state is
   * built or the states are closed. Treat it as read-only (copyTo first to
   * change it). */
  path: string;
  /** The pending operations this crash kept (in issue order). */
  operations: VolumeOperation[];
  /** The data units that persisted. */
  units: VolumeUnit[];
  /** What building it wrote: bytes pwritten, renames/mkdirs/rmdirs. */
  cost: { bytes: number; namespaceOps: number };
  /** Copy the state's directory (to keep it, or to run a recovery that writes). */
  copyTo(path: string): void;
}

export interface VolumeCrashStatesOptions {
  /** Where each state's directory is built (must not exist; removed by close). */
  dir: string;
  /** At most this many units (data units and operations) per state (default 1). */
  k?: number;
  /** Also enumerate the state where every unit persisted (default true). */
  includeAll?: boolean;
  /** Refuse (RangeError) an enumeration of more states (default 100000). */
  limit?: number;
}

export interface SampleOptions {
  /** State j uses seed + j (default 1). */
  seed?: number;
  /** The chance each unit persisted (default 0.5). */
  probability?: number;
  /** At most this many units per state (default: no bound). */
  k?: number;
}

/** One file as the snapshot saw it. */
interface FileSnapshot {
  /** The incarnation's id. */
  id: number;
  /** Global unit indices of its units. */
  first: number;
  count: number;
  /** Where its bytes are in the image when the image is the base. */
  basePath: string;
  fd: number | undefined;
  /** Its size in the base image: the durable size. */
  durable: number;
  /** The media's bytes [tailFrom, ...) that pending size changes may keep
   * or cut (empty when none is pending). */
  tailFrom: number;
  tail: Uint8Array;
  /** Its pending shrinks (index into the pending list): what each cut and,
   * if the file grew back into it, the bytes there before. */
  cuts: { index: number; from: number; to: number; bytes: Uint8Array | undefined }[];
}

/** @internal A snapshot's parts, structured-cloneable: what a worker of the
 * state pool (src/volume-check-pool.ts) needs to build states on its own
 * copy of the base image and stash. */
export interface StatesWire {
  metadata: MetadataModelName;
  ops: MetaOp[];
  durable: [string, NamespaceNode][];
  /** base: the file's path in the image, or in the stash when stashed;
   * durable, tailFrom, tail, cuts: as FileSnapshot's (its size in the base,
   * the media bytes pending size changes may keep or cut, the bytes a shrink
   * not kept shows). */
  files: { id: number; first: number; count: number; base: string; stashed: boolean; durable: number; tailFrom: number; tail: Uint8Array; cuts: FileSnapshot['cuts'] }[];
  units: VolumeUnit[];
  /** Each unit's live bytes then its media bytes, unit after unit: one
   * shared buffer every worker reads, not a copy per worker. */
  bytes: SharedArrayBuffer;
  k: number;
  includeAll: boolean;
  count: number;
}

/** @internal A state to build: its place in the order and its choice. */
export interface PlannedState {
  index: number;
  kind: VolumeCrashState['kind'];
  seed: number | undefined;
  choice: StateChoice;
}

/** A file's size in the base image: the size its last fsync (or journal
 * commit) made durable, kept by the file's entry table (src/file.ts resize).
 * A state that keeps pending size operations sets the last kept one's. */
function durableSize(dax: DaxFile): number {
  return dax.durableSize;
}

/** Lock every entry of every open file (ascending table id: one order for
 * every taker; the harvest lock is innermost, taken by the harvest after
 * them), freeze its async mappings, harvest, and write-protect the DIRTY
 * entries, so stores from other threads fault and wait (sigsegv, sigbus)
 * while fn reads; async mappings have no fault of their own, so they are
 * frozen read-only whole and their stores wait in the fault handler
 * (native/freeze.cc) until fn returns. Writeback and file.write wait for the locks: the media cannot
 * change under fn. */
function withVolumeFrozen<T>(files: DaxFile[], fn: () => T): T {
  const sorted = [...files].sort((a, b) => a.table.id - b.table.id);
  // A loop, not a stack frame per file: a volume holds thousands of files.
  // What is taken is undone in reverse, whatever throws.
  const undo: (() => void)[] = [];
  try {
    for (const f of sorted) {
      const t = f.table;
      const last = t.count - 1;
      let locked = 0;
      undo.push(() => {
        for (let i = 0; i < locked; i++) t.unlock(i);
      });
      for (; locked <= last; locked++) t.lock(locked);
      // Freeze, then harvest: a store between a harvest and the freeze would
      // be in the file but in no unit (the state would show the media there,
      // beside a later store to another file: torn).
      undo.push(freezeStores(f.faultTracker, t.id));
      f.harvest();
      writeProtectDirty(f);
    }
    return fn();
  } finally {
    let failure: unknown;
    for (let k = undo.length - 1; k >= 0; k--) {
      try {
        undo[k]();
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure !== undefined) throw failure;  // eslint-disable-line no-unsafe-finally
  }
}

/** mkclean the DIRTY entries of f without cleaning them (they stay DIRTY: the
 * next store faults and finds them so). Caller holds their locks. */
function writeProtectDirty(f: DaxFile): void {
  const t = f.table;
  let start = -1;
  let prev = -2;
  const flushRun = () => {
    if (start >= 0) native.mkcleanFlush(t.id, start, prev, f.fallbackRegion);
  };
  t.forEachMaybeDirty(0, t.count - 1, (i) => {
    if (!t.isDirty(i)) return;
    if (i !== prev + 1) {
      flushRun();
      start = i;
    }
    prev = i;
  });
  flushRun();
}

function opView(op: MetaOp, index: number): VolumeOperation {
  return {
    index, kind: op.kind, path: op.path, ...(op.kind === 'rename' ? { to: op.to } : {}), ...(op.kind === 'size' ? { size: op.size } : {}),
    description: describeOp(op),
  };
}

export class VolumeCrashStates implements Iterable<VolumeCrashState> {
  /** The metadata model the states follow. */
  readonly metadata: string;
  /** The namespace operations not durable at the snapshot. */
  readonly pending: VolumeOperation[];
  /** Every candidate data unit. */
  readonly units: VolumeUnit[];
  /** How many states iteration yields. */
  readonly count: number;
  readonly dir: string;
  readonly #model: MetadataModel;
  readonly #ops: readonly MetaOp[];
  readonly #durable: Namespace;
  readonly #files: FileSnapshot[] = [];
  readonly #unitFile: FileSnapshot[] = [];
  readonly #live: Uint8Array[] = [];
  readonly #media: Uint8Array[] = [];
  readonly #stash: string;
  readonly #k: number;
  readonly #includeAll: boolean;
  readonly #durableFiles = new Set<number>();
  #closed = false;
  #building = false;
  /** The snapshot's incarnations and live directory (not for a wire copy). */
  #incs: Incarnation[] = [];
  #liveDir = '';

  /** @internal Use volume.crashStates(). From a StatesWire: the states of
   * that snapshot, built in opts.dir, which holds a copy of its base image
   * (and <dir>.stash of its stash). */
  constructor(volume: Volume | StatesWire, opts: VolumeCrashStatesOptions) {
    if (!('view' in volume)) {
      const w = volume;
      this.dir = opts.dir;
      this.#stash = `${this.dir}.stash`;
      this.#k = w.k;
      this.#includeAll = w.includeAll;
      this.#model = metadataModel(w.metadata);
      this.metadata = w.metadata;
      this.#ops = w.ops;
      this.#durable = new Map(w.durable);
      for (const node of this.#durable.values()) if (node.kind === 'file') this.#durableFiles.add(node.file);
      this.pending = this.#ops.map(opView);
      this.units = w.units;
      let at = 0;
      for (const u of w.units) {
        this.#live.push(new Uint8Array(w.bytes, at, u.length));
        this.#media.push(new Uint8Array(w.bytes, at + u.length, u.length));
        at += 2 * u.length;
      }
      for (const f of w.files) {
        const fs: FileSnapshot = {
          id: f.id, first: f.first, count: f.count, basePath: join(f.stashed ? this.#stash : this.dir, f.base), fd: undefined,
          durable: f.durable, tailFrom: f.tailFrom, tail: f.tail, cuts: f.cuts,
        };
        this.#files.push(fs);
        for (let j = 0; j < f.count; j++) this.#unitFile.push(fs);
      }
      this.count = w.count;
      return;
    }
    const o = check.options<VolumeCrashStatesOptions>('crashStates options', opts);
    this.dir = checkPath('crashStates: dir', o.dir);
    this.#k = check.integer('k', o.k ?? 1, 0, 64);
    this.#includeAll = check.boolean('includeAll', o.includeAll, true);
    const limit = check.integer('limit', o.limit ?? 100000, 1);
    const view = volume.view();
    this.#model = view.model;
    const [mine, live] = [resolve(this.dir), resolve(view.dir)];
    if (mine === live || mine.startsWith(`${live}/`) || live.startsWith(`${mine}/`)) {
      throw udaxError('ERR_UDAX_SAME_FILE', 'crash states would be built inside the live volume:', { syscall: 'mkdir', path: this.dir });
    }
    this.#stash = `${this.dir}.stash`;
    this.#ops = [...view.pending];
    this.#durable = new Map(view.durable);
    for (const node of this.#durable.values()) if (node.kind === 'file') this.#durableFiles.add(node.file);
    this.metadata = view.model.name;
    this.pending = this.#ops.map(opView);
    const incs = [...view.incarnations.values()];
    for (const inc of incs) if (inc.dax) checkCrashable(inc.dax);
    this.#incs = incs;
    this.#liveDir = view.dir;
    this.units = [];
    // Under the locks: the units, the count (it may refuse, before any
    // copy), then the base image.
    let count = 0;
    mkdirSync(this.dir);
    try {
      mkdirSync(this.#stash);
      withVolumeFrozen(incs.flatMap((i) => (i.dax ? [i.dax] : [])), () => {
        this.#readUnits(incs);
        count = this.#countStates();
        if (count > limit) {
          throw rangeError(`crashStates: ${count} states (${this.units.length} data units, ${this.#ops.length} pending operations, k=${this.#k}) exceed limit ${limit}: lower k, raise limit, or sample()`);
        }
        this.#copyBase();
      });
    } catch (e) {
      this.#remove();
      throw e;
    }
    this.count = count;
  }

  /** The candidate units of every file (caller holds the volume frozen). */
  #readUnits(incs: Incarnation[]): void {
    const where = new Map<number, string>();
    for (const [path, node] of this.#durable) if (node.kind === 'file') where.set(node.file, join(this.dir, path));
    for (const inc of incs) {
      const basePath = where.get(inc.id) ?? join(this.#stash, String(inc.id));
      const durable = inc.dax ? durableSize(inc.dax) : 0;
      const fs: FileSnapshot = { id: inc.id, first: this.units.length, count: 0, basePath, fd: undefined, durable, tailFrom: durable, tail: new Uint8Array(0), cuts: [] };
      if (inc.dax) {
        this.#ops.forEach((op, index) => {
          if (op.kind === 'size' && op.file === inc.id && op.cut) fs.cuts.push({ index, from: op.cut.from, to: op.cut.to, bytes: op.cut.bytes });
        });
        const sizes = this.#ops.flatMap((op) => (op.kind === 'size' && op.file === inc.id ? [op.size] : []));
        const [lo, hi] = [Math.min(durable, ...sizes), Math.max(durable, ...sizes)];
        if (hi > lo && inc.dax.persistence.media) {
          // The media holds what a kept grow shows (file.write's bytes, zeros
          // elsewhere; it grows with the file) and a kept shrink cuts (it is
          // cut only at fsync).
          fs.tailFrom = lo;
          fs.tail = new Uint8Array(hi - lo);
          inc.dax.persistence.media.read(lo, fs.tail);
        }
        const d = differingUnits(inc.dax, hi);
        for (let j = 0; j < d.units.length; j++) {
          this.units.push({ ...d.units[j], file: inc.name, incarnation: inc.id });
          this.#unitFile.push(fs);
          this.#live.push(d.live[j]);
          this.#media.push(d.media[j]);
        }
        fs.count = d.units.length;
      }
      this.#files.push(fs);
    }
  }

  /** The base image: the durable namespace with each file's media, and the
   * stash (caller holds the volume frozen: the media cannot change). */
  #copyBase(): void {
    for (const [path, node] of this.#durable) if (node.kind === 'directory') mkdirSync(join(this.dir, path), { recursive: true });
    this.#files.forEach(({ basePath }, i) => {
      const inc = this.#incs[i];
      if (inc.dax) copyMedia(inc.dax, basePath);
      else copyFileSync(inc.live ? join(this.#liveDir, inc.name) : inc.keptDataPath, basePath);
    });
  }

  /** Which files exist after the kept operations. */
  #namespaceAfter(kept: readonly number[]): { has(file: number): boolean } {
    const ns = new NamespaceOverlay(this.#durable);
    for (const i of kept) applyOp(ns, this.#ops[i]);
    return { has: (file) => ns.hasFile(file, this.#durableFiles) };
  }

  /** Each file's size after kept, where a kept size operation sets it. */
  #sizesAfter(kept: readonly number[]): Map<number, number> {
    const sizes = new Map<number, number>();
    for (const i of kept) {
      const op = this.#ops[i];
      if (op.kind === 'size') sizes.set(op.file, op.size);
    }
    return sizes;
  }

  /** The units of files that exist after kept, inside the file's size then
   * and outside what a shrink it does not keep cut (a unit there is a store
   * into a block the file got back later: not the block this state shows). */
  #presentUnits(kept: readonly number[]): number[] {
    const present = this.#namespaceAfter(kept);
    const sizes = this.#sizesAfter(kept);
    const keptSet = new Set(kept);
    const out: number[] = [];
    for (const f of this.#files) {
      if (!present.has(f.id)) continue;
      const size = sizes.get(f.id) ?? f.durable;
      const lost = f.cuts.filter((c) => !keptSet.has(c.index));
      for (let u = f.first; u < f.first + f.count; u++) {
        const { offset, length } = this.units[u];
        if (offset + length <= size && !lost.some((c) => offset < c.to && offset + length > c.from)) out.push(u);
      }
    }
    return out;
  }

  #choices() {
    return this.#model.choices(this.#ops, this.#k);
  }

  #allChoice(): StateChoice {
    return { operations: this.#ops.map((_, i) => i), units: this.#presentUnits(this.#ops.map((_, i) => i)) };
  }

  /** Whether the all-persisted state is one enumeration does not yield already. */
  #allIsExtra(): boolean {
    if (!this.#includeAll) return false;
    const all = this.#allChoice();
    const metaCost = this.#choices().find((c) => c.kept.length === all.operations.length)?.cost;
    return metaCost === undefined || metaCost + all.units.length > this.#k;
  }

  #countStates(): number {
    let n = 0;
    for (const c of this.#choices()) n += binomialSum(this.#presentUnits(c.kept).length, this.#k - c.cost);
    return n + (this.#allIsExtra() ? 1 : 0);
  }

  /** Every state of at most k units (each once: per kept set of operations,
   * the subsets of the units of files that exist then), then the
   * all-persisted state. The directory is rebuilt for each. */
  *[Symbol.iterator](): Iterator<VolumeCrashState> {
    for (const p of this.planned()) yield* this.#visit(p.index, p.kind, p.seed, p.choice);
  }

  /** @internal The enumeration's states in order, not built. */
  *planned(): Generator<PlannedState> {
    let index = 0;
    for (const c of this.#choices()) {
      const present = this.#presentUnits(c.kept);
      for (let size = 0; size <= Math.min(this.#k - c.cost, present.length); size++) {
        for (const s of combinations(present.length, size)) {
          yield { index: index++, kind: 'enumerated', seed: undefined, choice: { operations: c.kept, units: s.map((j) => present[j]) } };
        }
      }
    }
    if (this.#allIsExtra()) yield { index: index++, kind: 'enumerated', seed: undefined, choice: this.#allChoice() };
  }

  /** @internal The n sampled states in order, not built. */
  *plannedSample(n: number, opts?: SampleOptions): Generator<PlannedState> {
    check.integer('n', n, 0);
    const o = check.options<SampleOptions>('sample options', opts);
    const seed0 = check.integer('seed', o.seed ?? 1, -0x80000000, 0xffffffff);
    const probability = o.probability ?? 0.5;
    if (typeof probability !== 'number' || !(probability >= 0 && probability <= 1)) throw rangeError(`probability must be in [0, 1], got ${String(probability)}`);
    const k = o.k === undefined ? Infinity : check.integer('k', o.k, 0, 64);
    for (let j = 0; j < n; j++) yield { index: j, kind: 'random', seed: seed0 + j, choice: this.#draw(seed0 + j, probability, k) };
  }

  /** @internal Build a planned state, run fn on it, undo it. */
  build<T>(p: PlannedState, fn: (state: VolumeCrashState) => T): T {
    let result: T | undefined;
    for (const st of this.#visit(p.index, p.kind, p.seed, p.choice)) result = fn(st);
    return result as T;
  }

  /** @internal The snapshot's parts (base paths relative to dir). */
  toWire(): StatesWire {
    return {
      metadata: this.metadata as MetadataModelName, ops: [...this.#ops], durable: [...this.#durable], k: this.#k, includeAll: this.#includeAll, count: this.count,
      files: this.#files.map((f) => {
        const stashed = f.basePath.startsWith(`${this.#stash}/`);
        return {
          id: f.id, first: f.first, count: f.count, stashed, base: f.basePath.slice((stashed ? this.#stash : this.dir).length + 1),
          durable: f.durable, tailFrom: f.tailFrom, tail: f.tail, cuts: f.cuts,
        };
      }),
      units: this.units, bytes: this.#unitBytes(),
    };
  }

  /** The units' live and media bytes in one shared buffer (StatesWire.bytes). */
  #unitBytes(): SharedArrayBuffer {
    const bytes = new SharedArrayBuffer(this.units.reduce((n, u) => n + 2 * u.length, 0));
    let at = 0;
    this.units.forEach((u, i) => {
      new Uint8Array(bytes, at, u.length).set(this.#live[i]);
      new Uint8Array(bytes, at + u.length, u.length).set(this.#media[i]);
      at += 2 * u.length;
    });
    return bytes;
  }

  /** n seeded random states: state j from seed + j (the same snapshot and
   * seed give the same state). With k, at most k units each. */
  *sample(n: number, opts?: SampleOptions): Generator<VolumeCrashState> {
    for (const p of this.plannedSample(n, opts)) yield* this.#visit(p.index, p.kind, p.seed, p.choice);
  }

  #draw(seed: number, probability: number, k: number): StateChoice {
    const random = mulberry32(seed);
    const operations = this.#model.sample(this.#ops, random, probability, k);
    const cost = operations.length === 0 ? 0 : this.#model.name === 'ext4/xfs' ? 1 : operations.length;
    const present = this.#presentUnits(operations);
    const units: number[] = [];
    for (const u of present) if (random() < probability) units.push(u);
    // Over the bound: keep a random k - cost of them (partial Fisher-Yates).
    const room = Math.max(0, k - cost);
    for (let i = 0; i < Math.min(room, units.length); i++) {
      const r = i + Math.floor(random() * (units.length - i));
      [units[i], units[r]] = [units[r], units[i]];
    }
    return { operations, units: units.slice(0, Math.min(room, units.length)).sort((a, b) => a - b) };
  }

  /** Build the state of a choice (the model completes its operations; units
   * of files absent in it are ignored), run fn on it, undo it. */
  with<T>(choice: StateChoice, fn: (state: VolumeCrashState) => T): T {
    let result: T | undefined;
    for (const st of this.#visit(0, 'enumerated', undefined, choice)) result = fn(st);
    return result as T;
  }

  *#visit(index: number, kind: VolumeCrashState['kind'], seed: number | undefined, choice: StateChoice): Generator<VolumeCrashState> {
    if (this.#closed) throw errnoError('EBADF', 'open', this.dir, 'these crash states were closed');
    if (this.#building) throw rangeError('a crash state is already built: finish with it before building another');
    this.#building = true;
    const kept = this.#model.kept(this.#ops, choice.operations);
    const inSize = new Set(this.#presentUnits(kept));
    const units = choice.units.filter((u) => inSize.has(u));
    const sizes = this.#sizesAfter(kept);
    const resized = this.#files.filter((f) => sizes.has(f.id) && sizes.get(f.id) !== f.durable);
    const keptSet = new Set(kept);
    // Shrinks not kept whose cut the file grew back into: latest first, so
    // where two overlap the earlier one's bytes (older) are what stays.
    const restores = this.#files.flatMap((f) => f.cuts.filter((c) => c.bytes && !keptSet.has(c.index)).map((c) => ({ f, c })))
      .filter(({ f, c }) => c.from < (sizes.get(f.id) ?? f.durable))
      .sort((x, y) => y.c.index - x.c.index);
    const undo: (() => void)[] = [];
    const cost = { bytes: 0, namespaceOps: 0 };
    try {
      // Opened at the base location, before anything moves.
      for (const u of units) this.#fd(this.#unitFile[u]);
      for (const f of resized) this.#fd(f);
      for (const { f } of restores) this.#fd(f);
      const cut = this.#cutUnits(kept, new Set(units));
      for (const u of cut) this.#fd(this.#unitFile[u]);
      this.#applyOperations(kept, undo, cost);
      for (const f of resized) this.#resize(f, sizes.get(f.id)!, undo, cost);
      for (const { f, c } of restores) this.#restoreCut(f, c, sizes.get(f.id) ?? f.durable, undo, cost);
      for (const u of cut) this.#clearCut(u, undo, cost);
      for (const u of units) {
        const fd = this.#unitFile[u].fd!;
        const unit = this.units[u];
        writeSync(fd, this.#live[u], 0, unit.length, unit.offset);
        cost.bytes += unit.length;
        undo.push(() => writeSync(fd, this.#media[u], 0, unit.length, unit.offset));
      }
      yield {
        index, kind, seed, path: this.dir, cost,
        operations: kept.map((i) => this.pending[i]),
        units: units.map((u) => this.units[u]),
        copyTo: (path: string) => cpSync(this.dir, checkPath('copyTo: path', path), { recursive: true, errorOnExist: true, force: false }),
      };
    } finally {
      for (let i = undo.length - 1; i >= 0; i--) undo[i]();
      this.#building = false;
    }
  }

  /** Set f's size in the image to size (from the durable size): a grow
   * shows the media's bytes, a shrink cuts; undo restores both. */
  #resize(f: FileSnapshot, size: number, undo: (() => void)[], cost: { bytes: number }): void {
    const fd = f.fd!;
    const { durable, tail, tailFrom } = f;
    ftruncateSync(fd, size);
    if (size > durable) {
      writeSync(fd, tail, durable - tailFrom, size - durable, durable);
      cost.bytes += size - durable;
    }
    undo.push(() => {
      ftruncateSync(fd, durable);
      if (size < durable) writeSync(fd, tail, size - tailFrom, durable - size, size);
    });
  }

  /** A shrink the state does not keep: its cut range (inside size) shows the
   * bytes it had before the shrink, not what the file wrote there after
   * growing back into it. */
  #restoreCut(f: FileSnapshot, c: FileSnapshot['cuts'][number], size: number, undo: (() => void)[], cost: { bytes: number }): void {
    const fd = f.fd!;
    const length = Math.min(c.to, size) - c.from;
    const before = new Uint8Array(length);
    readSync(fd, before, 0, length, c.from);
    writeSync(fd, c.bytes!, 0, length, c.from);
    cost.bytes += length;
    undo.push(() => writeSync(fd, before, 0, length, c.from));
  }

  /** Where a state keeps a shrink and a later grow of a file, the bytes
   * between are new blocks: the units there that did not persist. */
  #cutUnits(kept: readonly number[], persisted: ReadonlySet<number>): number[] {
    const cuts = new Map<number, { from: number; size: number }>();
    const durable = new Map(this.#files.map((f) => [f.id, f.durable]));
    for (const i of kept) {
      const op = this.#ops[i];
      if (op.kind !== 'size') continue;
      const c = cuts.get(op.file) ?? { from: Infinity, size: durable.get(op.file)! };
      if (op.size < c.size) c.from = Math.min(c.from, op.size);
      c.size = op.size;
      cuts.set(op.file, c);
    }
    if (cuts.size === 0) return [];
    return this.#presentUnits(kept).filter((u) => {
      const c = cuts.get(this.#unitFile[u].id);
      return !persisted.has(u) && c !== undefined && this.units[u].offset >= c.from;
    });
  }

  /** A cut unit that did not persist shows zeros where its media bytes are
   * not the live ones (stale bytes the shrink cut, which the media keeps
   * until fsync); file.write's bytes, on the media, equal the live ones. */
  #clearCut(u: number, undo: (() => void)[], cost: { bytes: number }): void {
    const fd = this.#unitFile[u].fd!;
    const unit = this.units[u];
    const [live, media] = [this.#live[u], this.#media[u]];
    const fresh = media.map((b, j) => (b === live[j] ? b : 0));
    writeSync(fd, fresh, 0, unit.length, unit.offset);
    cost.bytes += unit.length;
    undo.push(() => writeSync(fd, media, 0, unit.length, unit.offset));
  }

  #fd(f: FileSnapshot): number {
    f.fd ??= openSync(f.basePath, 'r+');
    return f.fd;
  }

  /** Replay the kept operations on the image, with their inverses in undo. */
  #applyOperations(kept: readonly number[], undo: (() => void)[], cost: { namespaceOps: number }): void {
    const ns = new NamespaceOverlay(this.#durable);
    const img = (p: string) => join(this.dir, p);
    const stashed = (file: number) => join(this.#stash, String(file));
    const move = (from: string, to: string) => {
      renameSync(from, to);
      cost.namespaceOps++;
      undo.push(() => renameSync(to, from));
    };
    for (const i of kept) {
      const op = this.#ops[i];
      if (op.kind === 'size') continue;  // the file's size: #resize, by fd
      if (op.kind === 'create') move(stashed(op.file), img(op.path));
      else if (op.kind === 'unlink') move(img(op.path), stashed(op.file));
      else if (op.kind === 'rename') {
        const target = ns.get(op.to);
        if (target?.kind === 'file') move(img(op.to), stashed(target.file));
        move(img(op.path), img(op.to));
      } else if (op.kind === 'mkdir') {
        mkdirSync(img(op.path));
        cost.namespaceOps++;
        undo.push(() => rmdirSync(img(op.path)));
      } else {
        rmdirSync(img(op.path));
        cost.namespaceOps++;
        undo.push(() => mkdirSync(img(op.path)));
      }
      applyOp(ns, op);
    }
  }

  /** Remove the state directory and the stash. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#remove();
  }

  #remove(): void {
    for (const f of this.#files) if (f.fd !== undefined) closeSync(f.fd);
    rmSync(this.dir, { recursive: true, force: true });
    rmSync(this.#stash, { recursive: true, force: true });
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Copy a file's durable bytes (its media) to path: the media file itself,
 * or on a real DAX mount the file. Caller holds the file's entry locks. */
function copyMedia(dax: DaxFile, path: string): void {
  const p = dax.persistence;
  if (p.media) {
    copyFileSync(p.media.path, path);
    truncateSync(path, durableSize(dax));
    return;
  }
  const bytes = new Uint8Array(durableSize(dax));
  native.regionRead(dax.fallbackRegion, 0, bytes);
  writeFileSync(path, bytes);
}

