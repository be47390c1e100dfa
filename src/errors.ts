// DaxError: what went wrong, with the same fields as Node's fs errors; and
// the table of udax's own codes (the README's error table lists the same).
import { constants as osConstants } from 'node:os';

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name]),
);
const errnoNumbers = osConstants.errno as Readonly<Record<string, number>>;

/** udax's own conditions (no errno describes them), with what each means. */
export const UDAX_ERROR_CODES = {
  ERR_UDAX_HANDLER_REPLACED: 'the SIGSEGV (sigsegv tracker) or SIGBUS (sigbus tracker) handler is no longer udax\'s (process.on(\'SIGSEGV\')?): stores would fault forever',
  ERR_UDAX_DEADLOCK: 'this thread would wait for an entry lock it holds, or unmap/close while holding entry locks',
  ERR_UDAX_NO_MEDIA: 'crash images need a persistence domain: open with media: \'shadow\'',
  ERR_UDAX_ALREADY_OPEN: 'the file is open in this process already, with another size, entry size or persistence model',
  ERR_UDAX_SAME_FILE: 'a media or crash-image path names the data file or its media',
  ERR_UDAX_FILE_SHRANK: 'the file (or its media) was truncated underneath udax',
  ERR_UDAX_NO_ADDON: 'the native addon is not built or does not load',
  ERR_UDAX_TRACKER_UNAVAILABLE: 'the tracker asked for (option or UDAX_TRACKER) is not available here: udax info says why',
  ERR_UDAX_BAD_NAME: 'a volume name escapes the volume (absolute, \'..\', \'.\', an empty component) or names its .udax directory',
  ERR_UDAX_UNLINKED: 'the volume file behind this handle was unlinked, or replaced by a rename',
  ERR_UDAX_NONDETERMINISTIC: 'a crash-point workload made other calls on the volume when replayed (exploreCrashPoints replays it per point: it must be deterministic)',
  ERR_UDAX_VOLUME_LOCKED: 'the volume directory is open already, in this process or another (its .udax/lock is locked): close that volume first',
  ERR_UDAX_VOLUME_FILE: 'a volume\'s file changes size only through its VolumeFile (resize, write past the end), which records the change for crash states',
  ERR_UDAX_SHARED: 'the file is open in another process and this needs it alone or cannot reach that process: a writable open beside a peer in another pid namespace or one whose page tables (async) or userfaultfd (sigbus) this process may not reach',
  ERR_UDAX_MAPPED_PAST_END: 'a resize would leave a live mapping of the file in this process wholly past its end (it starts past the new size)',
} as const;

export type UdaxErrorCode = keyof typeof UDAX_ERROR_CODES;

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

/** A DaxError for errno (a positive number or a name such as 'EBADF') from
 * syscall on path, as Node's fs errors read: "EBADF: detail, syscall 'path'". */
export function errnoError(errno: number | string, syscall: string, path: string | undefined, detail?: string): DaxError {
  const number = typeof errno === 'number' ? errno : errnoNumbers[errno];
  if (number === undefined) throw new Error(`udax: unknown errno name ${String(errno)}`);
  const code = errnoNames.get(number) ?? `E${number}`;
  const where = path === undefined ? '' : ` '${path}'`;
  return new DaxError(`${code}: ${detail ?? syscall + ' failed'}, ${syscall}${where}`, {
    code, errno: number, syscall, path,
  });
}

/** A DaxError with one of udax's own codes. */
export function udaxError(code: UdaxErrorCode, detail: string, fields: { syscall?: string; path?: string; errno?: number } = {}): DaxError {
  const where = fields.path === undefined ? '' : ` '${fields.path}'`;
  return new DaxError(`${code}: ${detail}${where}`, { code, ...fields });
}

/** A RangeError with Node's code for an out-of-range argument. */
export function rangeError(message: string): RangeError {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' });
}

/** A TypeError with Node's code for an argument of the wrong type. */
export function typeError(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' });
}

/** A TypeError with Node's code for an argument of the right type but a bad value. */
export function argValueError(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_VALUE' });
}

/** A native copy or flush runs under a SIGBUS guard that reports EFAULT:
 * the pages past the file's (or its media's) new end are gone. Say so;
 * any other error passes through. */
export function shrankError(e: unknown, path: string, consequence = ''): unknown {
  if (!(e instanceof DaxError) || e.code !== 'EFAULT') return e;
  return udaxError('ERR_UDAX_FILE_SHRANK',
    `the file or its media was truncated underneath udax (another process?): its tail is gone${consequence}:`,
    { syscall: e.syscall, path: e.path ?? path, errno: e.errno });
}
