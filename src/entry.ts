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
export const SUMMARY_SHIFT = C.SUMMARY_SHIFT;
export const ENTRIES_PER_GROUP = 1 << SUMMARY_SHIFT;
const FLAGS_MASK = C.FLAGS_MASK;
const UNLOCK_MASK = FLAGS_MASK & ~(LOCKED | WAITERS);
const CLEAN_AND_UNLOCK_MASK = FLAGS_MASK & ~(LOCKED | WAITERS | DIRTY | TOWRITE);

/** This thread's lock-owner tag (its Linux thread id, placed as in entry.h). */
const SELF = ((native.gettid() << C.OWNER_SHIFT) & C.OWNER_MASK) | 0;

/** The entry table of one file (the kernel's per-address_space XArray),
 * as this thread sees it. */
export class EntryTable {
  readonly id: number;
  readonly count: number;
  readonly shift: number;
  readonly words: Int32Array;
  readonly summary: Int32Array;
  readonly stats: BigInt64Array;
  readonly path: string;

  constructor(view: TableView) {
    this.id = view.id;
    this.count = view.entries;
    this.shift = view.entryShift;
    this.path = view.path;
    this.words = new Int32Array(view.buffer, 0, view.entries);
    this.summary = new Int32Array(view.buffer, view.summaryOffset, view.summaryWords);
    this.stats = new BigInt64Array(view.buffer, view.statsOffset, C.STATS.COUNT);
  }

  /** Take entry i's lock, sleeping while another thread holds it. Callers
   * lock in ascending index order and hold no lock above i. */
  lock(i: number): void {
    const words = this.words;
    for (;;) {
      const v = Atomics.load(words, i);
      if (!(v & LOCKED)) {
        if (Atomics.compareExchange(words, i, v, (v & FLAGS_MASK) | LOCKED | SELF) === v) return;
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

  /** Release entry i's lock and wake its waiters. Caller holds it. */
  unlock(i: number): void {
    if (Atomics.and(this.words, i, UNLOCK_MASK) & WAITERS) native.futexWake(this.id, i);
  }

  /** Clear DIRTY and TOWRITE, then release entry i's lock (the end of
   * dax_writeback_one). Caller holds it. */
  cleanAndUnlock(i: number): void {
    if (Atomics.and(this.words, i, CLEAN_AND_UNLOCK_MASK) & WAITERS) native.futexWake(this.id, i);
  }

  /** Tag entry i DIRTY, then its summary group (DIRTY first: see
   * tagForWriteback). Caller holds the entry lock. */
  setDirty(i: number): void {
    Atomics.or(this.words, i, DIRTY);
    const group = i >>> SUMMARY_SHIFT;
    Atomics.or(this.summary, group >>> 5, 1 << (group & 31));
  }

  isDirty(i: number): boolean {
    return (Atomics.load(this.words, i) & DIRTY) !== 0;
  }

  /** Calls fn(i) for every entry in [first, last] whose summary group may be
   * dirty, skipping clean groups 64 entries at a time. */
  forEachMaybeDirty(first: number, last: number, fn: (i: number) => void): void {
    const summary = this.summary;
    let group = first >>> SUMMARY_SHIFT;
    const lastGroup = last >>> SUMMARY_SHIFT;
    while (group <= lastGroup) {
      const word = Atomics.load(summary, group >>> 5) >>> (group & 31);
      if (word === 0) {
        group = ((group >>> 5) + 1) << 5;
        continue;
      }
      if (word & 1) {
        const from = Math.max(first, group << SUMMARY_SHIFT);
        const to = Math.min(last, ((group + 1) << SUMMARY_SHIFT) - 1);
        for (let i = from; i <= to; i++) fn(i);
      }
      group++;
    }
  }

  /** Clear the summary bit of every group wholly inside [first, last] that
   * has no DIRTY entry left. The bit is cleared before the re-scan, so a
   * concurrent setDirty (DIRTY, then bit) either is seen or re-sets it. */
  trimSummary(first: number, last: number): void {
    const words = this.words;
    const summary = this.summary;
    const firstGroup = (first + ENTRIES_PER_GROUP - 1) >>> SUMMARY_SHIFT;
    const endGroup = (last + 1) >>> SUMMARY_SHIFT;  // exclusive
    for (let group = firstGroup; group < endGroup; ) {
      const w = group >>> 5;
      if (Atomics.load(summary, w) === 0) {  // 32 clean groups at once
        group = (w + 1) << 5;
        continue;
      }
      const bit = 1 << (group & 31);
      if (Atomics.load(summary, w) & bit) {
        Atomics.and(summary, w, ~bit);
        const end = Math.min(this.count, (group + 1) << SUMMARY_SHIFT);
        for (let i = group << SUMMARY_SHIFT; i < end; i++) {
          if (Atomics.load(words, i) & DIRTY) {
            Atomics.or(summary, w, bit);
            break;
          }
        }
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
