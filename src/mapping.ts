// Mapping: one mapping of a DaxFile into the process (the kernel's vma).
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { errnoError, nativeCall, rangeError } from './errors.js';
import type { DaxFile } from './file.js';
import { assertNoEntryLocksHeld } from './entry.js';
import { native } from './native.js';
import { tracker } from './tracker.js';
import * as check from './validate.js';

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
  readonly tableId: number;
  readonly slot: number;
  readonly offset: number;
  readonly length: number;
  readonly private: boolean;
}

/** The largest single view: V8's typed-array limit on 64-bit. */
const MAX_BUFFER = 2 ** 32;
/** Larger mappings are reached through overlapping windows: one buffer per
 * WINDOW_STRIDE, each WINDOW_LENGTH long, so any view up to a stride fits. */
const WINDOW_STRIDE = 2 ** 30;
const WINDOW_LENGTH = 2 ** 31;

interface Window {
  buffer: ArrayBuffer;
  hold: object;
}

export class Mapping {
  readonly file: DaxFile;
  /** File offset of the first byte. */
  readonly offset: number;
  readonly length: number;
  readonly private: boolean;
  /** @internal */ readonly slot: number;
  readonly #owner: boolean;
  readonly #windows = new Map<number, Window>();
  #bytes: Uint8Array | undefined;
  #unmapped = false;

  /** @internal Use file.map(). */
  constructor(file: DaxFile, slot: number, offset: number, length: number, isPrivate: boolean, owner: boolean) {
    this.file = file;
    this.slot = slot;
    this.offset = offset;
    this.length = length;
    this.private = isPrivate;
    this.#owner = owner;
  }

  get unmapped(): boolean {
    return this.#unmapped;
  }

  #assertMapped(op: string): void {
    if (this.#unmapped) throw errnoError(9, op, this.file.path, 'mapping is unmapped');
    this.file.assertOpen(op);
  }

  /** This thread's buffer for window k (the whole mapping when it fits). */
  #window(k: number): Window {
    let w = this.#windows.get(k);
    if (!w) {
      const start = k * WINDOW_STRIDE;
      const length = this.length <= MAX_BUFFER ? this.length : Math.min(WINDOW_LENGTH, this.length - start);
      w = nativeCall(this.file.path, () => native.regionView(this.slot, start, length, 0));
      this.#windows.set(k, w);
    }
    return w;
  }

  /** The whole mapping as bytes (mappings up to 4 GiB; use view() beyond). */
  get bytes(): Uint8Array {
    this.#assertMapped('bytes');
    if (this.length > MAX_BUFFER) {
      throw rangeError(`mapping is ${this.length} bytes; views are at most ${MAX_BUFFER}: use view(offset, length)`);
    }
    this.#bytes ??= new Uint8Array(this.#window(0).buffer);
    return this.#bytes;
  }

  /** Bytes [offset, offset+length) of the mapping (offsets relative to it).
   * In mappings over 4 GiB a view may not cross a 1 GiB boundary unless it
   * fits in the 2 GiB window that starts there. */
  view(offset?: number, length?: number): Uint8Array {
    this.#assertMapped('view');
    const r = check.range('view', offset, length, this.length);
    if (this.length <= MAX_BUFFER) return new Uint8Array(this.#window(0).buffer, r.offset, r.length);
    const k = Math.floor(r.offset / WINDOW_STRIDE);
    const start = k * WINDOW_STRIDE;
    if (r.offset + r.length > start + WINDOW_LENGTH) {
      throw rangeError(`view [${r.offset}, ${r.offset + r.length}) spans more than one ${WINDOW_LENGTH}-byte window`);
    }
    return new Uint8Array(this.#window(k).buffer, r.offset - start, r.length);
  }

  /** Make [offset, offset+length) writable and dirty without a fault, for
   * writes the fault handler never sees: system calls (fs.readSync into a
   * view, async reads) get EFAULT on write-protected pages instead of a
   * signal. Lock ascending -> DIRTY -> unprotect -> unlock, like a fault.
   * A later sync write-protects the range again. */
  prepareWrite(offset?: number, length?: number): void {
    this.#assertMapped('prepareWrite');
    const r = check.range('prepareWrite', offset, length, this.length);
    if (this.private) return;
    if (this.file.readOnly) throw errnoError(13, 'mprotect', this.file.path, 'file was opened readOnly');
    tracker.check(this.file.path);
    this.file.writebackIfNearVmaBudget();
    const table = this.file.table;
    const { first, last } = table.entryRange(this.offset + r.offset, r.length);
    let err = this.#dirtyAndUnprotect(first, last);
    if (err === 12) {
      // ENOMEM: the VMA budget is spent. Write back early (re-protecting
      // merges the islands), then try once more.
      this.file.sync();
      err = this.#dirtyAndUnprotect(first, last);
    }
    if (err !== 0) throw errnoError(err, 'mprotect', this.file.path);
    table.addStat('PREPARE_WRITES', last - first + 1);
  }

  /** The fault path for a range: lock -> DIRTY -> unprotect -> unlock. */
  #dirtyAndUnprotect(first: number, last: number): number {
    const table = this.file.table;
    return table.withLocked(first, last, () => {
      for (let i = first; i <= last; i++) table.setDirty(i);
      return native.regionProtect(this.slot, first, last, true);
    });
  }

  /** Read up to length bytes of fd at position into the mapping at offset,
   * with prepareWrite first (a plain read would fail with EFAULT). Returns
   * the bytes read (fewer at end of file). */
  readFromFile(fd: number, position: number, offset: number, length: number): number {
    const r = check.range('readFromFile', offset, length, this.length);
    check.integer('position', position, 0);
    let done = 0;
    while (done < r.length) {
      const view = this.view(r.offset + done, r.length - done);
      this.prepareWrite(r.offset + done, r.length - done);
      const n = readSync(fd, view, 0, view.length, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /** The async form of readFromFile. While the read is in flight a sync on
   * another thread may write-protect the range again; a short read or EFAULT
   * then makes it prepare the rest and go on. */
  async readFromFileAsync(handle: FileHandle, position: number, offset: number, length: number): Promise<number> {
    const r = check.range('readFromFileAsync', offset, length, this.length);
    check.integer('position', position, 0);
    let done = 0;
    let efaults = 0;
    while (done < r.length) {
      const view = this.view(r.offset + done, r.length - done);
      this.prepareWrite(r.offset + done, r.length - done);
      let n: number;
      try {
        ({ bytesRead: n } = await handle.read(view, 0, view.length, position + done));
      } catch (e) {
        if ((e as { code?: string }).code !== 'EFAULT' || ++efaults > 100) throw e;
        continue;
      }
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /** A plain object to post to a worker (see DaxFile.attachMapping). */
  handle(): MappingHandle {
    this.#assertMapped('handle');
    return { tableId: this.file.table.id, slot: this.slot, offset: this.offset, length: this.length, private: this.private };
  }

  /** Unmap (the owner) or release (an attached mapping). This thread's views
   * are detached: indexed stores to them are dropped, reads give undefined.
   * Views in other threads are not: touching one kills the process with a
   * message naming the file, and never reaches another file's memory. */
  unmap(): void {
    if (this.#unmapped) return;
    assertNoEntryLocksHeld('unmap', this.file.path);
    this.#unmapped = true;
    for (const w of this.#windows.values()) native.detachView(w.buffer, w.hold);
    this.#windows.clear();
    this.#bytes = undefined;
    if (this.#owner) nativeCall(this.file.path, () => native.unmapRegion(this.slot));
    this.file.forgetMapping(this);
  }
}
