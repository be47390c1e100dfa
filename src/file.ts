// DaxFile: the kernel's address_space — one file, its entry table, its
// mappings, and writeback.
import { constants as fsConstants } from 'node:fs';
import { assertNoEntryLocksHeld, EntryTable, DIRTY } from './entry.js';
import { DaxError, errnoError, nativeCall, rangeError, typeError } from './errors.js';
import { flushChoice, type FlushInstruction } from './flush.js';
import { Mapping, type MapOptions, type MappingHandle } from './mapping.js';
import { native, RegionMode } from './native.js';
import { tracker } from './tracker.js';
import * as check from './validate.js';
import { PAGE_SIZE, PMD_SIZE } from './validate.js';
import { writeback, type SyncResult } from './writeback.js';
import {
  attachPersistence, beginSync, closePersistence, DaxHandle, endSync, injectWritebackError, mediaInfo, parsePersistOptions,
  persistHandle, persistStats, withPersistence, type MediaInfo, type PersistHandle, type PersistOptions, type PersistStats,
} from './persist.js';
import type { ErrCursor } from './errseq.js';
import type { InjectOptions } from './inject.js';
import * as crash from './crash.js';

export interface OpenOptions extends PersistOptions {
  /** Extend the file to at least this many bytes (a multiple of 4096). */
  size?: number;
  /** Create the file if it does not exist (then `size` is required). */
  create?: boolean;
  /** Open read-only: shared mappings cannot be written, sync has nothing to do. */
  readOnly?: boolean;
  /** 4096 (PTE entries, the default) or 2 MiB (PMD entries). */
  entrySize?: number;
  /** Permission bits for a created file (default 0o644). */
  mode?: number;
}

/** A serialisable reference to an open DaxFile, for `attach()` in a worker. */
export interface DaxFileHandle {
  readonly path: string;
  readonly tableId: number;
  readonly size: number;
  readonly entrySize: number;
  readonly readOnly: boolean;
  readonly isPmem: boolean;
  /** The persistence model, shared with workers (src/persist.ts). */
  readonly persist?: PersistHandle;
}

export interface DaxStats {
  /** Write faults handled (each re-dirtied an entry). */
  writeFaults: number;
  /** Total time in the fault handler, ns. */
  faultTimeNs: number;
  /** Faults coarsened to a whole 2 MiB block / mapping (VMA budget). */
  coarsenedBlocks: number;
  coarsenedMappings: number;
  syncs: number;
  entriesCleaned: number;
  bytesFlushed: number;
  /** Total time in sync, ns. */
  syncTimeNs: number;
  /** Entries dirtied by prepareWrite. */
  preparedEntries: number;
  /** Syncs udax ran itself because the VMA budget was nearly spent. */
  earlyWritebacks: number;
  /** Entries DIRTY now. */
  dirtyEntries: number;
  /** Media, timing and writeback-error counters (src/persist.ts). */
  persistence: PersistStats;
}

/** ext4, xfs: where a real DAX mount would be; tmpfs: memory. */
const TMPFS_MAGIC = 0x01021994;

export class DaxFile {
  readonly path: string;
  /** Bytes; a multiple of 4096. */
  readonly size: number;
  /** Bytes each entry covers: 4096 or 2 MiB. */
  readonly entrySize: number;
  readonly readOnly: boolean;
  /** True when the file is on a real DAX mount (MAP_SYNC works). */
  readonly isPmem: boolean;
  /** True when the file lives in memory (tmpfs, e.g. /dev/shm). */
  readonly isTmpfs: boolean;
  /** @internal */ readonly table: EntryTable;
  /** @internal */ readonly fallbackSlot: number;
  /** @internal */ readonly fd: number;
  readonly #mappings = new Set<Mapping>();
  #closed = false;

  /** @internal Use open() or attach(). */
  constructor(path: string, fd: number, size: number, table: EntryTable, readOnly: boolean, isPmem: boolean, isTmpfs: boolean) {
    this.path = path;
    this.fd = fd;
    this.size = size;
    this.table = table;
    this.entrySize = 2 ** table.shift;
    this.readOnly = readOnly;
    this.isPmem = isPmem;
    this.isTmpfs = isTmpfs;
    // A read-only view of the whole file: writeback flushes through it the
    // entries no tracked mapping holds (dirtied through one since unmapped).
    this.fallbackSlot = nativeCall(path, () => native.mapRegion(fd, 0, size, true, false, RegionMode.Untracked, table.id, false));
  }

  /** The cache-flush instruction writeback uses in this process. */
  get flushInstruction(): FlushInstruction {
    return flushChoice().instruction;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal Throws EBADF after close. */
  assertOpen(op: string): void {
    if (this.#closed) throw errnoError(9, op, this.path, 'file is closed');
  }

  /** Map [offset, offset+length) of the file (a vma). Shared mappings start
   * write-protected: the first store to each entry faults and dirties it. */
  map(opts?: MapOptions): Mapping {
    this.assertOpen('map');
    const o = check.options<MapOptions>('map options', opts);
    const isPrivate = check.boolean('private', o.private, false);
    const offset = check.pageAligned('offset', check.integer('offset', o.offset ?? 0, 0));
    if (offset >= this.size) {
      throw errnoError(22, 'mmap', this.path, `offset ${offset} is at or past the end of the file (${this.size} bytes)`);
    }
    const length = check.integer('length', o.length ?? this.size - offset, 1);
    if (offset + length > this.size) {
      throw errnoError(22, 'mmap', this.path, `[${offset}, ${offset + length}) is past the end of the file (${this.size} bytes)`);
    }
    const tracked = !isPrivate && !this.readOnly;
    if (tracked) {
      tracker.check(this.path);
      this.writebackIfNearVmaBudget();
    }
    const slot = nativeCall(this.path, () =>
      native.mapRegion(this.fd, offset, length, !isPrivate, !this.readOnly || isPrivate,
        tracked ? RegionMode.Tracked : RegionMode.Untracked, this.table.id, this.isPmem && tracked),
    );
    const mapping = new Mapping(this, slot, offset, length, isPrivate, true);
    this.#mappings.add(mapping);
    return mapping;
  }

  /** In a worker: use a mapping made in another thread, with this thread's
   * own views. The owner alone unmaps it. */
  attachMapping(handle: MappingHandle): Mapping {
    this.assertOpen('attachMapping');
    if (!handle || handle.tableId !== this.table.id) throw typeError('attachMapping: not a mapping of this file');
    const mapping = new Mapping(this, handle.slot, handle.offset, handle.length, handle.private, false);
    this.#mappings.add(mapping);
    return mapping;
  }

  /** @internal */
  forgetMapping(mapping: Mapping): void {
    this.#mappings.delete(mapping);
  }

  /** fsync/msync: write back every entry of [offset, offset+length) that is
   * dirty when the call starts: write-protect it in every shared mapping (of
   * every thread), flush its cache lines, fence, clear DIRTY. Throws a
   * DaxError (e.g. EIO) once for each writeback error since this DaxFile
   * last reported one (it is an open file: see openHandle()). */
  sync(offset?: number, length?: number): SyncResult {
    return this.syncReporting(undefined, offset, length);
  }

  /** @internal sync, reporting writeback errors through cursor (a
   * DaxHandle's) instead of this file's own. */
  syncReporting(cursor: ErrCursor | undefined, offset?: number, length?: number): SyncResult {
    this.assertOpen('sync');
    const r = check.range('sync', offset, length, this.size);
    if (this.readOnly) return { entries: 0, bytes: 0 };
    tracker.check(this.path);
    const { first, last } = this.table.entryRange(r.offset, r.length);
    return endSync(this, writeback(this.table, this.path, first, last, this.fallbackSlot, beginSync(this)), cursor);
  }

  /** @internal Writes the file back early when udax's writable islands
   * have used 3/4 of the VMA budget: write-protecting them merges the VMAs
   * back, before faults have to coarsen. Called where udax has control (map,
   * prepareWrite); stores in a tight loop rely on coarsening instead. */
  writebackIfNearVmaBudget(): void {
    if (!tracker.nearVmaBudget()) return;
    this.sync();
    this.table.addStat('EARLY_WRITEBACKS', 1);
  }

  /** Run fn while holding the entry locks of [offset, offset+length), as a
   * writeback would: stores to those entries from other threads wait. A
   * store from this thread to a locked, write-protected entry aborts the
   * process with a message (it could never proceed). fn must be synchronous. */
  withEntriesLocked<T>(offset: number, length: number, fn: () => T): T {
    this.assertOpen('withEntriesLocked');
    if (typeof fn !== 'function') throw typeError('withEntriesLocked: fn must be a function');
    const r = check.range('withEntriesLocked', offset, length, this.size);
    const { first, last } = this.table.entryRange(r.offset, r.length);
    return this.table.withLocked(first, last, fn);
  }

  /** The dirty parts of the file, as merged [offset, length) ranges. */
  dirtyRanges(): { offset: number; length: number }[] {
    this.assertOpen('dirtyRanges');
    const ranges: { offset: number; length: number }[] = [];
    const size = this.entrySize;
    this.table.forEachMaybeDirty(0, this.table.count - 1, (i) => {
      if (!this.table.isDirty(i)) return;
      const offset = i * size;
      const length = Math.min(size, this.size - offset);
      const lastRange = ranges[ranges.length - 1];
      if (lastRange && lastRange.offset + lastRange.length === offset) lastRange.length += length;
      else ranges.push({ offset, length });
    });
    return ranges;
  }

  stats(): DaxStats {
    this.assertOpen('stats');
    const t = this.table;
    let dirtyEntries = 0;
    t.forEachMaybeDirty(0, t.count - 1, (i) => {
      if (Atomics.load(t.words, i) & DIRTY) dirtyEntries++;
    });
    return {
      writeFaults: t.stat('WRITE_FAULTS'),
      faultTimeNs: t.stat('FAULT_NS'),
      coarsenedBlocks: t.stat('COARSEN_BLOCK'),
      coarsenedMappings: t.stat('COARSEN_MAPPING'),
      syncs: t.stat('SYNCS'),
      entriesCleaned: t.stat('ENTRIES_CLEANED'),
      bytesFlushed: t.stat('BYTES_FLUSHED'),
      syncTimeNs: t.stat('FLUSH_NS'),
      preparedEntries: t.stat('PREPARE_WRITES'),
      earlyWritebacks: t.stat('EARLY_WRITEBACKS'),
      dirtyEntries,
      persistence: persistStats(this),
    };
  }

  /** A plain object to post to a worker, which calls attach() with it. */
  handle(): DaxFileHandle {
    this.assertOpen('handle');
    return {
      path: this.path, tableId: this.table.id, size: this.size, entrySize: this.entrySize,
      readOnly: this.readOnly, isPmem: this.isPmem, persist: persistHandle(this),
    };
  }

  // ---- persistence model: src/persist.ts, src/crash.ts -------------------

  /** Where flushed data goes: 'shadow' media file, 'pmem' (the file), 'none'. */
  get media(): MediaInfo {
    return mediaInfo(this);
  }

  /** Open another handle (fd) on this file: its sync reports each writeback
   * error once, independently of other handles (errseq_t). */
  openHandle(): DaxHandle {
    this.assertOpen('openHandle');
    return new DaxHandle(this);
  }

  /** Make the next writebacks that touch a range fail (see InjectOptions). */
  injectWritebackError(opts: InjectOptions): void {
    injectWritebackError(this, opts);
  }

  /** Write to path the file as a power failure now could leave it. */
  crashImage(path: string, opts?: crash.CrashImageOptions): crash.CrashImageResult {
    return crash.crashImage(this, path, opts);
  }

  /** Enumerate crash states with at most k differing units persisted. */
  crashStates(opts?: crash.CrashStatesOptions): crash.CrashStates {
    return crash.crashStates(this, opts);
  }

  /** Unmap this thread's mappings (views are detached) and close the file.
   * Like the kernel's close, it does not write back: sync first. */
  close(): void {
    if (this.#closed) return;
    assertNoEntryLocksHeld('close', this.path);
    for (const m of [...this.#mappings]) m.unmap();
    closePersistence(this);
    nativeCall(this.path, () => native.unmapRegion(this.fallbackSlot));
    this.#closed = true;
    nativeCall(this.path, () => native.closeFd(this.fd));
  }
}

function statFile(fd: number, path: string) {
  const st = nativeCall(path, () => native.statFd(fd));
  if (!st.isFile) throw errnoError(22, 'open', path, 'not a regular file');
  return st;
}

function openFd(path: string, readOnly: boolean, create: boolean, mode: number): number {
  const flags = (readOnly ? fsConstants.O_RDONLY : fsConstants.O_RDWR) | (create ? fsConstants.O_CREAT : 0);
  return nativeCall(path, () => native.openFile(path, flags, mode));
}

/** Open (or create) a file for DAX-style access. */
export function open(path: string, opts?: OpenOptions): DaxFile {
  if (typeof path !== 'string' || path === '') throw typeError('path must be a non-empty string');
  const o = check.options<OpenOptions>('open options', opts);
  const create = check.boolean('create', o.create, false);
  const readOnly = check.boolean('readOnly', o.readOnly, false);
  const entrySize = o.entrySize ?? PAGE_SIZE;
  if (entrySize !== PAGE_SIZE && entrySize !== PMD_SIZE) {
    throw rangeError(`entrySize must be ${PAGE_SIZE} or ${PMD_SIZE}, got ${String(entrySize)}`);
  }
  const wanted = o.size === undefined ? undefined : check.pageAligned('size', check.integer('size', o.size, 1));
  const mode = check.integer('mode', o.mode ?? 0o644, 0, 0o7777);
  if (create && readOnly) throw typeError('create and readOnly cannot be combined');
  if (create && wanted === undefined) throw typeError('create needs a size');
  const persist = parsePersistOptions(o);
  flushChoice();  // fails early on a bad UDAX_FLUSH
  tracker.ensureInstalled();

  const fd = openFd(path, readOnly, create, mode);
  let file: DaxFile;
  try {
    const st = statFile(fd, path);
    let size = st.size;
    if (wanted !== undefined && size < wanted) {
      if (readOnly) throw errnoError(22, 'ftruncate', path, `file is ${size} bytes, less than size ${wanted}, and readOnly`);
      nativeCall(path, () => native.truncateFd(fd, wanted));
      size = wanted;
    }
    if (size === 0) throw errnoError(22, 'mmap', path, 'file is empty: pass a size');
    if (size % PAGE_SIZE !== 0) throw errnoError(22, 'mmap', path, `file size ${size} is not a multiple of ${PAGE_SIZE}`);
    const shift = Math.log2(entrySize);
    const entries = Math.ceil(size / entrySize);
    if (entries > 0x7fffffff) throw errnoError(27, 'open', path, 'file too large');
    const isPmem = !readOnly && nativeCall(path, () => native.probeMapSync(fd));
    const table = new EntryTable(nativeCall(path, () => native.tableCreate(entries, shift, path)));
    file = new DaxFile(path, fd, size, table, readOnly, isPmem, st.fsType === TMPFS_MAGIC);
  } catch (e) {
    native.closeFd(fd);
    throw e;
  }
  return withPersistence(file, persist);
}

/** In a worker thread: attach to a file another thread opened, sharing its
 * entry table (so stores and syncs on either side see the same tags). */
export function attach(handle: DaxFileHandle): DaxFile {
  if (!handle || typeof handle !== 'object' || typeof handle.tableId !== 'number') {
    throw typeError('attach: expected the result of file.handle()');
  }
  flushChoice();
  tracker.ensureInstalled();
  const fd = openFd(handle.path, handle.readOnly, false, 0);
  let file: DaxFile;
  try {
    const st = statFile(fd, handle.path);
    if (st.size < handle.size) throw errnoError(22, 'attach', handle.path, 'file shrank since it was opened');
    const table = new EntryTable(nativeCall(handle.path, () => native.tableAttach(handle.tableId)));
    file = new DaxFile(handle.path, fd, handle.size, table, handle.readOnly, handle.isPmem, st.fsType === TMPFS_MAGIC);
  } catch (e) {
    native.closeFd(fd);
    throw e;
  }
  return attachPersistence(file, handle.persist);
}

export { DaxError };
