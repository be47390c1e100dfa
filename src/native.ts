// The only file that loads the addon. Everything native goes through here.
import { createRequire } from 'node:module';
import { packageRoot } from './package.js';

export interface TableView {
  id: number;
  buffer: ArrayBuffer;
  entries: number;
  entryShift: number;
  summaryOffset: number;
  summaryGroups: number;
  statsOffset: number;
  path: string;
}

/** What a write fault in a region does (udax.h udax_region_mode). */
export enum RegionMode {
  Untracked = 0,
  Tracked = 1,
  /** Benchmark baseline only: mprotect the page writable, no lock or tag. */
  Bare = 2,
}

export interface RegionViewResult {
  buffer: ArrayBuffer;
  hold: object;
}

export interface NativeConstants {
  LOCKED: number;
  DIRTY: number;
  TOWRITE: number;
  WAITERS: number;
  OWNER_SHIFT: number;
  OWNER_MASK: number;
  FLAGS_MASK: number;
  SUMMARY_SHIFT: number;
  SUMMARY2_SHIFT: number;
  STATS: Record<
    | 'WRITE_FAULTS' | 'FAULT_NS' | 'COARSEN_BLOCK' | 'COARSEN_MAPPING' | 'SYNCS'
    | 'ENTRIES_CLEANED' | 'BYTES_FLUSHED' | 'FLUSH_NS' | 'PREPARE_WRITES' | 'EARLY_WRITEBACKS' | 'COUNT',
    number
  >;
}

export interface NativeAddon {
  constants: NativeConstants;
  openFile(path: string, flags: number, mode: number): number;
  statFd(fd: number): { size: number; isFile: boolean; fsType: number };
  truncateFd(fd: number, size: number): void;
  closeFd(fd: number): void;
  probeMapSync(fd: number): boolean;
  tableCreate(entries: number, entryShift: number, path: string): TableView;
  tableAttach(id: number): TableView;
  mapRegion(
    fd: number, fileOffset: number, length: number, shared: boolean,
    writable: boolean, mode: RegionMode, tableId: number, mapSync: boolean,
  ): number;
  regionView(slot: number, offset: number, length: number, what: 0 | 1): RegionViewResult;
  detachView(buffer: ArrayBuffer, hold: object): void;
  unmapRegion(slot: number): void;
  regionProtect(slot: number, firstEntry: number, lastEntry: number, writable: boolean): number;
  mkcleanFlush(tableId: number, firstEntry: number, lastEntry: number, fallbackSlot: number): number;
  regionAddress(slot: number): number;
  cpuFlushFeatures(): { clflush: boolean; clflushopt: boolean; clwb: boolean };
  setFlushInstruction(name: string): void;
  flushInstruction(): string;
  fence(): void;
  flushBuffer(bytes: ArrayBufferView): void;
  futexWait(tableId: number, index: number, expected: number): void;
  futexWake(tableId: number, index: number): void;
  gettid(): number;
  installFaultHandler(): boolean;
  faultHandlerIsOurs(): boolean;
  setVmaBudget(n: number): void;
  vmaUsage(): { used: number; budget: number };
  /** Tests only: sleep after tagging DIRTY in the fault handler, and/or use
   * the 2016 ordering (unlock before making the page writable). */
  setFaultTestHooks(delayAfterDirtyNs: number, order2016: boolean): void;
}

const require = createRequire(import.meta.url);

/** build/Release (a source build) first, then prebuilds/<platform>-<arch>/. */
function loadAddon(): NativeAddon {
  try {
    return (require('node-gyp-build') as (dir: string) => NativeAddon)(packageRoot);
  } catch (e) {
    const why = (e as Error).message.split('\n')[0];
    throw new Error(`udax: no native addon loads here (${why}); run \`npm rebuild udax\` to build it from source (needs python3, make and g++)`, { cause: e });
  }
}

export const native: NativeAddon = loadAddon();
