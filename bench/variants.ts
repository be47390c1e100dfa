// The ways a workload's stores and syncs can be done: udax itself and the
// baselines it is compared with in the same run. Each variant is set up once
// per trial process (the owner) and used from one or more threads (targets).
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { attach, open, type DaxFile, type DaxFileHandle, type DaxStats, type Mapping, type MappingHandle } from '../src/index.js';
import { native, RegionMode } from '../src/native.js';
import { PAGE_SIZE } from '../src/validate.js';

export type VariantName = 'udax' | 'raw' | 'bare' | 'flush-all' | 'msync-tmpfs' | 'msync-disk';

export const VARIANTS: readonly VariantName[] = ['udax', 'raw', 'bare', 'flush-all', 'msync-tmpfs', 'msync-disk'];

export const VARIANT_INFO: Record<VariantName, string> = {
  udax: 'udax: tracked mapping, fault-driven dirty tracking, sync()',
  raw: 'untracked read-write mapping; flush exactly the dirty pages (the floor)',
  bare: 'SIGSEGV + mprotect per first store, mprotect + flush per dirty page, no tags or locks',
  'flush-all': 'untracked mapping; flush the whole mapping on every sync',
  'msync-tmpfs': '@riaskov/mmap-io shared mapping + msync(MS_SYNC), file on tmpfs',
  'msync-disk': '@riaskov/mmap-io shared mapping + msync(MS_SYNC), file on disk',
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

/** What the owner posts to worker threads (plain data). */
export type SharedVariant =
  | { kind: 'udax'; file: DaxFileHandle; mapping: MappingHandle }
  | { kind: 'region'; variant: 'raw' | 'bare' | 'flush-all'; slot: number; size: number; entryShift: number }
  | { kind: 'msync'; path: string; size: number };

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

const WINDOW = 2 ** 31;  // external ArrayBuffers stop at 4 GiB: map big files in 2 GiB windows

/** Views over a large mapping, made window by window on demand. */
class Windows {
  readonly #make: (offset: number, length: number) => Uint8Array;
  readonly #size: number;
  readonly #windows = new Map<number, Uint8Array>();
  readonly window: number;
  constructor(size: number, make: (offset: number, length: number) => Uint8Array, window = WINDOW) {
    this.#size = size;
    this.#make = make;
    this.window = window;
  }
  view(offset: number, length: number): Uint8Array {
    const size = this.window;
    const k = Math.floor(offset / size);
    let w = this.#windows.get(k);
    if (!w) {
      w = this.#make(k * size, Math.min(size, this.#size - k * size));
      this.#windows.set(k, w);
    }
    const at = offset - k * size;
    if (at + length > w.length) throw new RangeError(`bench view [${offset}, ${offset + length}) crosses a ${size}-byte window`);
    return w.subarray(at, at + length);
  }
  forEach(offset: number, length: number, fn: (bytes: Uint8Array) => void): void {
    for (let at = offset; at < offset + length; ) {
      const n = Math.min(offset + length - at, this.window - (at % this.window));
      fn(this.view(at, n));
      at += n;
    }
  }
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

// ---- raw, bare, flush-all: the addon's mechanisms without udax's policy ----

function regionTarget(variant: 'raw' | 'bare' | 'flush-all', slot: number, size: number, entryShift: number, all: Partition): Target {
  const windows = new Windows(size, (offset, length) => new Uint8Array(native.regionView(slot, offset, length, 0).buffer));
  const flushRange = (offset: number, length: number) => windows.forEach(offset, length, (b) => native.flushBuffer(b));
  let sync: Target['sync'];
  if (variant === 'raw') {
    sync = (_o, _l, pages) => {
      for (const [first, count] of pageRuns(pages)) flushRange(first * PAGE_SIZE, count * PAGE_SIZE);
      native.fence();
    };
  } else if (variant === 'bare') {
    // One mprotect and one flush per dirty page (per entry with 2 MiB entries).
    const perEntry = Math.max(1, 2 ** entryShift / PAGE_SIZE);
    sync = (_o, _l, pages) => {
      let previous = -1;
      for (const p of [...pages].sort((a, b) => a - b)) {
        const entry = Math.floor(p / perEntry);
        if (entry === previous) continue;
        previous = entry;
        const err = native.regionProtect(slot, entry, entry, false);
        if (err) throw new Error(`bare baseline: mprotect failed with errno ${err}`);
        flushRange(entry * 2 ** entryShift, Math.min(2 ** entryShift, size - entry * 2 ** entryShift));
      }
      native.fence();
    };
  } else {
    sync = () => {
      flushRange(all.offset, all.length);
      native.fence();
    };
  }
  return { view: (o, l) => windows.view(o, l), sync, close: () => {} };
}

// ---- the kernel: mmap + msync(MS_SYNC) through @riaskov/mmap-io -------------

interface MmapIo {
  map(size: number, prot: number, flags: number, fd: number, offset?: number): Buffer;
  sync(buffer: Buffer, offset: number, size: number, blocking: boolean, invalidate?: boolean): void;
  PROT_READ: number;
  PROT_WRITE: number;
  MAP_SHARED: number;
}

/** mmap-io takes the length as a 32-bit int: map in 1 GiB windows. */
const MSYNC_WINDOW = 2 ** 30;

let mmapIo: MmapIo | undefined;
let mmapIoError: string | undefined;

/** @riaskov/mmap-io if it built here, else undefined (see mmapIoProblem). */
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

function msyncTarget(path: string, size: number): Target {
  const io = loadMmapIo();
  if (!io) throw new Error(mmapIoProblem());
  const fd = openSync(path, 'r+');
  const buffers = new Map<number, Buffer>();
  const windows = new Windows(size, (offset, length) => {
    const b = io.map(length, io.PROT_READ | io.PROT_WRITE, io.MAP_SHARED, fd, offset);
    buffers.set(offset, b);
    return new Uint8Array(b.buffer, b.byteOffset, b.length);
  }, MSYNC_WINDOW);
  return {
    view: (o, l) => windows.view(o, l),
    sync: (offset, length) => {
      for (let at = offset; at < offset + length; ) {
        const k = Math.floor(at / MSYNC_WINDOW) * MSYNC_WINDOW;
        const n = Math.min(offset + length - at, k + MSYNC_WINDOW - at);
        windows.view(at, 1);  // map the window if not yet
        io.sync(buffers.get(k)!, at - k, n, true);
        at += n;
      }
    },
    close: () => closeSync(fd),  // the mappings go with the process
  };
}

// ---- owner and attach -----------------------------------------------------

/** Set the variant up over a new file at setup.path (owner thread). */
export function createOwner(setup: VariantSetup): Owner {
  const { variant, path, size } = setup;
  if (variant === 'msync-tmpfs' || variant === 'msync-disk') {
    if (!loadMmapIo()) throw new Error(mmapIoProblem());
    const fd = openSync(path, 'wx');
    ftruncateSync(fd, size);
    closeSync(fd);
    const targets: Target[] = [];
    return {
      shared: { kind: 'msync', path, size },
      target: () => {
        const t = msyncTarget(path, size);
        targets.push(t);
        return t;
      },
      dispose: () => targets.forEach((t) => t.close()),
    };
  }
  const file = open(path, { create: true, size, entrySize: setup.entrySize });
  if (variant === 'udax') {
    const mapping = file.map();
    return {
      shared: { kind: 'udax', file: file.handle(), mapping: mapping.handle() },
      target: () => udaxTarget(file, mapping),
      stats: () => file.stats(),
      dispose: () => file.close(),
    };
  }
  // The DaxFile only lends its fd and entry table (for the entry size).
  const mode = variant === 'bare' ? RegionMode.Bare : RegionMode.Untracked;
  const slot = native.mapRegion(file.fd, 0, size, true, true, mode, file.table.id, false);
  return {
    shared: { kind: 'region', variant, slot, size, entryShift: file.table.shift },
    target: (all) => regionTarget(variant, slot, size, file.table.shift, all),
    dispose: () => {
      native.unmapRegion(slot);
      file.close();
    },
  };
}

/** A target in a worker thread, from what the owner posted. */
export function attachTarget(shared: SharedVariant, all: Partition): Target {
  if (shared.kind === 'udax') {
    const file = attach(shared.file);
    const mapping = file.attachMapping(shared.mapping);
    const t = udaxTarget(file, mapping);
    return { ...t, close: () => file.close() };
  }
  if (shared.kind === 'region') return regionTarget(shared.variant, shared.slot, shared.size, shared.entryShift, all);
  return msyncTarget(shared.path, shared.size);
}
