// Entry words: locking, DIRTY/TOWRITE tags and the dirty summary, from JS.
// The same protocol as native/lock.cc (the fault handler's side), on the same
// memory: an uncontended lock is one CAS here; a contended one waits in
// native code, which also takes over locks whose owner thread has died.
import { udaxError } from './errors.js';
import { native, type TableCoverage, type TableView } from './native.js';

const C = native.constants;
export const LOCKED = C.LOCKED;
export const DIRTY = C.DIRTY;
export const TOWRITE = C.TOWRITE;
export const WAITERS = C.WAITERS;
/** DIRTY set by an async harvest while another thread held the lock: a
 * clean keeps DIRTY (native/entry.h). */
export const REDIRTY = C.REDIRTY;
const SUMMARY_SHIFT = C.SUMMARY_SHIFT;
const SUMMARY2_SHIFT = C.SUMMARY2_SHIFT;
const FLAGS_MASK = C.FLAGS_MASK;
const UNLOCK_MASK = FLAGS_MASK & ~(LOCKED | WAITERS | REDIRTY);
const CLEAN_AND_UNLOCK_MASK = FLAGS_MASK & ~(LOCKED | WAITERS | DIRTY | TOWRITE);

/** The statistics, in table order (native/entry.h UDAX_STATS). */
export const STAT_NAMES = [
  'writeFaults', 'faultTimeNs', 'coarsenedBlocks', 'coarsenedMappings', 'syncs', 'entriesCleaned',
  'bytesFlushed', 'syncTimeNs', 'preparedEntries', 'earlyWritebacks', 'locksRecovered', 'pagesHarvested',
  'harvestTimeNs', 'shootdowns', 'shootdownTimeNs', 'shootdownsUnacked',
] as const;
export type StatName = (typeof STAT_NAMES)[number];
if (C.STATS.join() !== STAT_NAMES.join()) {
  throw new Error(`udax: the addon's statistics (${C.STATS.join()}) are not this build's (${STAT_NAMES.join()}): rebuild it`);
}
const STAT_INDEX = Object.fromEntries(STAT_NAMES.map((name, i) => [name, i])) as Record<StatName, number>;

/** Entry locks this thread holds, of every file. */
let locksHeld = 0;

/** Whether this thread holds entry locks (inside withEntriesLocked). */
export function holdsEntryLocks(): boolean {
  return locksHeld > 0;
}

/** Throw rather than wait for something that may wait for a lock we hold
 * (unmap waits for fault handlers in flight; they may wait for our locks). */
export function assertNoEntryLocksHeld(syscall: string, path: string): void {
  if (locksHeld > 0) {
    throw udaxError('ERR_UDAX_DEADLOCK', `${syscall} while this thread holds entry locks (inside withEntriesLocked?)`, { syscall, path });
  }
}

/** The entry table of one file (the kernel's per-address_space XArray),
 * as this thread sees it. The views span the table's whole reservation
 * (native/udax.h), so they stay valid as the file grows and shrinks in any
 * thread: the live size is a shared word, read where it is needed. */
export class EntryTable {
  readonly id: number;
  /** Entries reserved: the most the file can grow to, in entries. */
  readonly capacity: number;
  readonly shift: number;
  /** Entry words [0, covered): at least the file's entries as of the last
   * read of size or count (views grow with the file, never shrink). */
  words!: Int32Array;
  /** The file's sizes (entry.h UDAX_SIZE_*). */
  readonly sizes: BigInt64Array;
  /** DIRTY entries per group of 64 (see entry.h), and per 32 groups. */
  groupDirty!: Int32Array;
  blockDirty!: Int32Array;
  readonly stats: BigInt64Array;
  /** The persistence model's shared bytes (src/persist.ts). */
  readonly persist: ArrayBuffer;
  readonly persistOffset: number;
  /** The tracker's words (entry.h UDAX_TRACKER_*; src/tracker.ts). */
  readonly trackerWords: Int32Array;
  readonly path: string;
  /** This thread's lock-owner tag for this file (entry.h: registry slot and
   * thread index, unique across the processes sharing the table). */
  readonly self: number;
  readonly #view: TableView;
  /** Every coverage this thread made: released together (close). */
  readonly #coverages: TableCoverage[] = [];
  #covered = 0;
  #released = false;

  constructor(view: TableView) {
    this.#view = view;
    this.id = view.id;
    this.capacity = view.capacity;
    this.shift = view.entryShift;
    this.path = view.path;
    this.sizes = new BigInt64Array(view.buffer, view.sizesOffset, C.SIZE_WORDS);
    this.#adopt(view.coverage);
    this.stats = new BigInt64Array(view.buffer, view.statsOffset, STAT_NAMES.length);
    this.persist = view.buffer;
    this.persistOffset = view.persistOffset;
    this.trackerWords = new Int32Array(view.buffer, view.trackerOffset, C.TRACKER_WORDS);
    this.self = native.inodeOwnerTag(view.id);
  }

  /** The file's size in bytes now (every open, every thread). Its entries
   * are covered by this thread's views once this returns. */
  get size(): number {
    const size = Number(Atomics.load(this.sizes, C.SIZE_LIVE));
    if (size > this.#covered * 2 ** this.shift) this.#cover(Math.ceil(size / 2 ** this.shift));
    return size;
  }

  /** Views over at least n entries (doubling, so a file growing a page at a
   * time makes few). The table does not move: earlier views stay valid. */
  #cover(n: number): void {
    this.#adopt(native.inodeCoverage(this.id, Math.min(this.capacity, Math.max(n, 2 * this.#covered))));
  }

  #adopt(c: TableCoverage): void {
    this.#coverages.push(c);
    this.words = new Int32Array(c.entries);
    this.groupDirty = new Int32Array(c.groups);
    this.blockDirty = new Int32Array(c.blocks);
    this.#covered = c.cover;
  }

  /** The file's entries now. */
  get count(): number {
    return Math.ceil(this.size / 2 ** this.shift);
  }

  /** The size a crash would leave: the live size as of the last fsync. */
  get durableSize(): number {
    return Number(Atomics.load(this.sizes, C.SIZE_DURABLE));
  }

  /** Size changes so far: a DaxFile refreshes its mappings when this moves. */
  get resizes(): number {
    return Number(Atomics.load(this.sizes, C.SIZE_RESIZES));
  }

  /** Drop this thread's view now (close), not at garbage collection: the
   * table's memory goes once no thread and no mapping uses it. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    native.releaseBuffer(this.#view.buffer, this.#view.hold);
    for (const c of this.#coverages.splice(0)) for (const h of c.holds) native.releaseBuffer(h.buffer, h.hold);
  }

  /** Take entry i's lock, sleeping while another thread holds it. Callers
   * lock in ascending index order and hold no lock above i; one that holds
   * locks and would wait in a cycle (another thread waiting for one of
   * them) gets ERR_UDAX_DEADLOCK instead, with nothing taken. */
  lock(i: number): void {
    if (i >= this.#covered) this.#cover(i + 1);  // another process grew the file since this thread looked
    const words = this.words;
    const self = this.self;
    const v = Atomics.load(words, i);
    if (!(v & LOCKED) && Atomics.compareExchange(words, i, v, (v & FLAGS_MASK) | LOCKED | self) === v) {
      locksHeld++;
      return;
    }
    if ((v & LOCKED) && (v & C.OWNER_MASK) === self) {
      throw udaxError('ERR_UDAX_DEADLOCK', `this thread already holds the lock of the entry at offset ${i * 2 ** this.shift} of`,
        { syscall: 'futex', path: this.path });
    }
    const got = native.entryLockWait(this.id, i, self, locksHeld > 0);
    if (got < 0) {
      throw udaxError('ERR_UDAX_DEADLOCK',
        `the lock of the entry at offset ${i * 2 ** this.shift} is held by thread ${-got}, which waits for a lock this thread holds (inside withEntriesLocked: take locks in ascending order), in`,
        { syscall: 'futex', path: this.path });
    }
    locksHeld++;
  }

  /** The entries [first, last] covering file bytes [offset, offset+length). */
  entryRange(offset: number, length: number): { first: number; last: number } {
    return { first: Math.floor(offset / 2 ** this.shift), last: Math.floor((offset + length - 1) / 2 ** this.shift) };
  }

  /** Run fn holding the locks of entries [first, last], taken ascending and
   * released even when fn throws. Caller holds no lock above first. */
  withLocked<T>(first: number, last: number, fn: () => T): T {
    let locked = first;
    try {
      for (; locked <= last; locked++) this.lock(locked);
      return fn();
    } finally {
      for (let i = first; i < locked; i++) this.unlock(i);
    }
  }

  /** Release entry i's lock and wake its waiters. Caller holds it. */
  unlock(i: number): void {
    locksHeld--;
    if (Atomics.and(this.words, i, UNLOCK_MASK) & WAITERS) native.entryWake(this.id, i);
  }

  /** Clear DIRTY and TOWRITE, then release entry i's lock (the end of
   * dax_writeback_one); only release it when a harvest re-dirtied it
   * meanwhile (REDIRTY). Caller holds it. The summary count drops after the
   * unlock: an overcount only costs a concurrent sync a scan. */
  cleanAndUnlock(i: number): void {
    const words = this.words;
    let old = Atomics.load(words, i);
    for (;;) {
      if (old & REDIRTY) return this.unlock(i);  // a harvest found a store since: keep DIRTY
      const seen = Atomics.compareExchange(words, i, old, old & CLEAN_AND_UNLOCK_MASK);
      if (seen === old) break;
      old = seen;
    }
    locksHeld--;
    if (old & WAITERS) native.entryWake(this.id, i);
    if (old & DIRTY) this.#count(i, -1);
  }

  /** Tag entry i DIRTY and, on a clean -> DIRTY transition, count it in the
   * summary (entry.h). Caller holds the entry lock, and makes the page
   * writable only after this returns. */
  setDirty(i: number): void {
    if (!(Atomics.or(this.words, i, DIRTY) & DIRTY)) this.#count(i, 1);
  }

  #count(i: number, delta: number): void {
    const group = i >>> SUMMARY_SHIFT;
    Atomics.add(this.groupDirty, group, delta);
    Atomics.add(this.blockDirty, group >>> SUMMARY2_SHIFT, delta);
  }

  isDirty(i: number): boolean {
    return (Atomics.load(this.words, i) & DIRTY) !== 0;
  }

  /** Calls fn(i) for every entry in [first, last] of a group with DIRTY
   * entries, skipping clean groups (2048 entries at a time where a whole
   * block is clean). An entry whose store completed before this call is
   * counted already: the count rises before its page becomes writable. */
  forEachMaybeDirty(first: number, last: number, fn: (i: number) => void): void {
    if (last < first) return;
    if (last >= this.#covered) this.#cover(last + 1);
    const lastGroup = last >>> SUMMARY_SHIFT;
    for (let group = first >>> SUMMARY_SHIFT; group <= lastGroup; ) {
      if (Atomics.load(this.blockDirty, group >>> SUMMARY2_SHIFT) === 0) {
        group = ((group >>> SUMMARY2_SHIFT) + 1) << SUMMARY2_SHIFT;
        continue;
      }
      if (Atomics.load(this.groupDirty, group) !== 0) {
        const from = Math.max(first, group << SUMMARY_SHIFT);
        const to = Math.min(last, ((group + 1) << SUMMARY_SHIFT) - 1);
        for (let i = from; i <= to; i++) fn(i);
      }
      group++;
    }
  }

  /** The DIRTY entries, counted. */
  dirtyCount(): number {
    let n = 0;
    this.forEachMaybeDirty(0, this.count - 1, (i) => {
      if (Atomics.load(this.words, i) & DIRTY) n++;
    });
    return n;
  }

  addStat(which: StatName, value: number): void {
    Atomics.add(this.stats, STAT_INDEX[which], BigInt(Math.round(value)));
  }

  stat(which: StatName): number {
    return Number(Atomics.load(this.stats, STAT_INDEX[which]));
  }
}
