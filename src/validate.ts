// Argument checks shared by the public entry points: misuse is caught here,
// before it reaches native code.
import { PAGE_SIZE } from './constants.js';
import { rangeError, typeError } from './errors.js';

/** A safe integer in [min, max], or a TypeError/RangeError naming it. */
export function integer(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw typeError(`${name} must be a number, got ${typeof value}`);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw rangeError(`${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

export function pageAligned(name: string, value: number): number {
  if (value % PAGE_SIZE !== 0) throw rangeError(`${name} must be a multiple of ${PAGE_SIZE}, got ${value}`);
  return value;
}

export function boolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw typeError(`${name} must be a boolean, got ${typeof value}`);
  return value;
}

export function options<T extends object>(name: string, value: unknown): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object') throw typeError(`${name} must be an object`);
  return value as Partial<T>;
}

/** Checks [offset, offset+length) lies in [0, size); returns the length
 * (defaulting to the rest). Out-of-bounds ranges are RangeErrors. */
export function range(what: string, offset: unknown, length: unknown, size: number): { offset: number; length: number } {
  const off = integer(`${what} offset`, offset ?? 0, 0, size);
  const len = integer(`${what} length`, length ?? size - off, 1);
  if (off + len > size) throw rangeError(`${what} [${off}, ${off + len}) is past the end (${size} bytes)`);
  return { offset: off, length: len };
}
