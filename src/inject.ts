// Writeback fault injection: rules "the next `times` syncs that write back an
// entry overlapping [offset, offset+length) fail with errno", kept in the
// entry table's persistence area so every thread's and every open's
// writeback of the file honours them.
import { constants as osConstants } from 'node:os';
import { rangeError, typeError } from './errors.js';
import * as check from './validate.js';

export interface InjectOptions {
  /** Byte range whose writeback fails (default: the whole file). */
  offset?: number;
  length?: number;
  /** A positive errno or its name (default 'EIO'). */
  errno?: number | string;
  /** How many syncs touching the range fail (default 1; Infinity: all). */
  times?: number;
  /** What happens to the data of a failed entry:
   * 'mark-clean' (default; what ext4 and XFS do): the entry is marked clean
   *   without reaching the media. Live memory keeps the new bytes, later
   *   syncs skip them, and a crash loses them.
   * 'keep-dirty': the entry stays dirty; the next sync writes it again. */
  data?: 'mark-clean' | 'keep-dirty';
}

/** Slots for rules; exhausted rules free theirs. */
export const MAX_RULES = 16;
/** Int32 words per rule: errno, times (-1 = forever), keepDirty, unused. */
export const RULE_INTS = 4;
/** Float64 words per rule: [offset, end). */
export const RULE_RANGES = 2;
const FOREVER = -1;

/** A failure decided for one entry in one sync. */
export interface Failure {
  errno: number;
  keepDirty: boolean;
}

export class InjectionTable {
  readonly #ints: Int32Array;       // MAX_RULES * RULE_INTS
  readonly #ranges: Float64Array;  // MAX_RULES * RULE_RANGES

  constructor(ints: Int32Array, ranges: Float64Array) {
    if (ints.length < MAX_RULES * RULE_INTS || ranges.length < MAX_RULES * RULE_RANGES) throw new Error('udax: injection table too small');
    this.#ints = ints;
    this.#ranges = ranges;
  }

  /** Add a rule (from one thread at a time). */
  add(opts: InjectOptions, fileSize: number): void {
    const o = check.options<InjectOptions>('injectWritebackError options', opts);
    const r = check.range('injectWritebackError', o.offset, o.length, fileSize);
    const errno = parseErrno(o.errno ?? 'EIO');
    const times = o.times === Infinity ? FOREVER : check.integer('times', o.times ?? 1, 1, 0x7fffffff);
    const data = o.data ?? 'mark-clean';
    if (data !== 'mark-clean' && data !== 'keep-dirty') throw rangeError(`data must be 'mark-clean' or 'keep-dirty', got ${String(data)}`);
    let slot = -1;
    for (let s = 0; s < MAX_RULES; s++) {
      if (Atomics.load(this.#ints, RULE_INTS * s + 1) === 0) { slot = s; break; }
    }
    if (slot < 0) throw rangeError(`at most ${MAX_RULES} injected writeback errors may be pending`);
    const b = RULE_INTS * slot;
    this.#ranges[RULE_RANGES * slot] = r.offset;
    this.#ranges[RULE_RANGES * slot + 1] = r.offset + r.length;
    Atomics.store(this.#ints, b, errno);
    Atomics.store(this.#ints, b + 2, data === 'keep-dirty' ? 1 : 0);
    Atomics.store(this.#ints, b + 1, times);  // publishes the rule
  }

  /** Whether any rule is pending (the fast path skips injection entirely). */
  pending(): boolean {
    for (let s = 0; s < MAX_RULES; s++) if (Atomics.load(this.#ints, RULE_INTS * s + 1) !== 0) return true;
    return false;
  }

  /** Rules pending now, for display. */
  list(): { offset: number; length: number; errno: number; times: number; data: 'mark-clean' | 'keep-dirty' }[] {
    const out = [];
    for (let s = 0; s < MAX_RULES; s++) {
      const b = RULE_INTS * s;
      const times = Atomics.load(this.#ints, b + 1);
      if (times === 0) continue;
      out.push({
        offset: this.#ranges[RULE_RANGES * s], length: this.#ranges[RULE_RANGES * s + 1] - this.#ranges[RULE_RANGES * s],
        errno: Atomics.load(this.#ints, b), times: times === FOREVER ? Infinity : times,
        data: Atomics.load(this.#ints, b + 2) ? 'keep-dirty' as const : 'mark-clean' as const,
      });
    }
    return out;
  }

  /** Per-sync state: a rule that matches an entry of this sync is claimed
   * (one of its `times` used) the first time, and then fails every entry of
   * the range this sync writes back. */
  forSync(): (from: number, to: number) => Failure | undefined {
    const decided = new Map<number, boolean>();
    return (from, to) => {
      for (let s = 0; s < MAX_RULES; s++) {
        const b = RULE_INTS * s;
        let claimed = decided.get(s);
        if (claimed === false) continue;
        if (claimed === undefined) {
          if (Atomics.load(this.#ints, b + 1) === 0) continue;
          if (!(from < this.#ranges[RULE_RANGES * s + 1] && this.#ranges[RULE_RANGES * s] < to)) continue;
          claimed = claim(this.#ints, b + 1);
          decided.set(s, claimed);
          if (!claimed) continue;
        } else if (!(from < this.#ranges[RULE_RANGES * s + 1] && this.#ranges[RULE_RANGES * s] < to)) {
          continue;
        }
        return { errno: Atomics.load(this.#ints, b), keepDirty: Atomics.load(this.#ints, b + 2) === 1 };
      }
      return undefined;
    };
  }
}

/** Use one of a rule's times; false when it ran out meanwhile. */
function claim(ints: Int32Array, i: number): boolean {
  for (;;) {
    const t = Atomics.load(ints, i);
    if (t === 0) return false;
    if (t === FOREVER) return true;
    if (Atomics.compareExchange(ints, i, t, t - 1) === t) return true;
  }
}

function parseErrno(value: number | string): number {
  if (typeof value === 'string') {
    const n = (osConstants.errno as Record<string, number>)[value];
    if (n === undefined) throw rangeError(`errno: unknown error name '${value}'`);
    return n;
  }
  if (typeof value !== 'number') throw typeError('errno must be a number or an error name such as \'EIO\'');
  return check.integer('errno', value, 1, 4095);
}
