// The only file that loads the addon, and the one error boundary: every
// native call that fails throws a DaxError (code = errno name, syscall, path).
import { createRequire } from 'node:module';
import { errnoError, udaxError } from './errors.js';
import { packageRoot } from './package.js';

/** An entry table as one thread sees it (native/inode.cc inode_view). */
export interface TableView {
  id: number;
  /** True when this call created the table (the first open of the inode). */
  created: boolean;
  buffer: ArrayBuffer;
  hold: object;
  /** The live size when the view was made (the sizes words hold it now). */
  size: number;
  /** Entries reserved: the table grows in place up to this many. */
  capacity: number;
  entryShift: number;
  /** The entries the file has now, and their summary. */
  coverage: TableCoverage;
  statsOffset: number;
  persistOffset: number;
  /** Where the tracker's words are (entry.h UDAX_TRACKER_*). */
  trackerOffset: number;
  /** Where the sizes are (entry.h UDAX_SIZE_*: int64 words). */
  sizesOffset: number;
  path: string;
}

/** External buffers over entries [0, cover) of a table and their dirty
 * summary (native/inode.cc coverage_view). */
export interface TableCoverage {
  cover: number;
  entries: ArrayBuffer;
  groups: ArrayBuffer;
  blocks: ArrayBuffer;
  holds: HeldBuffer[];
}

/** The inode is open already, tracking a different size or entry size. */
export interface TableConflict {
  conflict: true;
  size: number;
  entryShift: number;
}

export interface FileStat {
  size: number;
  isFile: boolean;
  fsType: number;
  dev: number;
  ino: number;
  freeBytes: number;
}

export interface HeldBuffer {
  buffer: ArrayBuffer;
  hold: object;
}

export interface NativeConstants {
  LOCKED: number;
  DIRTY: number;
  TOWRITE: number;
  WAITERS: number;
  REDIRTY: number;
  OWNER_SHIFT: number;
  OWNER_MASK: number;
  FLAGS_MASK: number;
  SUMMARY_SHIFT: number;
  SUMMARY2_SHIFT: number;
  PERSIST_BYTES: number;
  TRACKER_KIND: number;
  TRACKER_WORDS: number;
  TRACKER_SCAN: number;
  SCAN_ARMED: number;
  SCAN_POPULATED: number;
  SIZE_LIVE: number;
  SIZE_DURABLE: number;
  SIZE_RESIZES: number;
  SIZE_WORDS: number;
  MAX_ENTRIES: number;
  TABLE_RESERVE_BYTES: number;
  PAGE_SIZE: number;
  /** The statistics in entry-table order (native/entry.h UDAX_STATS). */
  STATS: readonly string[];
}

/** The addon's functions; each one's comment is in the .cc file named. */
export interface NativeAddon {
  constants: NativeConstants;
  // native/file.cc
  fileOpen(path: string, flags: number, mode: number): FileStat & { id: number };
  fileStat(file: number): FileStat;
  fileTruncate(file: number, size: number): void;
  fileAllocate(file: number, offset: number, length: number): void;
  fileClose(file: number): void;
  /** Close the descriptor, keep the open file: calls that need one open its path again (ESTALE when another file is there). */
  fileParkFd(file: number): void;
  fileIsOpen(file: number): boolean;
  fileInode(file: number): number;
  fileProbeMapSync(file: number): boolean;
  fileDescriptor(file: number): number;
  // native/ofd_lock.cc
  /** A write lock (F_OFD_SETLK) on the whole file: 0, or the errno (EAGAIN: held by another open). */
  fileOfdLock(file: number): number;
  filePwrite(file: number, bytes: Uint8Array, position: number): number;
  filePread(file: number, bytes: Uint8Array, position: number): number;
  // native/inode.cc
  inodeBind(file: number, size: number, entryShift: number, dev: number, ino: number, sidecarDir: string): TableView | TableConflict;
  inodePeers(inode: number): { pid: number; sameNamespace: boolean; attachErrno: number }[];
  inodeSidecar(inode: number): string;
  inodeOwnerTag(inode: number): number;
  inodeView(inode: number): TableView;
  inodeCoverage(inode: number, cover: number): TableCoverage;
  releaseBuffer(buffer: ArrayBuffer, hold: object): void;
  // native/resize.cc
  /** ifSize >= 0: only if the live size is ifSize (false otherwise). */
  inodeResize(file: number, inode: number, size: number, mediaFile: number, mediaInode: number, ifSize: number): boolean;
  inodeSyncSize(file: number, inode: number, mediaFile: number, mediaInode: number): number;
  testingSetResizeDelay(ns: number): void;
  // native/region.cc
  mapRegion(file: number, inode: number, fileOffset: number, length: number, shared: boolean,
    writable: boolean, tracked: boolean, mapSync: boolean, async: boolean, sigbus: boolean): number;
  regionView(region: number, offset: number, length: number): HeldBuffer;
  unmapRegion(region: number): void;
  regionProtect(region: number, firstEntry: number, lastEntry: number, writable: boolean): number;
  regionMsync(region: number, offset: number, length: number): void;
  regionIsLive(region: number): boolean;
  regionInfo(region: number): { address: number; inode: number; fileOffset: number; length: number; tracked: boolean; async: boolean; sigbus: boolean };
  setVmaPolicy(budget: number, wholeMapping: number): void;
  vmaUsage(): { used: number; budget: number; wholeMapping: number };
  // native/writeback.cc
  mkcleanFlush(inode: number, firstEntry: number, lastEntry: number, fallbackRegion: number, out?: Float64Array): number;
  inodeShootdownPeers(inode: number): number;
  writebackRun(inode: number, firstEntry: number, lastEntry: number, fallbackRegion: number, ownerTag: number,
    mediaRegion: number, out: Float64Array): void;
  regionCopy(dstRegion: number, srcRegion: number, offset: number, length: number): void;
  regionRead(region: number, offset: number, target: Uint8Array): void;
  regionFlush(region: number, offset: number, length: number): void;
  // native/lock.cc
  entryLockWait(inode: number, index: number, ownerTag: number, failOnDeadlock: boolean): number;
  entryWake(inode: number, index: number): void;
  gettid(): number;
  // native/flush.cc
  cpuFlushFeatures(): { clflush: boolean; clflushopt: boolean; clwb: boolean };
  setFlushInstruction(name: string): void;
  flushInstruction(): string;
  fence(): void;
  flushBuffer(bytes: ArrayBufferView): void;
  // native/fault.cc
  installFaultHandler(): boolean;
  faultHandlerIsOurs(signal?: 'SIGSEGV' | 'SIGBUS'): boolean;
  // native/uffd_sigbus.cc
  sigbusSelfTest(): { ok: true } | { ok: false; syscall: string; errno: number; detail: string };
  // native/uffd.cc
  harvest(inode: number, firstEntry: number, lastEntry: number): number;
  // native/freeze.cc
  /** Make the file's async mappings read-only; stores wait in the fault handler. */
  freezeAsync(inode: number): number;
  /** Undo freezeAsync (same thread) and wake the waiting stores. */
  thawAsync(inode: number): void;
  asyncSelfTest(): { ok: true } | { ok: false; syscall: string; errno: number; detail: string };
  // native/testing.cc, native/uffd.cc (udax/testing only)
  testingSetWriteFault(region: number, kind: string, delayNs: number): void;
  testingMadvise(region: number, offset: number, length: number, advice: string): void;
  testingRefuseUserfaultfd(): void;
  testingRefusePagemapScan(): void;
  testingAsyncFault(pages: number): number;
  testingUffdWriteProtect(region: number, offset: number, length: number): void;
  testingForkProbe(region: number): 'unmapped' | 'mapped' | 'partly';
  testingSetHarvestDelay(ns: number): void;
}

const require = createRequire(import.meta.url);

/** build/Release (a source build) first, then prebuilds/<platform>-<arch>/. */
function loadAddon(): NativeAddon {
  try {
    return (require('node-gyp-build') as (dir: string) => NativeAddon)(packageRoot);
  } catch (e) {
    const why = (e as Error).message.split('\n')[0];
    throw Object.assign(udaxError('ERR_UDAX_NO_ADDON',
      `no native addon loads here (${why}); run \`npm rebuild udax\` to build it from source (needs python3, make and g++)`), { cause: e });
  }
}

/** A native failure (errno, syscall, path set by native/addon.cc errno_error) as a DaxError. */
function toDaxError(e: unknown): unknown {
  const err = e as { errno?: unknown; syscall?: unknown; path?: unknown };
  if (typeof err?.errno !== 'number' || typeof err.syscall !== 'string') return e;
  return errnoError(err.errno, err.syscall, typeof err.path === 'string' ? err.path : undefined);
}

function withErrorBoundary(raw: NativeAddon): NativeAddon {
  const wrapped: Record<string, unknown> = { constants: raw.constants };
  for (const [name, value] of Object.entries(raw)) {
    if (typeof value !== 'function') continue;
    const fn = value as (...args: unknown[]) => unknown;
    wrapped[name] = (...args: unknown[]) => {
      try {
        return fn(...args);
      } catch (e) {
        throw toDaxError(e);
      }
    };
  }
  return wrapped as unknown as NativeAddon;
}

export const native: NativeAddon = withErrorBoundary(loadAddon());
