// The persistence model of one open file: its media (persistence domain),
// granularity, timing model, injected writeback errors, errseq word and
// counters, and the hooks writeback calls. One Persistence per DaxFile (per
// thread); the mutable state is in a SharedArrayBuffer that workers share
// through file.handle().
//
// Writeback calls, for each run of entries it holds locked:
//   flushed(first, last, bytes)  after mkclean + cache-line flush, before the
//                                fence: decide injected failures, copy the
//                                other entries to the media, charge line delay;
//                                returns the entries writeback must leave DIRTY
//   fenced()                     after the fence: charge the fence delay
// and file.sync() calls endSync() after the writeback: it reports a new
// writeback error once to the syncing handle (errseq).
import { ErrCursor, errseqSet } from './errseq.js';
import { errnoError, nativeCall, typeError } from './errors.js';
import type { DaxFile } from './file.js';
import { InjectionTable, type InjectOptions } from './inject.js';
import { MediaShadow, unitSizeOf, type Granularity } from './media.js';
import { native } from './native.js';
import { parseTiming, spin, type TimingModel } from './timing.js';
import type { SyncResult } from './writeback.js';

export interface PersistOptions {
  /** 'shadow': keep a media file updated only by flushes (the persistence
   * domain); on a real DAX mount the file itself is the media. Default 'none'. */
  media?: 'none' | 'shadow';
  /** Where the media file lives (default `<path>.media`). It is (re)initialised
   * from the data file at open: what is in the file when it is opened counts
   * as durable. */
  mediaPath?: string;
  /** What persists as a unit in crash images: 'cache-line' (64 B, pmem, the
   * default), 'page' (a 4 KiB page, or `sectorSize`, the page cache and the
   * disk), 'byte8' (8-byte atomic stores). */
  granularity?: Granularity;
  /** With granularity 'page': 512, 1024, 2048 or 4096 (default). */
  sectorSize?: number;
  /** Extra delay per flushed line and per fence: 'optane' or { lineNs, fenceNs }. */
  timing?: 'none' | 'optane' | Partial<TimingModel>;
}

export type MediaKind = 'none' | 'shadow' | 'pmem';

export interface MediaInfo {
  kind: MediaKind;
  /** The media file ('pmem': the data file itself; 'none': undefined). */
  path: string | undefined;
  granularity: Granularity;
  /** Bytes per unit. */
  unitSize: number;
}

export interface PersistStats {
  media: MediaKind;
  /** Bytes copied to the media by writeback. */
  mediaBytes: number;
  /** Time spent copying to the media, ns. */
  mediaCopyNs: number;
  /** Emulated media delay charged (timing model), ns. */
  delayNs: number;
  /** Entry writebacks failed by injected errors. */
  failedEntries: number;
  /** Of those, entries marked clean without reaching the media (data lost). */
  lostEntries: number;
  /** Writeback errors reported to handles by sync (errseq). */
  errorsReported: number;
}

/** What a worker needs to share the model (inside DaxFileHandle). */
export interface PersistHandle {
  readonly shared: SharedArrayBuffer;
  readonly kind: MediaKind;
  readonly mediaPath: string | undefined;
  readonly granularity: Granularity;
  readonly unitSize: number;
  readonly timing: TimingModel | undefined;
}

/** Writeback's callbacks (see the top of this file). Caller holds the locks. */
export interface WritebackHooks {
  flushed(first: number, last: number, bytes: number): number[] | undefined;
  fenced(): void;
}

const SHARED_BYTES = 1024;
const ERRSEQ = 0;  // ints[0]; ints[8..] are the injection rules (inject.ts)
const STAT = { MEDIA_BYTES: 0, MEDIA_COPY_NS: 1, DELAY_NS: 2, FAILED: 3, LOST: 4, REPORTED: 5 } as const;

/** @internal */
export class Persistence {
  readonly file: DaxFile;
  readonly kind: MediaKind;
  readonly granularity: Granularity;
  readonly unitSize: number;
  readonly timing: TimingModel | undefined;
  readonly shared: SharedArrayBuffer;
  readonly ints: Int32Array;
  readonly stats: BigInt64Array;
  readonly injections: InjectionTable;
  /** This DaxFile's own errseq cursor (it is an open file, like an fd). */
  readonly cursor: ErrCursor;
  readonly media: MediaShadow | undefined;
  readonly #mediaPath: string | undefined;
  #live: { buffer: ArrayBuffer; hold: object; bytes: Uint8Array } | undefined;

  constructor(file: DaxFile, kind: MediaKind, mediaPath: string | undefined, granularity: Granularity, unitSize: number,
    timing: TimingModel | undefined, shared: SharedArrayBuffer | undefined, initMedia: boolean) {
    this.file = file;
    this.kind = kind;
    this.granularity = granularity;
    this.unitSize = unitSize;
    this.timing = timing;
    this.shared = shared ?? new SharedArrayBuffer(SHARED_BYTES);
    this.ints = new Int32Array(this.shared, 0, 128);
    this.injections = new InjectionTable(this.ints, new Float64Array(this.shared, 512, 32));
    this.stats = new BigInt64Array(this.shared, 768, 32);
    this.cursor = new ErrCursor(this.ints, ERRSEQ);
    this.#mediaPath = kind === 'pmem' ? file.path : mediaPath;
    if (kind === 'shadow') {
      this.media = new MediaShadow(mediaPath!, file.size, file.table.id);
      try {
        if (initMedia) this.media.copy(this.live(), 0, file.size);
      } catch (e) {
        this.close();
        throw e;
      }
    }
  }

  /** This thread's one view of the whole file (through the fallback slot). */
  live(): Uint8Array {
    if (!this.#live) {
      const v = nativeCall(this.file.path, () => native.regionView(this.file.fallbackSlot, 0, this.file.size, 0));
      this.#live = { ...v, bytes: new Uint8Array(v.buffer) };
    }
    return this.#live.bytes;
  }

  info(): MediaInfo {
    return { kind: this.kind, path: this.#mediaPath, granularity: this.granularity, unitSize: this.unitSize };
  }

  handle(): PersistHandle {
    return {
      shared: this.shared, kind: this.kind, mediaPath: this.#mediaPath, granularity: this.granularity,
      unitSize: this.unitSize, timing: this.timing,
    };
  }

  addStat(which: keyof typeof STAT, n: number): void {
    Atomics.add(this.stats, STAT[which], BigInt(Math.round(n)));
  }

  statsSnapshot(): PersistStats {
    const s = (k: keyof typeof STAT) => Number(Atomics.load(this.stats, STAT[k]));
    return {
      media: this.kind, mediaBytes: s('MEDIA_BYTES'), mediaCopyNs: s('MEDIA_COPY_NS'), delayNs: s('DELAY_NS'),
      failedEntries: s('FAILED'), lostEntries: s('LOST'), errorsReported: s('REPORTED'),
    };
  }

  /** Hooks for one sync, or undefined when there is nothing to do (no
   * media copy, no delay, no injected error pending). */
  beginSync(): WritebackHooks | undefined {
    const media = this.media;
    const timing = this.timing;
    const inject = this.injections.pending() ? this.injections.forSync() : undefined;
    if (!media && !timing && !inject) return undefined;
    const file = this.file;
    const entrySize = file.entrySize;
    const size = file.size;
    const live = media ? this.live() : undefined;
    const copy = (from: number, to: number) => {
      if (!media || from >= to) return;
      const t0 = process.hrtime.bigint();
      media.copy(live!, from, to);
      this.addStat('MEDIA_BYTES', to - from);
      this.addStat('MEDIA_COPY_NS', Number(process.hrtime.bigint() - t0));
    };
    return {
      flushed: (first, last, bytes) => {
        if (timing && timing.lineNs > 0) this.addStat('DELAY_NS', spin(Math.ceil(bytes / 64) * timing.lineNs));
        const end = Math.min(size, (last + 1) * entrySize);
        if (!inject) {
          copy(first * entrySize, end);
          return undefined;
        }
        const keepDirty: number[] = [];
        let from = first * entrySize;  // start of the pending copy
        for (let i = first; i <= last; i++) {
          const a = i * entrySize;
          const b = Math.min(size, a + entrySize);
          const failure = inject(a, b);
          if (!failure) continue;
          copy(from, a);
          from = b;
          errseqSet(this.ints, ERRSEQ, failure.errno);  // mapping_set_error
          this.addStat('FAILED', 1);
          // keep-dirty: writeback unlocks it still DIRTY; mark-clean:
          // writeback cleans it, never copied (the data is lost).
          if (failure.keepDirty) keepDirty.push(i);
          else this.addStat('LOST', 1);
        }
        copy(from, end);
        return keepDirty;
      },
      fenced: () => {
        if (timing && timing.fenceNs > 0) this.addStat('DELAY_NS', spin(timing.fenceNs));
      },
    };
  }

  /** After a sync's writeback: report a writeback error not yet seen
   * through cursor (file_check_and_advance_wb_err), as EIO etc. */
  endSync(result: SyncResult, cursor: ErrCursor | undefined): SyncResult {
    const errno = (cursor ?? this.cursor).checkAndAdvance();
    if (errno !== 0) {
      this.addStat('REPORTED', 1);
      throw errnoError(errno, 'fsync', this.file.path, 'writeback of this file failed since this handle last synced (reported once per handle)');
    }
    return result;
  }

  close(): void {
    if (this.#live) {
      native.detachView(this.#live.buffer, this.#live.hold);
      this.#live = undefined;
    }
    this.media?.close();
  }
}

const registry = new WeakMap<DaxFile, Persistence>();

/** @internal The persistence model of file (every open DaxFile has one). */
export function persistenceOf(file: DaxFile): Persistence {
  const p = registry.get(file);
  if (!p) throw errnoError(9, 'persistence', file.path, 'file is closed');
  return p;
}

/** Checked form of the open options (validated before the file is opened). */
export interface ParsedPersistOptions {
  media: 'none' | 'shadow';
  mediaPath: string | undefined;
  granularity: Granularity;
  unitSize: number;
  timing: TimingModel | undefined;
}

export function parsePersistOptions(o: PersistOptions): ParsedPersistOptions {
  const media = o.media ?? 'none';
  if (media !== 'none' && media !== 'shadow') throw typeError(`media must be 'none' or 'shadow', got ${String(media)}`);
  if (o.mediaPath !== undefined && (typeof o.mediaPath !== 'string' || o.mediaPath === '')) {
    throw typeError('mediaPath must be a non-empty string');
  }
  if (o.mediaPath !== undefined && media !== 'shadow') throw typeError('mediaPath needs media: \'shadow\'');
  const { granularity, unitSize } = unitSizeOf(o.granularity, o.sectorSize);
  return { media, mediaPath: o.mediaPath, granularity, unitSize, timing: parseTiming(o.timing) };
}

/** Called by open() once the file is open: set up its model (creating and
 * initialising the media). Closes the file if that fails. */
export function withPersistence(file: DaxFile, o: ParsedPersistOptions): DaxFile {
  try {
    let kind: MediaKind = 'none';
    let mediaPath: string | undefined;
    if (o.media === 'shadow') {
      // On a real DAX mount the file is the persistence domain: no copy.
      kind = file.isPmem ? 'pmem' : 'shadow';
      mediaPath = o.mediaPath ?? `${file.path}.media`;
      if (kind === 'shadow' && mediaPath === file.path) throw errnoError(22, 'open', file.path, 'mediaPath is the data file');
      if (file.readOnly) throw errnoError(22, 'open', file.path, 'media: \'shadow\' needs a writable file');
    }
    registry.set(file, new Persistence(file, kind, mediaPath, o.granularity, o.unitSize, o.timing, undefined, true));
  } catch (e) {
    file.close();
    throw e;
  }
  return file;
}

/** Called by attach() in a worker: share the opener's model. */
export function attachPersistence(file: DaxFile, h: PersistHandle | undefined): DaxFile {
  try {
    const p = h
      ? new Persistence(file, h.kind, h.mediaPath, h.granularity, h.unitSize, h.timing, h.shared, false)
      : new Persistence(file, 'none', undefined, 'cache-line', 64, undefined, undefined, false);
    registry.set(file, p);
  } catch (e) {
    file.close();
    throw e;
  }
  return file;
}

/** Hooks for one sync of file (undefined: plain writeback). */
export function beginSync(file: DaxFile): WritebackHooks | undefined {
  return registry.get(file)?.beginSync();
}

/** Report a new writeback error to the syncing handle; returns result. */
export function endSync(file: DaxFile, result: SyncResult, cursor?: ErrCursor): SyncResult {
  const p = registry.get(file);
  return p ? p.endSync(result, cursor) : result;
}

export function closePersistence(file: DaxFile): void {
  registry.get(file)?.close();
  registry.delete(file);
}

export function persistHandle(file: DaxFile): PersistHandle | undefined {
  return registry.get(file)?.handle();
}

export function persistStats(file: DaxFile): PersistStats {
  return persistenceOf(file).statsSnapshot();
}

export function mediaInfo(file: DaxFile): MediaInfo {
  return persistenceOf(file).info();
}

/** An open file handle (the kernel's struct file): its own errseq cursor,
 * sampled when it is opened, so each handle is told of each writeback
 * error once, on its next sync. */
export class DaxHandle {
  readonly file: DaxFile;
  readonly #cursor: ErrCursor;
  #closed = false;

  /** @internal Use file.openHandle(). */
  constructor(file: DaxFile) {
    this.file = file;
    this.#cursor = new ErrCursor(persistenceOf(file).ints, ERRSEQ);
  }

  /** fsync through this handle: the file's sync(offset, length), then throw a
   * DaxError (code of the errno, e.g. 'EIO', syscall 'fsync') if a writeback
   * error happened since this handle last reported one. */
  sync(offset?: number, length?: number): SyncResult {
    if (this.#closed) throw errnoError(9, 'fsync', this.file.path, 'handle is closed');
    return this.file.syncReporting(this.#cursor, offset, length);
  }

  close(): void {
    this.#closed = true;
  }
}

/** Fail the next writebacks of a range (see InjectOptions). */
export function injectWritebackError(file: DaxFile, opts: InjectOptions): void {
  file.assertOpen('injectWritebackError');
  if (file.readOnly) throw errnoError(22, 'injectWritebackError', file.path, 'file is readOnly');
  persistenceOf(file).injections.add(opts, file.size);
}
