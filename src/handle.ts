// DaxHandle: an open file handle (the kernel's struct file) with its own
// errseq cursor, sampled when it is opened, so each handle is told of each
// writeback error once, on its next sync (file_check_and_advance_wb_err).
import type { ErrCursor } from './errseq.js';
import { errnoError } from './errors.js';
import type { DaxFile } from './file.js';
import type { SyncResult } from './writeback.js';

export class DaxHandle {
  readonly file: DaxFile;
  readonly #cursor: ErrCursor;
  #closed = false;

  /** @internal Use file.openHandle(). */
  constructor(file: DaxFile, cursor: ErrCursor) {
    this.file = file;
    this.#cursor = cursor;
  }

  /** fsync through this handle: write back [offset, offset+length) as
   * file.sync does, then throw a DaxError (code of the errno, e.g. 'EIO',
   * syscall 'fsync') if a writeback error happened since this handle last
   * reported one — whoever's writeback recorded it. */
  sync(offset?: number, length?: number): SyncResult {
    if (this.#closed) throw errnoError('EBADF', 'fsync', this.file.path, 'handle is closed');
    return this.file.syncReporting(this.#cursor, offset, length);
  }

  close(): void {
    this.#closed = true;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
