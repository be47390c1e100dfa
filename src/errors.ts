// DaxError: what went wrong, with the same fields as Node's fs errors.
import { constants as osConstants } from 'node:os';

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name]),
);

export interface DaxErrorFields {
  code: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

/** An operation on a DAX file failed. `code` is stable (an errno name such as
 * `ENOENT`, or an `ERR_UDAX_*` name for udax's own conditions). */
export class DaxError extends Error {
  readonly code: string;
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;

  constructor(message: string, fields: DaxErrorFields) {
    super(message);
    this.name = 'DaxError';
    this.code = fields.code;
    this.errno = fields.errno;
    this.syscall = fields.syscall;
    this.path = fields.path;
  }
}

/** A DaxError for errno (a positive errno number) from syscall on path. */
export function errnoError(errno: number, syscall: string, path: string | undefined, detail?: string): DaxError {
  const code = errnoNames.get(errno) ?? `E${errno}`;
  const where = path === undefined ? '' : ` '${path}'`;
  return new DaxError(`${code}: ${detail ?? syscall + ' failed'}, ${syscall}${where}`, {
    code, errno, syscall, path,
  });
}

/** Run a native call; turn its errno error into a DaxError about path. */
export function nativeCall<T>(path: string | undefined, call: () => T): T {
  try {
    return call();
  } catch (e) {
    const err = e as { errno?: number; syscall?: string };
    if (typeof err.errno === 'number' && typeof err.syscall === 'string') {
      throw errnoError(err.errno, err.syscall, path);
    }
    throw e;
  }
}

/** A RangeError with Node's code for an out-of-range argument. */
export function rangeError(message: string): RangeError {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' });
}

/** A TypeError with Node's code for an argument of the wrong type. */
export function typeError(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' });
}
