// One way to reach a mapping larger than one ArrayBuffer can be (V8 caps
// external buffers at 4 GiB): overlapping windows, one starting at every
// WINDOW_STRIDE, each WINDOW_LENGTH long, so any view up to a stride long
// fits in the window that starts at or before it.
import { rangeError } from './errors.js';

/** The largest single view: V8's typed-array limit on 64-bit. */
export const MAX_BUFFER = 2 ** 32;
export const WINDOW_STRIDE = 2 ** 30;
export const WINDOW_LENGTH = 2 ** 31;

/** Window k of a mapping of `length` bytes: its start and length. */
export function windowSpan(length: number, k: number): { start: number; length: number } {
  if (length <= MAX_BUFFER) return { start: 0, length };
  const start = k * WINDOW_STRIDE;
  return { start, length: Math.min(WINDOW_LENGTH, length - start) };
}

/** The window holding [offset, offset+length) of a mapping of `total` bytes,
 * or a RangeError when no single window holds it. */
export function windowOf(total: number, offset: number, length: number): number {
  if (total <= MAX_BUFFER) return 0;
  const k = Math.floor(offset / WINDOW_STRIDE);
  if (offset + length > k * WINDOW_STRIDE + WINDOW_LENGTH) {
    throw rangeError(`view [${offset}, ${offset + length}) spans more than one ${WINDOW_LENGTH}-byte window`);
  }
  return k;
}
