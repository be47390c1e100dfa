// The persistence model of one file: its media (persistence domain),
// granularity, timing model, injected writeback errors, errseq word and
// counters, and the hooks writeback calls. Its shared state lives in the
// entry table's persistence area, so every open of the file and every thread
// sees one model, as every process sees one inode.
//
// Writeback calls, for each run of entries it holds locked:
//   flushed(first, last, bytes)  after mkclean + cache-line flush, before the
//                                fence: decide injected failures, copy the
//                                other entries to the media, charge line delay;
//                                returns the entries writeback must leave DIRTY
//   fenced()                     after the fence: charge the fence delay
// Writeback *records* an error in the errseq word (mapping_set_error); only
// sync *reports* it, through the syncing handle's cursor (file.ts, handle.ts).
import { ErrCursor, errseqSet } from './errseq.js';
import { errnoError, typeError, udaxError } from './errors.js';
import type { EntryTable } from './entry.js';
import { InjectionTable, MAX_RULES, RULE_INTS, RULE_RANGES, type InjectOptions } from './inject.js';
import { MediaShadow, unitSizeOf, type FileIdentity, type Granularity } from './media.js';
import { native } from './native.js';
import { parseTiming, spin, type TimingModel } from './timing.js';

export interface PersistOptions {
  /** 'shadow': keep a media file updated only by flushes (the persistence
   * domain); on a real DAX mount the file itself is the media. Default 'none'. */
  media?: 'none' | 'shadow';
  /** Where the media file lives (default `<path>.media`). It is (re)initialised
   * from the data file when the file is first opened in the process: what is
   * in the file then counts as durable. */
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

/** Writeback's callbacks (see the top of this file). Caller holds the locks. */
export interface WritebackHooks {
  flushed(first: number, last: number, bytes: number): number[] | undefined;
  fenced(): void;
}

/** How one writeback runs: each run in one native call that also copies to
 * the media (mediaRegion, -1 for none) when `native`, else through hooks —
 * when the model needs JS between flush and fence (injected errors, timing),
 * or the caller cannot use the native run (inside withEntriesLocked). */
export interface WritebackPlan {
  native: boolean;
  /** The same steps in JS (undefined: nothing to do beyond the flush). */
  hooks?: WritebackHooks;
  mediaRegion: number;
  /** Count what a native run copied to the media. */
  mediaCopied(bytes: number, ns: number): void;
}

/** Checked form of the open options (validated before the file is opened). */
export interface ParsedPersistOptions {
  /** False when the caller passed no persistence option (a second open
   * then takes the model the file already has). */
  given: boolean;
  media: 'none' | 'shadow';
  mediaPath: string | undefined;
  granularity: Granularity;
  unitSize: number;
  timing: TimingModel | undefined;
}

const PERSIST_KEYS = ['media', 'mediaPath', 'granularity', 'sectorSize', 'timing'] as const;

export function parsePersistOptions(o: PersistOptions): ParsedPersistOptions {
  const media = o.media ?? 'none';
  if (media !== 'none' && media !== 'shadow') throw typeError(`media must be 'none' or 'shadow', got ${String(media)}`);
  if (o.mediaPath !== undefined && (typeof o.mediaPath !== 'string' || o.mediaPath === '')) {
    throw typeError('mediaPath must be a non-empty string');
  }
  if (o.mediaPath !== undefined && media !== 'shadow') throw typeError('mediaPath needs media: \'shadow\'');
  const { granularity, unitSize } = unitSizeOf(o.granularity, o.sectorSize);
  const given = PERSIST_KEYS.some((k) => o[k] !== undefined);
  return { given, media, mediaPath: o.mediaPath, granularity, unitSize, timing: parseTiming(o.timing) };
}

// ---- the shared area: offsets derived from counts, checked to fit ---------

const STAT = { MEDIA_BYTES: 0, MEDIA_COPY_NS: 1, DELAY_NS: 2, FAILED: 3, LOST: 4, REPORTED: 5 } as const;
const MEDIA_PATH_BYTES = 512;
const KINDS: readonly MediaKind[] = ['none', 'shadow', 'pmem'];
const GRANULARITIES: readonly Granularity[] = ['cache-line', 'page', 'byte8'];

/** Int32 words, then Float64, then BigInt64, then bytes. */
const INTS = { STATE: 0, ERRSEQ: 1, KIND: 2, GRANULARITY: 3, UNIT_SIZE: 4, TIMED: 5, SIZE_OWNED: 6, RULES: 7 } as const;
const INT_COUNT = INTS.RULES + MAX_RULES * RULE_INTS;
const FLOATS = { LINE_NS: 0, FENCE_NS: 1, RANGES: 2 } as const;
const FLOAT_COUNT = FLOATS.RANGES + MAX_RULES * RULE_RANGES;
const STAT_COUNT = Object.keys(STAT).length;
const FLOAT_OFFSET = Math.ceil((INT_COUNT * 4) / 8) * 8;
const STAT_OFFSET = FLOAT_OFFSET + FLOAT_COUNT * 8;
const PATH_OFFSET = STAT_OFFSET + STAT_COUNT * 8;
const AREA_BYTES = PATH_OFFSET + MEDIA_PATH_BYTES;
if (AREA_BYTES > native.constants.PERSIST_BYTES) {
  throw new Error(`udax: the persistence area needs ${AREA_BYTES} bytes; native/entry.h reserves ${native.constants.PERSIST_BYTES}`);
}

/** STATE: who set the model up. */
const UNSET = 0, SETTING = 1, SET = 2;

/** The area's typed views, over the entry table's memory. */
class SharedArea {
  readonly ints: Int32Array;
  readonly floats: Float64Array;
  readonly stats: BigInt64Array;
  readonly path: Uint8Array;

  constructor(table: EntryTable) {
    const base = table.persistOffset;
    this.ints = new Int32Array(table.persist, base, INT_COUNT);
    this.floats = new Float64Array(table.persist, base + FLOAT_OFFSET, FLOAT_COUNT);
    this.stats = new BigInt64Array(table.persist, base + STAT_OFFSET, STAT_COUNT);
    this.path = new Uint8Array(table.persist, base + PATH_OFFSET, MEDIA_PATH_BYTES);
  }
}

/** What a DaxFile tells its Persistence about itself. */
export interface PersistedFile {
  readonly path: string;
  readonly size: number;
  readonly entrySize: number;
  readonly readOnly: boolean;
  readonly isPmem: boolean;
  readonly identity: FileIdentity;
  readonly table: EntryTable;
  /** The native open-file id. */
  readonly fileId: number;
  /** The read-only mapping of the whole file (native region id). */
  readonly fallbackRegion: number;
}

/** @internal The persistence model as one DaxFile (one open, one thread) uses it. */
export class Persistence {
  readonly kind: MediaKind;
  readonly granularity: Granularity;
  readonly unitSize: number;
  readonly timing: TimingModel | undefined;
  readonly media: MediaShadow | undefined;
  readonly injections: InjectionTable;
  readonly #area: SharedArea;
  readonly #file: PersistedFile;
  readonly #mediaPath: string | undefined;

  /** Set the model up (the first open of the file in the process), or join
   * the one it has. Throws, changing nothing, when options given disagree. */
  constructor(file: PersistedFile, o: ParsedPersistOptions | undefined) {
    this.#file = file;
    const area = (this.#area = new SharedArea(file.table));
    this.injections = new InjectionTable(area.ints.subarray(INTS.RULES), area.floats.subarray(FLOATS.RANGES));
    const wanted = o && resolveModel(file, o);
    const configure = claimModel(area, file.path);
    if (configure) {
      const model = wanted ?? { kind: 'none' as MediaKind, mediaPath: undefined, granularity: 'cache-line' as Granularity, unitSize: 64, timing: undefined };
      try {
        this.media = model.kind === 'shadow' ? new MediaShadow(model.mediaPath!, file.size, file.identity) : undefined;
        if (this.media) this.media.copyFrom(file.fallbackRegion, 0, file.size);
      } catch (e) {
        this.media?.close();
        Atomics.store(area.ints, INTS.STATE, UNSET);
        throw e;
      }
      writeModel(area, model);
      Atomics.store(area.ints, INTS.STATE, SET);
    }
    const model = readModel(area);
    if (!configure && wanted && o!.given && !sameModel(model, wanted)) {
      throw udaxError('ERR_UDAX_ALREADY_OPEN',
        `the file is open in this process with media '${model.kind}' (${model.mediaPath ?? 'no media file'}, ${model.granularity}); open it with the same persistence options or none:`,
        { syscall: 'open', path: file.path });
    }
    this.kind = model.kind;
    this.granularity = model.granularity;
    this.unitSize = model.unitSize;
    this.timing = model.timing;
    this.#mediaPath = model.kind === 'pmem' ? file.path : model.mediaPath;
    if (!configure && model.kind === 'shadow') this.media = new MediaShadow(model.mediaPath!, undefined, file.identity);
  }

  /** The size a crash would leave (sizes are metadata: durable at fsync). */
  get durableSize(): number {
    return this.#file.table.durableSize;
  }

  /** Whether a volume records the file's size changes (src/volume.ts): then
   * no open of it, in any thread, changes its size but the volume's. */
  get sizeOwned(): boolean {
    return Atomics.load(this.#area.ints, INTS.SIZE_OWNED) !== 0;
  }

  set sizeOwned(owned: boolean) {
    Atomics.store(this.#area.ints, INTS.SIZE_OWNED, owned ? 1 : 0);
  }

  /** fsync's size step, after its writeback: the live size becomes durable
   * and a longer media file is cut to it (native/resize.cc). */
  syncSize(): void {
    native.inodeSyncSize(this.#file.fileId, this.#file.table.id, this.media?.fileId ?? -1, this.media?.tableId ?? -1);
  }

  /** A new errseq cursor over this file (an open handle's, sampled now). */
  cursor(): ErrCursor {
    return new ErrCursor(this.#area.ints, INTS.ERRSEQ);
  }

  info(): MediaInfo {
    return { kind: this.kind, path: this.#mediaPath, granularity: this.granularity, unitSize: this.unitSize };
  }

  addStat(which: keyof typeof STAT, n: number): void {
    Atomics.add(this.#area.stats, STAT[which], BigInt(Math.round(n)));
  }

  statsSnapshot(): PersistStats {
    const s = (k: keyof typeof STAT) => Number(Atomics.load(this.#area.stats, STAT[k]));
    return {
      media: this.kind, mediaBytes: s('MEDIA_BYTES'), mediaCopyNs: s('MEDIA_COPY_NS'), delayNs: s('DELAY_NS'),
      failedEntries: s('FAILED'), lostEntries: s('LOST'), errorsReported: s('REPORTED'),
    };
  }

  /** The plan of one writeback (see WritebackPlan). */
  beginWriteback(): WritebackPlan {
    const mediaCopied = (bytes: number, ns: number) => {
      if (bytes === 0) return;
      this.addStat('MEDIA_BYTES', bytes);
      this.addStat('MEDIA_COPY_NS', ns);
    };
    const inject = this.injections.pending() ? this.injections.forSync() : undefined;
    return {
      native: !this.timing && !inject,
      hooks: this.#hooks(inject, mediaCopied),
      mediaRegion: this.media ? this.media.region : -1,
      mediaCopied,
    };
  }

  /** Writeback's steps in JS, or undefined when there is nothing to do beyond
   * the flush (no media copy, no delay, no injected error pending). */
  #hooks(inject: ReturnType<InjectionTable['forSync']> | undefined, mediaCopied: WritebackPlan['mediaCopied']): WritebackHooks | undefined {
    const media = this.media;
    const timing = this.timing;
    if (!media && !timing && !inject) return undefined;
    const file = this.#file;
    const { entrySize, fallbackRegion } = file;
    const copy = (from: number, to: number) => {
      if (!media || from >= to) return;
      const t0 = process.hrtime.bigint();
      media.copyFrom(fallbackRegion, from, to);
      mediaCopied(to - from, Number(process.hrtime.bigint() - t0));
    };
    return {
      flushed: (first, last, bytes) => {
        if (timing && timing.lineNs > 0) this.addStat('DELAY_NS', spin(Math.ceil(bytes / 64) * timing.lineNs));
        const size = file.size;  // stable for these entries: their locks are held
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
          errseqSet(this.#area.ints, INTS.ERRSEQ, failure.errno);  // mapping_set_error
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

  /** A DAX write (file.write) put bytes [from, to) in the persistence
   * domain: copy them to the media and charge their flush and fence.
   * Caller holds the entry locks of the range. */
  written(from: number, to: number): void {
    const t0 = process.hrtime.bigint();
    this.media?.copyFrom(this.#file.fallbackRegion, from, to);
    if (this.media) {
      this.addStat('MEDIA_BYTES', to - from);
      this.addStat('MEDIA_COPY_NS', Number(process.hrtime.bigint() - t0));
    }
    const timing = this.timing;
    if (timing) {
      const lines = Math.ceil(to / 64) - Math.floor(from / 64);
      this.addStat('DELAY_NS', spin(lines * timing.lineNs) + spin(timing.fenceNs));
    }
  }

  /** file_check_and_advance_wb_err: throw (EIO etc.) a writeback error that
   * cursor has not yet reported. */
  report(cursor: ErrCursor): void {
    const errno = cursor.checkAndAdvance();
    if (errno !== 0) {
      this.addStat('REPORTED', 1);
      throw errnoError(errno, 'fsync', this.#file.path, 'writeback of this file failed since this handle last synced (reported once per handle)');
    }
  }

  /** Fail the next writebacks of a range (see InjectOptions). */
  inject(opts: InjectOptions): void {
    this.injections.add(opts, this.#file.size);
  }

  close(): void {
    this.media?.close();
  }
}

interface Model {
  kind: MediaKind;
  mediaPath: string | undefined;
  granularity: Granularity;
  unitSize: number;
  timing: TimingModel | undefined;
}

/** The model the options ask for, for this file (checks what depends on it). */
function resolveModel(file: PersistedFile, o: ParsedPersistOptions): Model {
  if (o.media === 'none') return { kind: 'none', mediaPath: undefined, granularity: o.granularity, unitSize: o.unitSize, timing: o.timing };
  if (file.readOnly) throw errnoError('EINVAL', 'open', file.path, 'media: \'shadow\' needs a writable file');
  // On a real DAX mount the file is the persistence domain: no copy.
  const kind: MediaKind = file.isPmem ? 'pmem' : 'shadow';
  const mediaPath = kind === 'pmem' ? undefined : o.mediaPath ?? `${file.path}.media`;
  if (mediaPath !== undefined && Buffer.byteLength(mediaPath) >= MEDIA_PATH_BYTES) {
    throw errnoError('ENAMETOOLONG', 'open', mediaPath, `media paths are at most ${MEDIA_PATH_BYTES - 1} bytes`);
  }
  return { kind, mediaPath, granularity: o.granularity, unitSize: o.unitSize, timing: o.timing };
}

function sameModel(a: Model, b: Model): boolean {
  return a.kind === b.kind && a.mediaPath === b.mediaPath && a.granularity === b.granularity && a.unitSize === b.unitSize &&
    a.timing?.lineNs === b.timing?.lineNs && a.timing?.fenceNs === b.timing?.fenceNs;
}

function writeModel(area: SharedArea, m: Model): void {
  area.ints[INTS.KIND] = KINDS.indexOf(m.kind);
  area.ints[INTS.GRANULARITY] = GRANULARITIES.indexOf(m.granularity);
  area.ints[INTS.UNIT_SIZE] = m.unitSize;
  area.ints[INTS.TIMED] = m.timing ? 1 : 0;
  area.floats[FLOATS.LINE_NS] = m.timing?.lineNs ?? 0;
  area.floats[FLOATS.FENCE_NS] = m.timing?.fenceNs ?? 0;
  area.path.fill(0);
  if (m.mediaPath !== undefined) Buffer.from(area.path.buffer, area.path.byteOffset, MEDIA_PATH_BYTES).write(m.mediaPath, 'utf8');
}

function readModel(area: SharedArea): Model {
  const end = area.path.indexOf(0);
  const kind = KINDS[area.ints[INTS.KIND]];
  const path = Buffer.from(area.path.subarray(0, end < 0 ? MEDIA_PATH_BYTES : end)).toString('utf8');
  return {
    kind,
    mediaPath: kind === 'shadow' ? path : undefined,
    granularity: GRANULARITIES[area.ints[INTS.GRANULARITY]],
    unitSize: area.ints[INTS.UNIT_SIZE],
    timing: area.ints[INTS.TIMED] ? { lineNs: area.floats[FLOATS.LINE_NS], fenceNs: area.floats[FLOATS.FENCE_NS] } : undefined,
  };
}

/** Claim the right to set the model up (true), or wait until another open
 * has set it (false). An open that failed halfway gives the claim back. */
function claimModel(area: SharedArea, path: string): boolean {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const state = Atomics.compareExchange(area.ints, INTS.STATE, UNSET, SETTING);
    if (state === UNSET) return true;
    if (state === SET) return false;
    if (Date.now() > deadline) throw errnoError('EBUSY', 'open', path, 'another thread has been opening this file for 10 s');
  }
}
