// Entry words: locking, DIRTY/TOWRITE tags and the dirty summary, from JS.
// The same protocol as native/futex.cc (the fault handler's side), on the
// same memory, so a JS waiter and a handler waiter wake each other.
import { DaxError } from './errors.js';
import { native, type TableView } from './native.js';

const C = native.constants;
export const LOCKED = C.LOCKED;
export const DIRTY = C.DIRTY;
export const TOWRITE = C.TOWRITE;
export const WAITERS = C.WAITERS;
const SUMMARY_SHIFT = C.SUMMARY_SHIFT;
const SUMMARY2_SHIFT = C.SUMMARY2_SHIFT;
const FLAGS_MASK = C.FLAGS_MASK;
const UNLOCK_MASK = FLAGS_MASK & ~(LOCKED | WAITERS);
const CLEAN_AND_UNLOCK_MASK = FLAGS_MASK & ~(LOCKED | WAITERS | DIRTY | TOWRITE);

/** This thread's lock-owner tag (its Linux thread id, placed as in entry.h). */
const SELF = ((native.gettid() << C.OWNER_SHIFT) & C.OWNER_MASK) | 0;

/** Entry locks this thread holds, of every file. */
let locksHeld = 0;

/** Throw rather than wait for something that may wait for a lock we hold
 * (unmap waits for fault handlers in flight; they may wait for our locks). */
export function assertNoEntryLocksHeld(op: string, path: string): void {
  if (locksHeld > 0) {
    throw new DaxError(`ERR_UDAX_DEADLOCK: ${op} while this thread holds entry locks (inside withEntriesLocked?)`, {
      code: 'ERR_UDAX_DEADLOCK', syscall: op, path,
    });
  }
}

/** The entry table of one file (the kernel's per-address_space XArray),
 * as this thread sees it. */
export class EntryTable {
  readonly id: number;
  readonly count: number;
  readonly shift: number;
  readonly words: Int32Array;
  /** DIRTY entries per group of 64 (see entry.h), and per 32 groups. */
  readonly groupDirty: Int32Array;
  readonly blockDirty: Int32Array;
  readonly stats: BigInt64Array;
  readonly path: string;

  constructor(view: TableView) {
    this.id = view.id;
    this.count = view.entries;
    this.shift = view.entryShift;
    this.path = view.path;
    this.words = new Int32Array(view.buffer, 0, view.entries);
    const groups = view.summaryGroups;
    this.groupDirty = new Int32Array(view.buffer, view.summaryOffset, groups);
    this.blockDirty = new Int32Array(view.buffer, view.summaryOffset + groups * 4, Math.ceil(groups / 2 ** SUMMARY2_SHIFT));
    this.stats = new BigInt64Array(view.buffer, view.statsOffset, C.STATS.COUNT);
  }

  /** Take entry i's lock, sleeping while another thread holds it. Callers
   * lock in ascending index order and hold no lock above i. */
  lock(i: number): void {
    const words = this.words;
    for (;;) {
      const v = Atomics.load(words, i);
      if (!(v & LOCKED)) {
        if (Atomics.compareExchange(words, i, v, (v & FLAGS_MASK) | LOCKED | SELF) === v) {
          locksHeld++;
          return;
        }
        continue;
      }
      if ((v & C.OWNER_MASK) === SELF) {
        throw new DaxError(
          `ERR_UDAX_DEADLOCK: this thread already holds the lock of ${this.path} at offset ${i * 2 ** this.shift}`,
          { code: 'ERR_UDAX_DEADLOCK', path: this.path },
        );
      }
      let expected = v;
      if (!(v & WAITERS)) {
        expected = v | WAITERS;
        if (Atomics.compareExchange(words, i, v, expected) !== v) continue;
      }
      native.futexWait(this.id, i, expected);
    }
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
    if (Atomics.and(this.words, i, UNLOCK_MASK) & WAITERS) native.futexWake(this.id, i);
  }

  /** Clear DIRTY and TOWRITE, then release entry i's lock (the end of
   * dax_writeback_one). Caller holds it. The summary count drops after the
   * unlock: an overcount only costs a concurrent sync a scan. */
  cleanAndUnlock(i: number): void {
    locksHeld--;
    const old = Atomics.and(this.words, i, CLEAN_AND_UNLOCK_MASK);
    if (old & WAITERS) native.futexWake(this.id, i);
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

  addStat(which: keyof typeof C.STATS, value: number): void {
    Atomics.add(this.stats, C.STATS[which], BigInt(Math.round(value)));
  }

  stat(which: keyof typeof C.STATS): number {
    return Number(Atomics.load(this.stats, C.STATS[which]));
  }
}
