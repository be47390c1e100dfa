// DaxFile: an open file (the kernel's struct file) and, through its entry
// table, the file's address_space: its mappings, writeback and persistence.
// Every open of one file in the process (any spelling: the same device and
// inode) shares one entry table and one persistence model.
import { constants as fsConstants, statSync, unlinkSync } from 'node:fs';
import { assertNoEntryLocksHeld, EntryTable, STAT_NAMES, type StatName } from './entry.js';
import { argValueError, errnoError, rangeError, typeError, udaxError } from './errors.js';
import { flushChoice, type FlushInstruction } from './flush.js';
import { Mapping, type MapOptions, type MappingHandle } from './mapping.js';
import { native, type FileStat } from './native.js';
import { DaxHandle } from './handle.js';
import { chooseScan, type ScanPolicy } from './scan.js';
import { claimTracker, resolveTracker, scanPolicyOfTable, trackerOfTable, trackerOption, type FaultTracker, type TrackerName, type TrackerOption } from './tracker.js';
import * as check from './validate.js';
import { PAGE_SIZE, PMD_SIZE, TMPFS_MAGIC } from './constants.js';
import { writeback, type SyncResult } from './writeback.js';
import { bindShared, checkPeers } from './peers.js';
import { parsePersistOptions, Persistence, type MediaInfo, type PersistOptions, type PersistStats } from './persist.js';
import type { ErrCursor } from './errseq.js';
import type { FileIdentity } from './media.js';
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
  /** Allocate the bytes a create or extension adds (posix_fallocate), so no
   * later store can meet a full file system (default false: sparse, with
   * ENOSPC at open when the file system has less free space than that). */
  allocate?: boolean;
  /** How stores are found (src/tracker.ts): 'async' (userfaultfd WP_ASYNC,
   * ~1 µs a fault, no fault hook), 'sigsegv' (SIGSEGV + mprotect, the
   * kernel's fault protocol), 'sigbus' (userfaultfd write-protect + SIGBUS:
   * the same protocol, no VMA splitting; tmpfs only), or 'auto' (the
   * default, or UDAX_TRACKER): async when this process's self-test passes,
   * else sigbus for a tmpfs file when its self-test passes, else sigsegv. A
   * file runs the tracker its first open chose; asking another throws. */
  tracker?: TrackerOption;
}

/** A serialisable reference to an open DaxFile, for `attach()` in a worker:
 * the same open file, used from another thread. */
export interface DaxFileHandle {
  readonly path: string;
  readonly file: number;
  readonly inode: number;
  /** The size when handle() ran (the attached file's size is live). */
  readonly size: number;
  readonly entrySize: number;
  readonly readOnly: boolean;
  readonly isPmem: boolean;
}

/** Counters of the file (of every open of it), from native/entry.h, plus: */
export type DaxStats = { readonly [K in StatName]: number } & {
  /** Entries DIRTY now. */
  dirtyEntries: number;
  /** Media, timing and writeback-error counters (src/persist.ts). */
  persistence: PersistStats;
};

/** What a DaxFile is made of: the open file, its table, its identity. */
interface Parts {
  path: string;
  file: number;
  table: EntryTable;
  stat: FileStat;
  readOnly: boolean;
  isPmem: boolean;
  owner: boolean;
  tracker: FaultTracker;
}

export class DaxFile {
  readonly path: string;
  /** Bytes each entry covers: 4096 or 2 MiB. */
  readonly entrySize: number;
  readonly readOnly: boolean;
  /** True when the file is on a real DAX mount (MAP_SYNC works). */
  readonly isPmem: boolean;
  /** True when the file lives in memory (tmpfs, e.g. /dev/shm). */
  readonly isTmpfs: boolean;
  /** The fault tracker the file runs: 'async', 'sigbus' or 'sigsegv'. */
  readonly tracker: TrackerName;
  /** How the async tracker scans for written pages (src/scan.ts): 'armed'
   * or 'populated'; undefined for the other trackers. */
  readonly scanPolicy: ScanPolicy | undefined;
  /** @internal */ readonly faultTracker: FaultTracker;
  /** @internal */ readonly identity: FileIdentity;
  /** @internal */ readonly table: EntryTable;
  /** @internal The native open-file id. */ readonly fileId: number;
  readonly #owner: boolean;
  /** A read-only mapping of the whole file (in whole entries), mapped again
   * when the file grows past it (see refresh). */
  #fallback: number;
  #fallbackLength: number;
  /** The table's resize count #refresh last acted on. */
  #resizesSeen: number;
  readonly #mappings = new Set<Mapping>();
  readonly #persistence: Persistence;
  readonly #cursor: ErrCursor;
  #closed = false;

  /** @internal Use open() or attach(). */
  constructor(parts: Parts, persist: ReturnType<typeof parsePersistOptions> | undefined) {
    this.path = parts.path;
    this.fileId = parts.file;
    this.table = parts.table;
    this.entrySize = 2 ** parts.table.shift;
    this.readOnly = parts.readOnly;
    this.isPmem = parts.isPmem;
    this.isTmpfs = parts.stat.fsType === TMPFS_MAGIC;
    this.identity = { dev: parts.stat.dev, ino: parts.stat.ino };
    this.#owner = parts.owner;
    this.faultTracker = parts.tracker;
    this.tracker = parts.tracker.name;
    this.scanPolicy = this.tracker === 'async' ? scanPolicyOfTable(parts.table) : undefined;
    this.#resizesSeen = this.table.resizes;
    this.#fallbackLength = this.#wholeEntries(this.size);
    this.#fallback = native.mapRegion(this.fileId, this.table.id, 0, this.#fallbackLength, true, false, false, false, false, false);
    try {
      this.#persistence = new Persistence(this, persist);
    } catch (e) {
      native.unmapRegion(this.#fallback);
      throw e;
    }
    this.#cursor = this.#persistence.cursor();
  }

  /** Bytes; a multiple of 4096. The live size, shared by every open of the
   * file in every thread: resize() here or anywhere changes it. */
  get size(): number {
    return this.table.size;
  }

  /** The size a crash now would leave: the size at the last sync() of the
   * whole file (fsync). Sizes are metadata; see resize(). */
  get durableSize(): number {
    return this.table.durableSize;
  }

  /** @internal A read-only mapping of the whole file: writeback flushes
   * through it the entries no tracked mapping holds (dirtied through one
   * since unmapped), and the media copies from it. */
  get fallbackRegion(): number {
    return this.#fallback;
  }

  #wholeEntries(bytes: number): number {
    return Math.max(this.entrySize, Math.ceil(bytes / this.entrySize) * this.entrySize);
  }

  /** @internal Catch up with a resize made by any thread: map the fallback
   * again when the file grew past it, with room to grow (a shrink keeps it:
   * pages past EOF are only read under a SIGBUS guard), and at least over
   * [0, atLeast): another process may resize between this and the caller's
   * use, so a caller names the range it will flush. Entry points that use
   * the fallback or the media call this; the store path never does. Caller
   * holds no entry lock of this file (unmapping waits for nothing, but
   * stays simple). */
  refresh(atLeast = 0): void {
    const resizes = this.table.resizes;
    if (resizes === this.#resizesSeen && atLeast <= this.#fallbackLength) return;
    const size = this.#wholeEntries(Math.max(this.size, atLeast));
    if (size > this.#fallbackLength) {
      // Doubling (mapping past EOF is allowed) keeps a file that grows a page
      // at a time from remapping at every grow.
      const wanted = Math.max(size, Math.min(2 * this.#fallbackLength, this.table.capacity * this.entrySize));
      let region: number;
      try {
        region = native.mapRegion(this.fileId, this.table.id, 0, wanted, true, false, false, false, false, false);
      } catch (e) {
        if ((e as { code?: string }).code === 'EINVAL') return;  // past the table's capacity: the caller's range check says so
        throw e;
      }
      native.unmapRegion(this.#fallback);
      this.#fallback = region;
      this.#fallbackLength = wanted;
    }
    this.#resizesSeen = resizes;
  }

  /** The cache-flush instruction writeback uses in this process. */
  get flushInstruction(): FlushInstruction {
    return flushChoice().instruction;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal EBADF after close (here, or by the thread that opened it). */
  assertOpen(syscall: string): void {
    if (this.#closed) throw errnoError('EBADF', syscall, this.path, 'file is closed');
    if (!this.#owner && !native.fileIsOpen(this.fileId)) {
      throw errnoError('EBADF', syscall, this.path, 'file was closed by the thread that opened it');
    }
  }

  /** @internal */
  get persistence(): Persistence {
    this.assertOpen('open');
    return this.#persistence;
  }

  /** Map [offset, offset+length) of the file (a vma). Shared mappings start
   * write-protected: the first store to each entry faults and dirties it
   * (sigsegv), or is recorded by the kernel and harvested by the next
   * writeback (async). */
  map(opts?: MapOptions): Mapping {
    this.assertOpen('mmap');
    const o = check.options<MapOptions>('map options', opts);
    const isPrivate = check.boolean('private', o.private, false);
    const offset = check.pageAligned('offset', check.integer('offset', o.offset ?? 0, 0));
    if (offset >= this.size) {
      throw errnoError('EINVAL', 'mmap', this.path, `offset ${offset} is at or past the end of the file (${this.size} bytes)`);
    }
    const length = check.integer('length', o.length ?? this.size - offset, 1);
    if (offset + length > this.size) {
      throw errnoError('EINVAL', 'mmap', this.path, `[${offset}, ${offset + length}) is past the end of the file (${this.size} bytes)`);
    }
    const tracked = !isPrivate && !this.readOnly;
    if (tracked) {
      this.faultTracker.check(this.path);
      this.writebackIfTrackerAsks();
    }
    return this.mapRange(offset, length, isPrivate, tracked);
  }

  /** @internal A checked range as a mapping: private (copy-on-write),
   * tracked (shared, write-protected, faults dirty entries), or shared and
   * untracked (read-only files; the benchmark's raw baselines). */
  mapRange(offset: number, length: number, isPrivate: boolean, tracked: boolean, tracker: FaultTracker = this.faultTracker): Mapping {
    const writable = isPrivate || !this.readOnly;
    const region = native.mapRegion(this.fileId, this.table.id, offset, length, !isPrivate, writable, tracked,
      this.isPmem && tracked, tracked && tracker.name === 'async', tracked && tracker.name === 'sigbus');
    return this.#add(new Mapping(this, region, offset, length, isPrivate, tracked, true));
  }

  /** In a worker: use a mapping made in another thread, with this thread's
   * own views. The owner alone unmaps it. */
  attachMapping(handle: MappingHandle): Mapping {
    this.assertOpen('mmap');
    const h = checkMappingHandle(handle);
    if (h.inode !== this.table.id) throw errnoError('EBADF', 'mmap', this.path, 'not a mapping of this file');
    const info = native.regionInfo(h.region);  // EBADF once unmapped
    if (info.inode !== this.table.id || info.fileOffset !== h.offset || info.length !== h.length) {
      throw errnoError('EBADF', 'mmap', this.path, 'not a mapping of this file');
    }
    return this.#add(new Mapping(this, h.region, h.offset, h.length, h.private, info.tracked, false));
  }

  #add(mapping: Mapping): Mapping {
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
   * last reported one (it is an open file: see openHandle()).
   * `sync()` of the whole file (no arguments) is fsync: it also makes the
   * file's size durable (after its data). A range sync is msync /
   * sync_file_range: data only, the size stays as durable as it was. */
  sync(offset?: number, length?: number): SyncResult {
    return this.syncReporting(this.#cursor, offset, length);
  }

  /** @internal sync, reporting writeback errors through cursor (this file's
   * own, or a DaxHandle's). */
  syncReporting(cursor: ErrCursor, offset?: number, length?: number): SyncResult {
    this.assertOpen('fsync');
    const whole = offset === undefined && length === undefined;
    const size = this.size;
    const r = whole ? { offset: 0, length: size } : check.range('sync', offset, length, size);
    const result = r.length > 0 ? this.#writeback(r.offset, r.length) : { entries: 0, bytes: 0 };
    this.#persistence.report(cursor);
    if (whole && !this.readOnly) this.#persistence.syncSize();
    return result;
  }

  /** @internal fsync's size step alone: the live size becomes durable (a
   * journal commit by another fsync carried the size change; src/volume.ts). */
  syncSize(): void {
    this.assertOpen('fsync');
    if (!this.readOnly) this.#persistence.syncSize();
  }

  /** Writeback (dax_writeback_mapping_range): records errors, never reports
   * them. Only sync reports, through the syncing handle's cursor. */
  #writeback(offset: number, length: number): SyncResult {
    if (this.readOnly) return { entries: 0, bytes: 0 };
    this.faultTracker.check(this.path);
    const { first, last } = this.table.entryRange(offset, length);
    this.refresh((last + 1) * this.entrySize);
    this.harvest(first, last);  // the range only: the rest keeps its written bits
    return writeback(this.table, first, last, this.fallbackRegion, this.#persistence.beginWriteback());
  }

  /** @internal Write the whole file back, reporting nothing (udax's own
   * writebacks: near the VMA budget, before a retry). */
  writebackAll(): void {
    const size = this.size;
    if (size > 0) this.#writeback(0, size);
  }

  /** @internal Writes the file back early when the tracker asks (udax's
   * writable islands have used 3/4 of the VMA budget: write-protecting them
   * merges the VMAs back, before faults have to coarsen). Called where udax
   * has control (map, prepareWrite); stores in a tight loop rely on
   * coarsening instead. */
  writebackIfTrackerAsks(): void {
    if (!this.faultTracker.wantsEarlyWriteback()) return;
    this.writebackAll();
    this.table.addStat('earlyWritebacks', 1);
  }

  /** The DAX write path (dax_iomap_rw): copy bytes to the file at position,
   * flush their cache lines and fence, so they are durable when this returns
   * — with no mapping, no fault and no dirty entry. Stores made through
   * mappings to the same entries stay dirty (their other bytes are still in
   * the cache). Holds the entry locks of the range, as writeback does.
   * Returns the bytes written. A write past the end grows the file first, as
   * pwrite does — to the next multiple of 4096 (udax files are whole pages)
   * — and the new size is durable at the next sync() of the whole file
   * (fsync), like any size change. */
  write(data: ArrayBufferView, position: number): number {
    return this.#write(data, position, false);
  }

  /** @internal write for the volume that owns the file's size (src/volume.ts
   * records the size change). */
  ownerWrite(data: ArrayBufferView, position: number): number {
    return this.#write(data, position, true);
  }

  #write(data: ArrayBufferView, position: number, owner: boolean): number {
    this.assertOpen('pwrite');
    const bytes = byteView('write: data', data);
    check.integer('position', position, 0);
    if (this.readOnly) throw errnoError('EBADF', 'pwrite', this.path, 'file was opened readOnly');
    if (bytes.length === 0) return 0;
    const end = position + bytes.length;
    check.integer('write end', end, 1);
    const { first, last } = this.table.entryRange(position, bytes.length);
    for (;;) {
      const size = this.size;
      let grownFrom: number | undefined;
      let grownTo = 0;
      if (end > size) {
        if (!owner) this.#assertSizeNotOwned('pwrite');
        assertNoEntryLocksHeld('pwrite', this.path);
        // Only from the size seen: a grow by another thread or process
        // meanwhile is never cut back to this end (round again instead).
        grownTo = Math.ceil(end / PAGE_SIZE) * PAGE_SIZE;
        if (!this.#resizeTo(grownTo, size)) continue;
        grownFrom = size;
      }
      this.refresh(end);  // even if another process shrinks it meanwhile and grows it again
      try {
        const n = this.table.withLocked(first, last, () => {
          // Under the locks no shrink can cut [position, end) (it would need
          // them); one that came first sends us round again.
          if (end > this.size) return -1;
          const n = native.filePwrite(this.fileId, bytes, position);
          native.regionFlush(this.fallbackRegion, position, n);
          this.#persistence.written(position, position + n);
          return n;
        });
        if (n >= 0) return n;
      } catch (e) {
        // The write failed: a grow it made is undone (nothing changed).
        if (grownFrom !== undefined) {
          try { this.#resizeTo(grownFrom, grownTo); } catch { /* the write's error matters more */ }
        }
        throw e;
      }
    }
  }

  /** Read bytes of the file at position into data (what any reader of the
   * file sees: the live bytes, synced or not). Returns the bytes read, fewer
   * at the end of the file. */
  read(data: ArrayBufferView, position: number): number {
    this.assertOpen('pread');
    const bytes = byteView('read: data', data);
    check.integer('position', position, 0);
    const size = this.size;
    if (bytes.length === 0 || position >= size) return 0;
    return native.filePread(this.fileId, bytes.subarray(0, Math.min(bytes.length, size - position)), position);
  }

  /** Grow or shrink the file to newSize bytes (a multiple of 4096; 0 is
   * allowed), as ftruncate does on a DAX file system, for every open of the
   * file in every thread:
   * - shrink: entries past the new end are dropped, dirty or not (their data
   *   is gone, never written back); mappings keep their length, and pages
   *   wholly past the end are not backed: touching one is SIGBUS, as on a
   *   real DAX file (udax's own calls give typed errors or skip them);
   * - grow: new pages read as zeros, their entries start clean; mappings
   *   reaching past the old end see the new pages (valid again, zero-filled).
   * The size is metadata: durable at the next sync() of the whole file
   * (fsync; a range sync does not make it durable). Until then a crash image
   * shows the old durable size (a grow: the old bytes only; a shrink: the old
   * length with the old bytes). The media file grows with the file and is
   * cut at that fsync.
   * Errors change nothing: TypeError/RangeError for a bad size; EBADF when
   * the file is closed or readOnly; ENOSPC when the growth exceeds the free
   * space (as open checks); EFBIG past the entry table's reservation (the
   * larger of the open size and 64 GiB); ERR_UDAX_MAPPED_PAST_END when a
   * live mapping of the file (any thread) starts past newSize; ERR_UDAX_DEADLOCK
   * inside withEntriesLocked; ERR_UDAX_VOLUME_FILE for a volume's file (and a
   * write past its end): its VolumeFile resizes it, recording the change. */
  resize(newSize: number): void {
    this.#resize(newSize, false);
  }

  /** @internal resize for the volume that owns the file's size. */
  ownerResize(newSize: number): void {
    this.#resize(newSize, true);
  }

  #resize(newSize: number, owner: boolean): void {
    this.assertOpen('ftruncate');
    check.pageAligned('size', check.integer('size', newSize, 0));
    if (this.readOnly) throw errnoError('EBADF', 'ftruncate', this.path, 'file was opened readOnly');
    if (!owner) this.#assertSizeNotOwned('ftruncate');
    assertNoEntryLocksHeld('ftruncate', this.path);
    this.#resizeTo(newSize);
  }

  /** A volume's file changes size only through the volume, which records
   * the change as a pending operation (an open of it elsewhere, or a worker's
   * attach, could not). */
  #assertSizeNotOwned(syscall: string): void {
    if (this.#persistence.sizeOwned) {
      throw udaxError('ERR_UDAX_VOLUME_FILE',
        'the file belongs to a volume, which records its size changes: resize it, or write past its end, through its VolumeFile (vf.resize, vf.write):', { syscall, path: this.path });
    }
  }

  /** resize with checked arguments; with ifSize, only if the live size is
   * ifSize when the resize runs (another thread or process may resize
   * meanwhile). Returns whether it ran. */
  #resizeTo(newSize: number, ifSize?: number): boolean {
    const old = this.size;
    if (ifSize !== undefined && old !== ifSize) return false;
    if (newSize === old) return true;
    const limit = this.table.capacity * this.entrySize;
    if (newSize > limit) {
      throw errnoError('EFBIG', 'ftruncate', this.path,
        `${newSize} bytes is past what the file's entry table reserves (${limit} bytes: the larger of its size at its first open and ${native.constants.TABLE_RESERVE_BYTES}, fixed while any process has it open); close every open of it in every process and reopen with size`);
    }
    if (newSize > old) {
      const st = native.fileStat(this.fileId);
      if (newSize - st.size > st.freeBytes) {
        throw errnoError('ENOSPC', 'ftruncate', this.path,
          `${newSize - st.size} more bytes do not fit: the file system has ${st.freeBytes} free (a store past that would die of SIGBUS)`);
      }
    }
    const media = this.#persistence.media;
    let ran: boolean;
    try {
      ran = native.inodeResize(this.fileId, this.table.id, newSize, media?.fileId ?? -1, media?.tableId ?? -1, ifSize ?? -1);
    } catch (e) {
      if ((e as { code?: string }).code !== 'EBUSY') throw e;
      throw udaxError('ERR_UDAX_MAPPED_PAST_END',
        `a live mapping of the file in this process starts past ${newSize} bytes (unmap it first; nothing was resized):`, { syscall: 'ftruncate', path: this.path });
    }
    this.refresh();
    return ran;
  }

  /** Run fn while holding the entry locks of [offset, offset+length), as a
   * writeback would: stores to those entries from other threads wait. A
   * store from this thread to a locked, write-protected entry aborts the
   * process with a message (it could never proceed). fn must be synchronous.
   * With the async tracker there is no fault hook: stores from other
   * threads go on, and the next writeback's harvest finds them. */
  withEntriesLocked<T>(offset: number, length: number, fn: () => T): T {
    this.assertOpen('futex');
    if (typeof fn !== 'function') throw typeError('withEntriesLocked: fn must be a function');
    const r = check.range('withEntriesLocked', offset, length, this.size);
    const { first, last } = this.table.entryRange(r.offset, r.length);
    return this.table.withLocked(first, last, fn);
  }

  /** @internal DIRTY the entries the tracker recorded as written and not
   * yet in the table (async: a harvest; sigsegv: nothing to do). Whatever
   * reports dirt runs it first, readOnly opens too: the written pages it
   * finds may be another open's or another process's (a read-only checker's
   * crash states would miss them otherwise). */
  harvest(first = 0, last = this.table.count - 1): void {
    if (first <= last) this.faultTracker.harvest(this.table, first, last);
  }

  /** The dirty parts of the file, as merged [offset, length) ranges. */
  dirtyRanges(): { offset: number; length: number }[] {
    this.assertOpen('msync');
    this.harvest();
    const ranges: { offset: number; length: number }[] = [];
    const size = this.entrySize;
    const fileSize = this.size;
    this.table.forEachMaybeDirty(0, Math.ceil(fileSize / size) - 1, (i) => {
      if (!this.table.isDirty(i)) return;
      const offset = i * size;
      const length = Math.min(size, fileSize - offset);
      const lastRange = ranges[ranges.length - 1];
      if (lastRange && lastRange.offset + lastRange.length === offset) lastRange.length += length;
      else ranges.push({ offset, length });
    });
    return ranges;
  }

  stats(): DaxStats {
    this.assertOpen('fstat');
    this.harvest();  // dirtyEntries counts what the kernel recorded too
    const counters = Object.fromEntries(STAT_NAMES.map((name) => [name, this.table.stat(name)])) as { [K in StatName]: number };
    return { ...counters, dirtyEntries: this.table.dirtyCount(), persistence: this.#persistence.statsSnapshot() };
  }

  /** A plain object to post to a worker, which calls attach() with it. */
  handle(): DaxFileHandle {
    this.assertOpen('open');
    return {
      path: this.path, file: this.fileId, inode: this.table.id, size: this.size, entrySize: this.entrySize,
      readOnly: this.readOnly, isPmem: this.isPmem,
    };
  }

  // ---- persistence model: src/persist.ts, src/crash.ts -------------------

  /** Where flushed data goes: 'shadow' media file, 'pmem' (the file), 'none'. */
  get media(): MediaInfo {
    return this.persistence.info();
  }

  /** Open another handle (fd) on this file: its sync reports each writeback
   * error once, independently of other handles (errseq_t). */
  openHandle(): DaxHandle {
    return new DaxHandle(this, this.persistence.cursor());
  }

  /** Make the next writebacks that touch a range fail (see InjectOptions). */
  injectWritebackError(opts: InjectOptions): void {
    this.assertOpen('fsync');
    if (this.readOnly) throw errnoError('EINVAL', 'fsync', this.path, 'file is readOnly');
    this.#persistence.inject(opts);
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
   * Like the kernel's close, it does not write back: sync first. The file's
   * slots are given back at once. Closing in the thread that opened the file
   * closes it for every thread (their calls then throw EBADF). */
  close(): void {
    if (this.#closed) return;
    assertNoEntryLocksHeld('close', this.path);
    for (const m of [...this.#mappings]) m.unmap();
    this.#closed = true;
    this.#persistence.close();
    native.unmapRegion(this.#fallback);
    this.table.release();
    if (this.#owner) native.fileClose(this.fileId);
  }

  /** `using file = open(...)` closes at the end of the block. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** The bytes of a Buffer, typed array or DataView. */
function byteView(name: string, data: unknown): Uint8Array {
  if (!ArrayBuffer.isView(data)) throw typeError(`${name} must be a Buffer, TypedArray or DataView`);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** A path argument: a non-empty string without NUL bytes (as node:fs). */
export function checkPath(name: string, path: unknown): string {
  if (typeof path !== 'string' || path === '') throw typeError(`${name} must be a non-empty string`);
  if (path.includes('\0')) throw argValueError(`${name} must be a string without null bytes, got ${JSON.stringify(path)}`);
  return path;
}

function checkMappingHandle(handle: unknown): MappingHandle {
  const h = handle as Partial<MappingHandle> | null;
  if (!h || typeof h !== 'object') throw typeError('attachMapping: expected the result of mapping.handle()');
  for (const key of ['inode', 'region'] as const) check.integer(`mapping handle ${key}`, h[key], 0, 0x7fffffff);
  for (const key of ['offset', 'length'] as const) check.integer(`mapping handle ${key}`, h[key], 0);
  if (typeof h.private !== 'boolean') throw typeError('mapping handle private must be a boolean');
  return h as MappingHandle;
}

/** Open (or create) a file for DAX-style access. A call that fails leaves
 * the file as it was (a file it created is removed again). */
export function open(path: string, opts?: OpenOptions): DaxFile {
  checkPath('path', path);
  const o = check.options<OpenOptions>('open options', opts);
  const create = check.boolean('create', o.create, false);
  const readOnly = check.boolean('readOnly', o.readOnly, false);
  const allocate = check.boolean('allocate', o.allocate, false);
  const entrySize = o.entrySize ?? PAGE_SIZE;
  if (entrySize !== PAGE_SIZE && entrySize !== PMD_SIZE) {
    throw rangeError(`entrySize must be ${PAGE_SIZE} or ${PMD_SIZE}, got ${String(entrySize)}`);
  }
  const wanted = o.size === undefined ? undefined : check.pageAligned('size', check.integer('size', o.size, 0));
  const mode = check.integer('mode', o.mode ?? 0o644, 0, 0o7777);
  if (create && readOnly) throw typeError('create and readOnly cannot be combined');
  if (create && wanted === undefined) throw typeError('create needs a size');
  if (o.mediaPath !== undefined) checkPath('mediaPath', o.mediaPath);
  const persist = parsePersistOptions(o);
  flushChoice();  // fails early on a bad UDAX_FLUSH
  const wantedTracker = trackerOption(o.tracker);
  resolveTracker(wantedTracker.option, path);  // a forced one this process cannot run throws before anything changes

  const access = readOnly ? fsConstants.O_RDONLY : fsConstants.O_RDWR;
  let created = false;
  let st: FileStat & { id: number };
  try {
    st = native.fileOpen(path, access, mode);
  } catch (e) {
    if (!create || (e as { code?: string }).code !== 'ENOENT') throw e;
    try {
      st = native.fileOpen(path, access | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
      created = true;
    } catch (again) {
      if ((again as { code?: string }).code !== 'EEXIST') throw again;
      st = native.fileOpen(path, access, mode);  // another opener created it meanwhile
    }
  }
  const file = st.id;
  const originalSize = st.size;
  let resized = false;
  let table: EntryTable | undefined;
  try {
    if (!st.isFile) throw errnoError('EINVAL', 'open', path, 'not a regular file');
    const resolved = resolveTracker(wantedTracker.option, path, st.fsType);  // sigbus: only on tmpfs
    const size = Math.max(st.size, wanted ?? 0);
    if (size % PAGE_SIZE !== 0) throw errnoError('EINVAL', 'mmap', path, `file size ${size} is not a multiple of ${PAGE_SIZE}`);
    if (Math.ceil(size / entrySize) > native.constants.MAX_ENTRIES) {
      throw errnoError('EFBIG', 'open', path, `${size} bytes is more than ${native.constants.MAX_ENTRIES} entries of ${entrySize} bytes`);
    }
    if (size > st.size) {
      if (readOnly) throw errnoError('EINVAL', 'ftruncate', path, `file is ${st.size} bytes, less than size ${size}, and readOnly`);
      if (size - st.size > st.freeBytes && !allocate) {
        throw errnoError('ENOSPC', 'ftruncate', path,
          `${size - st.size} more bytes do not fit: the file system has ${st.freeBytes} free (a store past that would die of SIGBUS)`);
      }
      native.fileTruncate(file, size);
      resized = true;
      if (allocate) native.fileAllocate(file, st.size, size - st.size);
    }
    const view = bindShared(file, size, Math.log2(entrySize), st, path);
    if ('conflict' in view) {
      throw udaxError('ERR_UDAX_ALREADY_OPEN',
        `the file is open (in this or another process) already with ${view.size} bytes in ${2 ** view.entryShift}-byte entries; ` +
        `this open asks for ${size} bytes in ${entrySize}-byte entries (close the other first):`, { syscall: 'open', path });
    }
    table = new EntryTable(view);
    const scan = resolved.name === 'async' ? chooseScan(st.fsType, st.dev, path, view.size).scan : 'armed';
    const tracker = claimTracker(table, resolved.name, wantedTracker.explicit, path, scan);
    if (!view.created) checkPeers(table, tracker.name, readOnly, path);
    tracker.ensureInstalled();
    const isPmem = !readOnly && native.fileProbeMapSync(file);
    return new DaxFile({ path, file, table, stat: { ...st, size: view.size }, readOnly, isPmem, owner: true, tracker }, persist);
  } catch (e) {
    table?.release();
    if (resized) native.fileTruncate(file, originalSize);
    native.fileClose(file);
    if (created) unlinkSync(path);
    throw e;
  }
}

/** In a worker thread: use a file another thread opened (the same open file,
 * sharing its entry table: stores and syncs on either side see the same
 * tags). Closing it here releases this thread's views and mappings only. */
export function attach(handle: DaxFileHandle): DaxFile {
  const h = handle as Partial<DaxFileHandle> | null;
  if (!h || typeof h !== 'object') throw typeError('attach: expected the result of file.handle()');
  checkPath('handle path', h.path);
  for (const key of ['file', 'inode'] as const) check.integer(`file handle ${key}`, h[key], 0, 0x7fffffff);
  check.integer('file handle size', h.size, 0);  // the size when handle() ran: the file's own is live
  check.integer('file handle entrySize', h.entrySize, 1);
  if (typeof h.readOnly !== 'boolean' || typeof h.isPmem !== 'boolean') throw typeError('attach: expected the result of file.handle()');
  flushChoice();
  if (!native.fileIsOpen(h.file!)) throw errnoError('EBADF', 'open', h.path, 'the file was closed by the thread that opened it');
  if (native.fileInode(h.file!) !== h.inode) throw errnoError('EBADF', 'open', h.path, 'the handle does not match the open file');
  const table = new EntryTable(native.inodeView(h.inode!));
  try {
    if (2 ** table.shift !== h.entrySize) {
      throw errnoError('EBADF', 'open', h.path, 'the handle does not match the open file');
    }
    const stat = native.fileStat(h.file!);
    const tracker = trackerOfTable(table);
    tracker.ensureInstalled();
    return new DaxFile({ path: h.path!, file: h.file!, table, stat: { ...stat, size: h.size! }, readOnly: h.readOnly!, isPmem: h.isPmem!, owner: false, tracker }, undefined);
  } catch (e) {
    table.release();
    throw e;
  }
}

/** The file system object at path, if any (for identity checks). */
export function statIdentity(path: string): FileIdentity | undefined {
  try {
    const st = statSync(path);
    return { dev: st.dev, ino: st.ino };
  } catch {
    return undefined;
  }
}

export { DaxError } from './errors.js';
