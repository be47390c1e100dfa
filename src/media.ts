// The media: a second copy of the file that stands for the persistence
// domain (pmem behind the cache, or the disk behind the page cache). It is
// written only by writeback, under the entry locks, after the entry was
// write-protected and flushed, so it only ever holds flushed bytes.
//
// Format: a plain file of the same size as the data file (default
// `<path>.media`), so a post-crash image is directly usable; no sidecar.
// Writes go through a shared mapping of it, i.e. into its page cache: they
// survive the process (kill -9, an abort), and on tmpfs they are all there is.
// They do not survive the machine losing power unless the media's own
// filesystem is durable and written back (not modelled: the media *is* the
// model of durable storage).
import { bindShared } from './peers.js';
import { constants as fsConstants } from 'node:fs';
import { EntryTable } from './entry.js';
import { errnoError, rangeError, typeError, udaxError } from './errors.js';
import { native } from './native.js';
import { PAGE_SIZE } from './constants.js';

export type Granularity = 'cache-line' | 'page' | 'byte8';

/** Bytes of a unit that persists as a whole, for a granularity. */
export function unitSizeOf(granularity: unknown, sectorSize: unknown): { granularity: Granularity; unitSize: number } {
  const g = granularity ?? 'cache-line';
  if (g === 'cache-line') {
    if (sectorSize !== undefined) throw typeError('sectorSize applies to granularity \'page\' only');
    return { granularity: g, unitSize: 64 };
  }
  if (g === 'byte8') {
    if (sectorSize !== undefined) throw typeError('sectorSize applies to granularity \'page\' only');
    return { granularity: g, unitSize: 8 };
  }
  if (g === 'page') {
    const s = sectorSize ?? 4096;
    if (typeof s !== 'number' || ![512, 1024, 2048, 4096].includes(s)) {
      throw rangeError(`sectorSize must be 512, 1024, 2048 or 4096, got ${String(s)}`);
    }
    return { granularity: g, unitSize: s };
  }
  throw rangeError(`granularity must be 'cache-line', 'page' or 'byte8', got ${String(g)}`);
}

/** Crash images are built in one buffer; the media keeps to that size. */
export const MAX_MEDIA_SIZE = 2 ** 32;

/** The identity of a file: two paths name the same file when these agree. */
export interface FileIdentity {
  dev: number;
  ino: number;
}

export function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** The media file, mapped shared and writable (untracked: stores to it never
 * fault). Writeback copies into it through native code, under a SIGBUS
 * guard, so a media file truncated underneath is an error, not a crash.
 * Its length follows the data file's (native/resize.cc): a grow grows it at
 * once, a shrink cuts it only at fsync (until then it holds the old bytes a
 * crash could still show). Each thread maps it as long as it knows it. */
export class MediaShadow {
  readonly path: string;
  readonly identity: FileIdentity;
  /** @internal The media file's native open-file id. */
  readonly fileId: number;
  readonly #table: EntryTable;
  #region: number;
  #regionLength: number;
  #closed = false;

  /** Open (creating it) and map the media file: sized like the data file
   * when size is given (the first open sets the model up), else as it is
   * (an open joining the model). Refuses a path that names the data file. */
  constructor(path: string, size: number | undefined, data: FileIdentity) {
    if (size !== undefined && size > MAX_MEDIA_SIZE) throw errnoError('EOPNOTSUPP', 'open', path, `media: 'shadow' supports files up to ${MAX_MEDIA_SIZE} bytes`);
    this.path = path;
    const st = native.fileOpen(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
    this.fileId = st.id;
    try {
      if (!st.isFile) throw errnoError('EINVAL', 'open', path, 'media is not a regular file');
      if (sameFile(st, data)) throw udaxError('ERR_UDAX_SAME_FILE', 'mediaPath names the data file:', { syscall: 'open', path });
      this.identity = { dev: st.dev, ino: st.ino };
      const length = size ?? st.size;
      if (st.size !== length) native.fileTruncate(this.fileId, length);
      const view = bindShared(this.fileId, length, 12, st, path);
      if ('conflict' in view) throw udaxError('ERR_UDAX_ALREADY_OPEN', 'the media file is open in this process as another file:', { syscall: 'open', path });
      this.#table = new EntryTable(view);
      try {
        this.#regionLength = Math.max(this.#table.size, PAGE_SIZE);  // a media cut to 0 still maps
        this.#region = native.mapRegion(this.fileId, this.#table.id, 0, this.#regionLength, true, true, false, false, false, false);
      } catch (e) {
        this.#table.release();
        throw e;
      }
      // Writeback copies through the mapping; only a resize, a remap and a
      // stat need a descriptor, and they open the path again: a file with a
      // media holds one descriptor, not two (thousands of files per process).
      native.fileParkFd(this.fileId);
    } catch (e) {
      native.fileClose(this.fileId);
      throw e;
    }
  }

  /** Bytes of the media file as udax sized it (>= the data file's live and
   * durable sizes). */
  get size(): number {
    return this.#table.size;
  }

  /** @internal The media file's entry table id (its size words). */
  get tableId(): number {
    return this.#table.id;
  }

  /** The native region of the media mapping (writeback copies into it),
   * mapped again when another thread grew the media past it. */
  get region(): number {
    const size = this.#table.size;
    if (size > this.#regionLength) {
      const length = Math.max(size, Math.min(2 * this.#regionLength, this.#table.capacity * PAGE_SIZE));  // room to grow
      const region = native.mapRegion(this.fileId, this.#table.id, 0, length, true, true, false, false, false, false);
      native.unmapRegion(this.#region);
      this.#region = region;
      this.#regionLength = length;
    }
    return this.#region;
  }

  /** Copy bytes [from, to) of the data file (through its region) into the
   * media. Caller holds the entry locks of that range, and those entries are
   * write-protected. */
  copyFrom(dataRegion: number, from: number, to: number): void {
    native.regionCopy(this.region, dataRegion, from, to - from);
  }

  /** Copy the media from offset into target. */
  read(offset: number, target: Uint8Array): void {
    native.regionRead(this.region, offset, target);
  }

  /** The media file's size on disk now (shrunk underneath if < size). */
  currentSize(): number {
    return native.fileStat(this.fileId).size;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native.unmapRegion(this.#region);
    this.#table.release();
    native.fileClose(this.fileId);
  }
}
