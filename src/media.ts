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
import { constants as fsConstants } from 'node:fs';
import { errnoError, nativeCall, rangeError, typeError } from './errors.js';
import { native, RegionMode } from './native.js';

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

/** Views are capped at 4 GiB; the media keeps one view of each file. */
export const MAX_MEDIA_SIZE = 2 ** 32;

/** The media file, mapped shared and writable (untracked: stores to it never fault). */
export class MediaShadow {
  readonly path: string;
  readonly size: number;
  readonly bytes: Uint8Array;
  readonly #fd: number;
  readonly #slot: number;
  readonly #view: { buffer: ArrayBuffer; hold: object };
  #closed = false;

  /** Open (creating it, sized like the data file) and map the media file. */
  constructor(path: string, size: number, tableId: number) {
    if (size > MAX_MEDIA_SIZE) throw errnoError(95, 'open', path, `media: 'shadow' supports files up to ${MAX_MEDIA_SIZE} bytes`);
    this.path = path;
    this.size = size;
    this.#fd = nativeCall(path, () => native.openFile(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644));
    try {
      const st = nativeCall(path, () => native.statFd(this.#fd));
      if (!st.isFile) throw errnoError(22, 'open', path, 'media is not a regular file');
      if (st.size !== size) nativeCall(path, () => native.truncateFd(this.#fd, size));
      this.#slot = nativeCall(path, () => native.mapRegion(this.#fd, 0, size, true, true, RegionMode.Untracked, tableId, false));
    } catch (e) {
      native.closeFd(this.#fd);
      throw e;
    }
    this.#view = nativeCall(path, () => native.regionView(this.#slot, 0, size, 0));
    this.bytes = new Uint8Array(this.#view.buffer);
  }

  /** Copy bytes [from, to) of live into the media. Caller holds the entry
   * locks of that range, and those entries are write-protected. */
  copy(live: Uint8Array, from: number, to: number): void {
    this.bytes.set(live.subarray(from, to), from);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native.detachView(this.#view.buffer, this.#view.hold);
    nativeCall(this.path, () => native.unmapRegion(this.#slot));
    nativeCall(this.path, () => native.closeFd(this.#fd));
  }
}
