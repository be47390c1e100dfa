// The ways a workload's stores and syncs can be done: udax itself and the
// baselines it is compared with in the same run. Each variant is set up once
// per trial process (the owner) and used from one or more threads (targets).
// Everything goes through udax's public API and udax/testing.
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { attach, open, PAGE_SIZE, type DaxFile, type DaxFileHandle, type DaxStats, type Mapping, type MappingHandle } from '../src/index.js';
import { asyncTrackerAvailability, fence, sigbusTrackerAvailability, flushBytes, mapBare, mapBareAsync, mapUntracked, msync, uffdWriteProtect, WINDOW_STRIDE, writeProtect } from '../src/testing.js';

export type VariantName = 'udax' | 'udax-sigsegv' | 'udax-sigbus' | 'raw' | 'bare' | 'bare-async' | 'flush-all' | 'msync-tmpfs' | 'msync-disk' | 'mmap-io';

export const VARIANTS: readonly VariantName[] = ['udax', 'udax-sigsegv', 'udax-sigbus', 'raw', 'bare', 'bare-async', 'flush-all', 'msync-tmpfs', 'msync-disk', 'mmap-io'];

export const VARIANT_INFO: Record<VariantName, string> = {
  udax: 'udax with the default tracker (UDAX_TRACKER, else auto: async where its self-test passes): tracked mapping, sync()',
  'udax-sigsegv': 'udax with tracker: \'sigsegv\' (SIGSEGV + mprotect fault hook)',
  'udax-sigbus': 'udax with tracker: \'sigbus\' (userfaultfd write-protect + SIGBUS fault hook, tmpfs only)',
  raw: 'untracked read-write mapping; flush exactly the dirty pages (the floor)',
  bare: 'SIGSEGV + mprotect per first store, mprotect + flush per dirty page, no tags or locks',
  'bare-async': 'userfaultfd WP_ASYNC write fault per first store, re-write-protect + flush per dirty page, no scan, tags or locks',
  'flush-all': 'untracked mapping; flush the whole mapping on every sync',
  'msync-tmpfs': 'shared mapping + the kernel\'s msync(MS_SYNC), file on tmpfs',
  'msync-disk': 'shared mapping + the kernel\'s msync(MS_SYNC), file on disk',
  'mmap-io': 'what a Node user would pick: @riaskov/mmap-io mapping + msync, file on tmpfs (development only)',
};

/** Part of the file one thread works on. */
export interface Partition {
  offset: number;
  length: number;
}

/** One thread's handle on a variant. Offsets are file offsets. */
export interface Target {
  /** Bytes [offset, offset+length) for stores (pages, records). */
  view(offset: number, length: number): Uint8Array;
  /** Make what the workload stored durable, the variant's way. The workload
   * passes the range an application would sync and the pages it dirtied
   * (which only the untracked baselines use: they cannot know them). */
  sync(offset: number, length: number, dirtyPages: readonly number[]): void;
  close(): void;
}

type RegionVariant = 'raw' | 'bare' | 'bare-async' | 'flush-all' | 'msync-tmpfs' | 'msync-disk';

/** Why a variant cannot run in this process, if it cannot. */
export function variantProblem(v: VariantName): string | undefined {
  if (v === 'udax-sigbus') {
    const s = sigbusTrackerAvailability();
    return s.available ? undefined : `userfaultfd write-protect + SIGBUS is not available here (${s.reason})`;
  }
  if (v !== 'bare-async') return undefined;
  const a = asyncTrackerAvailability();
  return a.available ? undefined : `userfaultfd WP_ASYNC is not available here (${a.reason})`;
}

/** What the owner posts to worker threads (plain data). */
export type SharedVariant =
  | { kind: 'udax'; file: DaxFileHandle; mapping: MappingHandle }
  | { kind: 'region'; variant: RegionVariant; file: DaxFileHandle; mapping: MappingHandle }
  | { kind: 'mmap-io'; path: string; size: number };

export interface Owner {
  shared: SharedVariant;
  /** A target for the owner's own thread. */
  target(all: Partition): Target;
  /** udax's counters (the udax variant only). */
  stats?(): DaxStats;
  dispose(): void;
}

export interface VariantSetup {
  variant: VariantName;
  /** The file (created; the caller removes it). */
  path: string;
  size: number;
  entrySize: number;
}

/** Contiguous runs of sorted page indices: [firstPage, count][]. */
export function pageRuns(pages: readonly number[]): [number, number][] {
  const sorted = [...pages].sort((a, b) => a - b);
  const runs: [number, number][] = [];
  for (const p of sorted) {
    const last = runs[runs.length - 1];
    if (last && p === last[0] + last[1]) last[1]++;
    else if (!last || p >= last[0] + last[1]) runs.push([p, 1]);
  }
  return runs;
}

// ---- udax ----------------------------------------------------------------

function udaxTarget(file: DaxFile, mapping: Mapping): Target {
  const bytes = mapping.length <= 2 ** 32 ? mapping.bytes : undefined;
  return {
    view: (offset, length) => (bytes ? bytes.subarray(offset, offset + length) : mapping.view(offset, length)),
    sync: (offset, length) => void file.sync(offset, length),
    close: () => {
      if (mapping.file === file && !mapping.unmapped) mapping.unmap();
    },
  };
}

// ---- raw, bare, flush-all, msync: udax's mechanisms without its policy ----

/** Calls fn with views of [offset, offset+length), one per window the mapping allows. */
function forEachView(m: Mapping, offset: number, length: number, fn: (bytes: Uint8Array) => void): void {
  for (let at = offset; at < offset + length; ) {
    const n = Math.min(offset + length - at, WINDOW_STRIDE - (at % WINDOW_STRIDE));
    fn(m.view(at, n));
    at += n;
  }
}

function regionTarget(variant: RegionVariant, m: Mapping, all: Partition): Target {
  const flushRange = (offset: number, length: number) => forEachView(m, offset, length, flushBytes);
  const entrySize = m.file.entrySize;
  let sync: Target['sync'];
  if (variant === 'raw') {
    sync = (_o, _l, pages) => {
      for (const [first, count] of pageRuns(pages)) flushRange(first * PAGE_SIZE, count * PAGE_SIZE);
      fence();
    };
  } else if (variant === 'bare') {
    // One mprotect and one flush per dirty page (per entry with 2 MiB entries).
    const perEntry = Math.max(1, entrySize / PAGE_SIZE);
    sync = (_o, _l, pages) => {
      let previous = -1;
      for (const p of [...pages].sort((a, b) => a - b)) {
        const entry = Math.floor(p / perEntry);
        if (entry === previous) continue;
        previous = entry;
        writeProtect(m, entry, entry);
        flushRange(entry * entrySize, Math.min(entrySize, m.length - entry * entrySize));
      }
      fence();
    };
  } else if (variant === 'bare-async') {
    sync = (_o, _l, pages) => {
      for (const [first, count] of pageRuns(pages)) {
        uffdWriteProtect(m, first * PAGE_SIZE, count * PAGE_SIZE);
        flushRange(first * PAGE_SIZE, count * PAGE_SIZE);
      }
      fence();
    };
  } else if (variant === 'flush-all') {
    sync = () => {
      flushRange(all.offset, all.length);
      fence();
    };
  } else {
    sync = (offset, length) => msync(m, offset, length);
  }
  return { view: (o, l) => m.view(o, l), sync, close: () => {} };
}

// ---- @riaskov/mmap-io: what a Node user would reach for ------------------------

interface MmapIo {
  map(size: number, prot: number, flags: number, fd: number, offset?: number): Buffer;
  sync(buffer: Buffer, offset: number, size: number, blocking: boolean, invalidate?: boolean): void;
  PROT_READ: number;
  PROT_WRITE: number;
  MAP_SHARED: number;
}

/** mmap-io takes the length as a 32-bit int: map in 1 GiB windows. */
const MMAP_IO_WINDOW = 2 ** 30;

let mmapIo: MmapIo | undefined;
let mmapIoError: string | undefined;

/** @riaskov/mmap-io if it is installed and built here, else undefined (see mmapIoProblem). */
export function loadMmapIo(): MmapIo | undefined {
  if (mmapIo || mmapIoError) return mmapIo;
  try {
    const loaded = createRequire(import.meta.url)('@riaskov/mmap-io') as MmapIo & { default?: MmapIo };
    mmapIo = typeof loaded.map === 'function' ? loaded : loaded.default;
    if (!mmapIo || typeof mmapIo.map !== 'function') throw new Error('unexpected module shape');
  } catch (e) {
    mmapIoError = (e as Error).message.split('\n')[0];
  }
  return mmapIo;
}

export function mmapIoProblem(): string | undefined {
  loadMmapIo();
  return mmapIoError && `@riaskov/mmap-io is not available (${mmapIoError}); a development-time baseline, built by 'npm install' in a checkout of udax`;
}

function mmapIoTarget(path: string, size: number): Target {
  const io = loadMmapIo();
  if (!io) throw new Error(mmapIoProblem());
  const fd = openSync(path, 'r+');
  const buffers = new Map<number, Buffer>();
  const view = (offset: number, length: number) => {
    const k = Math.floor(offset / MMAP_IO_WINDOW) * MMAP_IO_WINDOW;
    let b = buffers.get(k);
    if (!b) {
      b = io.map(Math.min(MMAP_IO_WINDOW, size - k), io.PROT_READ | io.PROT_WRITE, io.MAP_SHARED, fd, k);
      buffers.set(k, b);
    }
    if (offset - k + length > b.length) throw new RangeError(`bench view [${offset}, ${offset + length}) crosses a window`);
    return new Uint8Array(b.buffer, b.byteOffset + offset - k, length);
  };
  return {
    view,
    sync: (offset, length) => {
      for (let at = offset; at < offset + length; ) {
        const k = Math.floor(at / MMAP_IO_WINDOW) * MMAP_IO_WINDOW;
        const n = Math.min(offset + length - at, k + MMAP_IO_WINDOW - at);
        view(at, 1);  // map the window if not yet
        io.sync(buffers.get(k)!, at - k, n, true);
        at += n;
      }
    },
    close: () => closeSync(fd),  // the mappings go with the process
  };
}

// ---- owner and attach -----------------------------------------------------

/** The tracker a variant opens its file with (undefined: the default). */
function trackerOf(variant: VariantName): 'sigsegv' | 'sigbus' | undefined {
  return variant === 'udax-sigsegv' || variant === 'bare' ? 'sigsegv' : variant === 'udax-sigbus' ? 'sigbus' : undefined;
}

const UDAX_VARIANTS: readonly VariantName[] = ['udax', 'udax-sigsegv', 'udax-sigbus'];

/** For a workload run in processes (udax variants only): the file created
 * and held open here, unmapped, while peer processes open and map it
 * (openPeerTarget). Its stats() are the shared table's. */
export function createProcessesOwner(setup: VariantSetup): Pick<Owner, 'stats' | 'dispose'> {
  if (!UDAX_VARIANTS.includes(setup.variant)) throw new RangeError(`variant ${setup.variant} cannot run across processes`);
  const file = open(setup.path, { create: true, size: setup.size, entrySize: setup.entrySize, tracker: trackerOf(setup.variant) });
  return { stats: () => file.stats(), dispose: () => file.close() };
}

/** In a peer process: the file a processes owner created, opened and mapped
 * whole, as a target (closing it closes the file). */
export function openPeerTarget(variant: VariantName, path: string): Target {
  const file = open(path, { tracker: trackerOf(variant) });
  const t = udaxTarget(file, file.map());
  return { ...t, close: () => file.close() };
}

/** Set the variant up over a new file at setup.path (owner thread). */
export function createOwner(setup: VariantSetup): Owner {
  const { variant, path, size } = setup;
  if (variant === 'mmap-io') {
    if (!loadMmapIo()) throw new Error(mmapIoProblem());
    const fd = openSync(path, 'wx');
    ftruncateSync(fd, size);
    closeSync(fd);
    const targets: Target[] = [];
    return {
      shared: { kind: 'mmap-io', path, size },
      target: () => {
        const t = mmapIoTarget(path, size);
        targets.push(t);
        return t;
      },
      dispose: () => targets.forEach((t) => t.close()),
    };
  }
  const tracker = trackerOf(variant);
  const file = open(path, { create: true, size, entrySize: setup.entrySize, tracker });
  if (variant === 'udax' || variant === 'udax-sigsegv' || variant === 'udax-sigbus') {
    const mapping = file.map();
    return {
      shared: { kind: 'udax', file: file.handle(), mapping: mapping.handle() },
      target: () => udaxTarget(file, mapping),
      stats: () => file.stats(),
      dispose: () => file.close(),
    };
  }
  const mapping = variant === 'bare' ? mapBare(file) : variant === 'bare-async' ? mapBareAsync(file) : mapUntracked(file);
  return {
    shared: { kind: 'region', variant, file: file.handle(), mapping: mapping.handle() },
    target: (all) => regionTarget(variant, mapping, all),
    dispose: () => file.close(),
  };
}

/** A target in a worker thread, from what the owner posted. */
export function attachTarget(shared: SharedVariant, all: Partition): Target {
  if (shared.kind === 'mmap-io') return mmapIoTarget(shared.path, shared.size);
  const file = attach(shared.file);
  const mapping = file.attachMapping(shared.mapping);
  const t = shared.kind === 'udax' ? udaxTarget(file, mapping) : regionTarget(shared.variant, mapping, all);
  return { ...t, close: () => file.close() };
}
