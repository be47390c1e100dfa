// Mapping: one mapping of a DaxFile into the process (the kernel's vma).
import { fstatSync, readSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { FileHandle } from 'node:fs/promises';
import { assertNoEntryLocksHeld } from './entry.js';
import { errnoError, rangeError } from './errors.js';
import type { DaxFile } from './file.js';
import { native, type HeldBuffer } from './native.js';
import * as check from './validate.js';
import { MAX_BUFFER, windowOf, windowSpan } from './window.js';

export interface MapOptions {
  /** Page-aligned file offset (default 0). */
  offset?: number;
  /** Bytes (default: to the end of the file). */
  length?: number;
  /** Copy-on-write mapping: never tracked, never written back (default false). */
  private?: boolean;
}

/** A serialisable reference to a mapping, for file.attachMapping() in a worker. */
export interface MappingHandle {
  readonly inode: number;
  readonly region: number;
  readonly offset: number;
  readonly length: number;
  readonly private: boolean;
}

/** A read into the mapping that a concurrent sync keeps beating (it
 * write-protects the range between prepareWrite and the read: EFAULT with no
 * byte read) is retried this many times in a row, then the next chunk goes
 * through a bounce buffer: stores from JS fault and are tracked like any
 * other, so the read always progresses. */
const READ_RETRIES_BEFORE_BOUNCE = 8;
const BOUNCE_BYTES = 64 * 1024;
const { ENOMEM } = osConstants.errno;

export class Mapping {
  readonly file: DaxFile;
  /** File offset of the first byte. */
  readonly offset: number;
  readonly length: number;
  readonly private: boolean;
  /** @internal The native region id (generation-checked). */
  readonly region: number;
  /** @internal Write-protected and fault-tracked (shared, of a writable file). */
  readonly tracked: boolean;
  readonly #owner: boolean;
  readonly #windows = new Map<number, HeldBuffer>();
  #bytes: Uint8Array | undefined;
  #unmapped = false;

  /** @internal Use file.map() or file.attachMapping(). */
  constructor(file: DaxFile, region: number, offset: number, length: number, isPrivate: boolean, tracked: boolean, owner: boolean) {
    this.file = file;
    this.region = region;
    this.offset = offset;
    this.length = length;
    this.private = isPrivate;
    this.tracked = tracked;
    this.#owner = owner;
  }

  get unmapped(): boolean {
    return this.#unmapped;
  }

  /** EBADF once unmapped here, or (an attached mapping) by its owner. */
  #assertMapped(syscall: string): void {
    if (this.#unmapped) throw errnoError('EBADF', syscall, this.file.path, 'mapping is unmapped');
    this.file.assertOpen(syscall);
    if (!this.#owner && !native.regionIsLive(this.region)) {
      throw errnoError('EBADF', syscall, this.file.path, 'mapping was unmapped by the thread that made it');
    }
  }

  /** This thread's buffer for window k (the whole mapping when it fits). */
  #window(k: number): HeldBuffer {
    let w = this.#windows.get(k);
    if (!w) {
      const span = windowSpan(this.length, k);
      w = native.regionView(this.region, span.start, span.length);
      this.#windows.set(k, w);
    }
    return w;
  }

  /** The whole mapping as bytes (mappings up to 4 GiB; use view() beyond). */
  get bytes(): Uint8Array {
    this.#assertMapped('mmap');
    if (this.length > MAX_BUFFER) {
      throw rangeError(`mapping is ${this.length} bytes; views are at most ${MAX_BUFFER}: use view(offset, length)`);
    }
    this.#bytes ??= new Uint8Array(this.#window(0).buffer);
    return this.#bytes;
  }

  /** Bytes [offset, offset+length) of the mapping (offsets relative to it).
   * In mappings over 4 GiB a view may not cross a 1 GiB boundary unless it
   * fits in the 2 GiB window that starts there (src/window.ts). */
  view(offset?: number, length?: number): Uint8Array {
    this.#assertMapped('mmap');
    const r = check.range('view', offset, length, this.length);
    const k = windowOf(this.length, r.offset, r.length);
    return new Uint8Array(this.#window(k).buffer, r.offset - windowSpan(this.length, k).start, r.length);
  }

  /** Make [offset, offset+length) writable and dirty without a fault, for
   * writes the fault handler never sees: system calls (fs.readSync into a
   * view, async reads) get EFAULT on write-protected pages instead of a
   * signal. Lock ascending -> DIRTY -> unprotect -> unlock, like a fault.
   * A later sync write-protects the range again (sigsegv: mprotect;
   * sigbus: UFFDIO_WRITEPROTECT, whose pages give system calls EFAULT
   * too: userfaultfd is user-mode only). With the async tracker
   * system calls just work (the kernel records their stores too): this only
   * dirties the entries. */
  prepareWrite(offset?: number, length?: number): void {
    this.#assertMapped('mprotect');
    const r = check.range('prepareWrite', offset, length, this.length);
    if (this.private) return;
    if (this.file.readOnly) throw errnoError('EACCES', 'mprotect', this.file.path, 'file was opened readOnly');
    if (!this.tracked) return;
    const tracker = this.file.faultTracker;
    tracker.check(this.file.path);
    const table = this.file.table;
    // Only the part inside the file (a mapping reaching past a shrunk end):
    // a system call into the rest fails with EFAULT, as without udax.
    const from = this.offset + r.offset;
    const to = Math.min(from + r.length, this.file.size);
    if (to <= from) return;
    const { first, last } = table.entryRange(from, to - from);
    if (!tracker.faultHook) {
      table.withLocked(first, last, () => {
        for (let i = first; i <= last; i++) table.setDirty(i);
      });
      table.addStat('preparedEntries', last - first + 1);
      return;
    }
    this.file.writebackIfTrackerAsks();
    let err = this.#dirtyAndUnprotect(first, last);
    if (err === ENOMEM) {
      // The VMA budget is spent. Write back early (re-protecting merges the
      // islands), then try once more.
      this.file.writebackAll();
      err = this.#dirtyAndUnprotect(first, last);
    }
    if (err) throw errnoError(err, tracker.name === 'sigbus' ? 'ioctl' : 'mprotect', this.file.path);
    table.addStat('preparedEntries', last - first + 1);
  }

  /** The fault path for a range: lock -> DIRTY -> unprotect -> unlock.
   * Returns 0 or the errno mprotect failed with. */
  #dirtyAndUnprotect(first: number, last: number): number {
    const table = this.file.table;
    return table.withLocked(first, last, () => {
      for (let i = first; i <= last; i++) table.setDirty(i);
      return native.regionProtect(this.region, first, last, true);
    });
  }

  /** Read up to length bytes of fd at position into the mapping at offset,
   * with prepareWrite first (a plain read would fail with EFAULT). If a sync
   * on another thread write-protects the range again meanwhile, prepare the
   * rest and go on; if it keeps doing so, read through a bounce buffer.
   * Returns the bytes read (fewer at end of file, or where the mapping
   * reaches past the file's end; none there is EFAULT). */
  readFromFile(fd: number, position: number, offset: number, length: number): number {
    const r = check.range('readFromFile', offset, length, this.length);
    check.integer('position', position, 0);
    assertReadableFd(fd, this.file.path);
    const read = new ReadIntoMapping(this, r.offset, r.length);
    for (let into; (into = read.next());) {
      let n: number;
      try {
        n = readSync(fd, into, 0, into.length, position + read.done);
      } catch (e) {
        if (read.failed(e)) continue;
        break;
      }
      if (!read.read(n)) break;
    }
    return read.done;
  }

  /** The async form of readFromFile. */
  async readFromFileAsync(handle: FileHandle, position: number, offset: number, length: number): Promise<number> {
    const r = check.range('readFromFileAsync', offset, length, this.length);
    check.integer('position', position, 0);
    if (!handle || typeof (handle as { read?: unknown }).read !== 'function') throw rangeError('readFromFileAsync: handle must be a FileHandle');
    assertReadableFd(handle.fd, this.file.path);
    const read = new ReadIntoMapping(this, r.offset, r.length);
    for (let into; (into = read.next());) {
      let n: number;
      try {
        ({ bytesRead: n } = await handle.read(into, 0, into.length, position + read.done));
      } catch (e) {
        if (read.failed(e)) continue;
        break;
      }
      if (!read.read(n)) break;
    }
    return read.done;
  }

  /** A plain object to post to a worker (see DaxFile.attachMapping). */
  handle(): MappingHandle {
    this.#assertMapped('mmap');
    return { inode: this.file.table.id, region: this.region, offset: this.offset, length: this.length, private: this.private };
  }

  /** Unmap (the owner) or release (an attached mapping). An async mapping is
   * harvested first (native/region.cc), so its unflushed stores stay DIRTY.
   * This thread's views
   * are detached: indexed stores to them are dropped, reads give undefined.
   * Views in other threads are not: touching one kills the process with a
   * message naming the file, and never reaches another file's memory. */
  unmap(): void {
    if (this.#unmapped) return;
    assertNoEntryLocksHeld('munmap', this.file.path);
    this.#unmapped = true;
    for (const w of this.#windows.values()) native.releaseBuffer(w.buffer, w.hold);
    this.#windows.clear();
    this.#bytes = undefined;
    if (this.#owner) native.unmapRegion(this.region);
    this.file.forgetMapping(this);
  }

  /** `using m = file.map()` unmaps at the end of the block. */
  [Symbol.dispose](): void {
    this.unmap();
  }
}

/** fd must be an open descriptor (checked before anything is dirtied). */
function assertReadableFd(fd: unknown, path: string): void {
  check.integer('fd', fd, 0, 0x7fffffff);
  try {
    fstatSync(fd as number);
  } catch (e) {
    throw errnoError((e as { errno?: number }).errno !== undefined ? -(e as { errno: number }).errno : 'EBADF', 'read', path, `fd ${String(fd)} is not an open file`);
  }
}

/** One readFromFile(Async) call around its read(2)s: where each read goes
 * (the mapping, prepared; after READ_RETRIES_BEFORE_BOUNCE EFAULTs in a row
 * a bounce buffer) and what its result or error means. */
class ReadIntoMapping {
  /** Bytes read so far. */
  done = 0;
  readonly #m: Mapping;
  readonly #offset: number;
  readonly #length: number;
  #efaults = 0;  // in a row, with no byte read
  #view: Uint8Array | undefined;
  #bounce: Buffer | undefined;

  constructor(m: Mapping, offset: number, length: number) {
    this.#m = m;
    this.#offset = offset;
    this.#length = length;
  }

  /** The buffer the next read goes into; undefined once all is read. */
  next(): Uint8Array | undefined {
    if (this.done >= this.#length) return undefined;
    const at = this.#offset + this.done;
    const left = this.#length - this.done;
    this.#view = this.#m.view(at, left);
    if (this.#efaults >= READ_RETRIES_BEFORE_BOUNCE) {
      this.#bounce = this.#bounceFor(at, this.#view.length);
      return this.#bounce;
    }
    this.#bounce = undefined;
    this.#m.prepareWrite(at, left);
    return this.#view;
  }

  /** n bytes were read into it: false when the read is over (end of fd). */
  read(n: number): boolean {
    if (this.#bounce) this.#view!.set(this.#bounce.subarray(0, n));
    if (n === 0) return false;
    this.done += n;
    this.#efaults = 0;
    return true;
  }

  /** It failed with e: true to try again (the EFAULT of a concurrent sync's
   * write-protect), false when the read is over (a partial transfer returns
   * its count, as read(2)); anything else is thrown. An EFAULT at or past
   * the file's end (a mapping reaching past a shrunk end) is the read's
   * answer, as without udax: bouncing it would store past the end (SIGBUS). */
  failed(e: unknown): boolean {
    if (this.#bounce || (e as { code?: string }).code !== 'EFAULT') throw e;
    if (this.#m.offset + this.#offset + this.done >= this.#m.file.size) {
      if (this.done > 0) return false;
      throw e;
    }
    this.#efaults++;
    return true;
  }

  /** A bounce buffer for the read at offset: at most BOUNCE_BYTES, never past
   * the file's end. */
  #bounceFor(offset: number, length: number): Buffer {
    const inFile = this.#m.file.size - (this.#m.offset + offset);
    if (inFile <= 0) throw errnoError('EFAULT', 'read', this.#m.file.path, 'the mapping reaches past the end of the file');
    return Buffer.allocUnsafe(Math.min(BOUNCE_BYTES, length, inFile));
  }
}
