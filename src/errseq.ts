// errseq_t: how Linux reports a writeback error once to each open file
// (lib/errseq.c, mapping_set_error, file_check_and_advance_wb_err).
//
// One 32-bit word per file: the last errno (low 12 bits), a SEEN flag, and a
// counter above them. Setting an error bumps the counter only when the
// previous error was seen (unseen errors collapse into the newest). Each open
// file keeps the value it last saw (its cursor); a sync reports an error when
// the word differs from the cursor, then advances the cursor and sets SEEN.
// A cursor sampled while an error is still unseen starts at 0, so the first
// opener after an unseen error is told about it (Linux >= 4.14, the fix
// motivated by PostgreSQL's fsync problem).
//
// The word lives in the entry table's persistence area (native memory that
// every thread and every open of the file share, as processes share an inode).

export const MAX_ERRNO = 0xfff;
export const SEEN = 1 << 12;
export const CTR_INC = 1 << 13;

/** mapping_set_error / errseq_set: record errno (positive) in the word. */
export function errseqSet(word: Int32Array, index: number, errno: number): void {
  if (!Number.isInteger(errno) || errno <= 0 || errno > MAX_ERRNO) throw new RangeError(`errseq: bad errno ${errno}`);
  for (;;) {
    const old = Atomics.load(word, index);
    let next = (old & ~(MAX_ERRNO | SEEN)) | errno;
    if (old & SEEN) next = (next + CTR_INC) | 0;
    if (Atomics.compareExchange(word, index, old, next) === old) return;
  }
}

/** errseq_sample: the cursor a newly opened file starts from. */
export function errseqSample(word: Int32Array, index: number): number {
  const old = Atomics.load(word, index);
  return old & SEEN ? old : 0;
}

/** errseq_check_and_advance: the errno to report to a file whose cursor is
 * `since` (0 for none), and its new cursor. Marks the error SEEN. */
export function errseqCheckAndAdvance(word: Int32Array, index: number, since: number): { errno: number; cursor: number } {
  const old = Atomics.load(word, index);
  if (old === since) return { errno: 0, cursor: since };
  const seen = old | SEEN;
  if (seen !== old) Atomics.compareExchange(word, index, old, seen);
  return { errno: seen & MAX_ERRNO, cursor: seen };
}

/** One open file's view of the errseq word (the kernel's file->f_wb_err). */
export class ErrCursor {
  #since: number;
  readonly #word: Int32Array;
  readonly #index: number;

  constructor(word: Int32Array, index: number) {
    this.#word = word;
    this.#index = index;
    this.#since = errseqSample(word, index);
  }

  /** The errno of a writeback error this cursor has not yet reported (0 for
   * none), advancing past it: each error is returned once per cursor. */
  checkAndAdvance(): number {
    const r = errseqCheckAndAdvance(this.#word, this.#index, this.#since);
    this.#since = r.cursor;
    return r.errno;
  }
}
