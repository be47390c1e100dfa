// The workloads: one row each in this table. A workload is one thread's loop
// over its part of the file; it times only the operation it names and leaves
// preparation (dirtying pages before a sync, syncing before a fault) untimed.
import { PAGE_SIZE } from '../src/index.js';
import { mulberry32 } from '../src/testing.js';
import type { Partition, Target, VariantName } from './variants.js';

export interface RunContext {
  /** Stop measuring after this long (at least MIN_ROUNDS are measured). */
  budgetNs: number;
  /** udax's entry size (faults and syncs are per entry). */
  entrySize: number;
  seed: number;
}

export interface SizeOptions {
  /** The mapping most workloads use. */
  size: number;
  /** The sparse file of sync-clean-huge. */
  hugeSize: number;
}

export interface Workload {
  name: string;
  summary: string;
  /** What one measured operation is (times are per operation). */
  op: string;
  variants: readonly VariantName[];
  /** Variants that make no sense here, with the reason shown. */
  skip?: Partial<Record<VariantName, string>>;
  fileSize(o: SizeOptions): number;
  /** Writer threads this workload always runs (else --threads). */
  threads?: number;
  /** A thread that runs beside the writers until they finish (it gets the
   * whole file); what it measures goes into the row's detail. */
  companion?: (t: Target, all: Partition, stop: Int32Array) => CompanionResult;
  /** Run the writers and the companion each in a process of its own, each
   * opening the file (udax variants only), instead of threads of one. */
  processes?: boolean;
  /** The workload whose row of the same variant, in the same run, is this
   * one's baseline (the runner adds it when it is not selected). */
  baseline?: string;
  /** Returns one sample (ns per operation) per measured round. */
  run(t: Target, part: Partition, ctx: RunContext): number[];
}

/** What a companion measured: counters for the row's detail, and its own
 * samples (ns per operation, e.g. each sync's latency). */
export interface CompanionResult {
  detail: Record<string, number>;
  samples: number[];
}

const MIN_ROUNDS = 5;
const MAX_ROUNDS = 2000;
const WARMUP_ROUNDS = 2;

const now = () => Number(process.hrtime.bigint());

/** Run round() (returns [timed ns, operations]) through warm-up, then until
 * the budget is spent; each measured round gives one per-op sample. */
function measure(ctx: RunContext, round: (i: number) => [number, number]): number[] {
  const samples: number[] = [];
  const start = now();
  for (let i = 0; samples.length < MAX_ROUNDS; i++) {
    const [ns, ops] = round(i);
    if (i >= WARMUP_ROUNDS) samples.push(ns / ops);
    if (samples.length >= MIN_ROUNDS && now() - start > ctx.budgetNs) break;
  }
  return samples;
}

/** The same page sequence for every variant (udax's one PRNG). */
const random = mulberry32;

const pagesOf = (part: Partition) => Math.floor(part.length / PAGE_SIZE);
const firstPage = (part: Partition) => part.offset / PAGE_SIZE;

/** Store to every page of [offset, offset+length) and sync it, so later
 * rounds measure steady state, not the file system allocating pages. */
function prefault(t: Target, offset: number, length: number): void {
  const pages: number[] = [];
  for (let at = offset; at < offset + length; at += PAGE_SIZE) {
    t.view(at, 1)[0] = 1;
    pages.push(at / PAGE_SIZE);
  }
  t.sync(offset, length, pages);
}

/** Dirty the given pages (untimed; every cache line, as a page rewrite
 * would), then time one sync of the partition. */
function syncRounds(t: Target, part: Partition, ctx: RunContext, pages: number[]): number[] {
  const views = pages.map((p) => t.view(p * PAGE_SIZE, PAGE_SIZE));
  return measure(ctx, (i) => {
    for (const v of views) v.fill(i);
    const t0 = now();
    t.sync(part.offset, part.length, pages);
    return [now() - t0, 1];
  });
}

const SYNC_PAGES = 256;
const SPARSE_STRIDE = 16;
const HUGE_DIRTY_PAGES = 100;
const WAL_RECORD = 128;
const WAL_RECORDS_PER_COMMIT = 64;
const WAL_LOG_MAX = 8 * 2 ** 20;
const BTREE_UPDATES_PER_SYNC = 16;
const RANDOM_STORES = 200_000;
const THREADED_BATCH = 4096;
const THREADED_SYNC_EVERY_NS = 1e6;

/** The threaded writers: batches of random 8-byte stores over the part. */
function randomStores(t: Target, part: Partition, ctx: RunContext): number[] {
  const rand = random(ctx.seed);
  const words = Math.floor(part.length / 8);
  const bytes = t.view(part.offset, words * 8);
  const view = new Float64Array(bytes.buffer, bytes.byteOffset, words);
  return measure(ctx, (i) => {
    const t0 = now();
    for (let k = 0; k < THREADED_BATCH; k++) view[Math.floor(rand() * words)] = i;
    return [now() - t0, THREADED_BATCH];
  });
}

/** The threaded syncer: the whole file every millisecond until stop[0] is
 * set; each sync's latency is a sample. */
function syncEveryMillisecond(t: Target, all: Partition, stop: Int32Array): CompanionResult {
  const latencies: number[] = [];
  let next = now();
  while (Atomics.load(stop, 0) === 0) {
    if (now() < next) continue;
    const t0 = now();
    t.sync(all.offset, all.length, []);
    latencies.push(now() - t0);
    next = t0 + THREADED_SYNC_EVERY_NS;
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
  return {
    detail: { syncerSyncs: sorted.length, syncerMedianNs: q(0.5), syncerP95Ns: q(0.95), syncerMaxNs: sorted[sorted.length - 1] ?? 0 },
    samples: latencies,
  };
}

export const WORKLOADS: readonly Workload[] = [
  {
    name: 'fault',
    summary: 'first store to each page (entry) after a sync: the re-dirty cost',
    op: 'store',
    variants: ['udax', 'udax-sigsegv', 'udax-sigbus', 'bare-async', 'bare', 'raw', 'msync-tmpfs', 'msync-disk', 'mmap-io'],
    skip: { 'flush-all': 'same stores as raw: nothing is tracked' },
    fileSize: (o) => o.size,
    run(t, part, ctx) {
      // One store per entry, so every store of udax and bare faults.
      const stride = Math.max(PAGE_SIZE, ctx.entrySize);
      const count = Math.max(1, Math.min(256, Math.floor(part.length / stride)));
      const views: Uint8Array[] = [];
      const pages: number[] = [];
      for (let k = 0; k < count; k++) {
        views.push(t.view(part.offset + k * stride, 1));
        pages.push((part.offset + k * stride) / PAGE_SIZE);
      }
      return measure(ctx, (i) => {
        t.sync(part.offset, part.length, pages);
        const t0 = now();
        for (const v of views) v[0] = i;
        return [now() - t0, count];
      });
    },
  },
  {
    name: 'sync-dense',
    summary: `sync of ${SYNC_PAGES} contiguous dirty pages out of the whole mapping`,
    op: 'sync',
    variants: ['udax', 'udax-sigsegv', 'udax-sigbus', 'raw', 'bare-async', 'bare', 'flush-all', 'msync-tmpfs', 'msync-disk', 'mmap-io'],
    fileSize: (o) => o.size,
    run(t, part, ctx) {
      const n = Math.max(1, Math.min(SYNC_PAGES, pagesOf(part) >> 1));
      const first = firstPage(part) + ((pagesOf(part) - n) >> 1);
      return syncRounds(t, part, ctx, Array.from({ length: n }, (_, k) => first + k));
    },
  },
  {
    name: 'sync-sparse',
    summary: `sync of ${SYNC_PAGES} dirty pages scattered 1 in ${SPARSE_STRIDE} out of the whole mapping`,
    op: 'sync',
    variants: ['udax', 'udax-sigsegv', 'udax-sigbus', 'bare-async', 'bare', 'raw', 'flush-all', 'msync-tmpfs', 'msync-disk', 'mmap-io'],
    fileSize: (o) => o.size,
    run(t, part, ctx) {
      const n = Math.max(1, Math.min(SYNC_PAGES, Math.floor(pagesOf(part) / SPARSE_STRIDE)));
      return syncRounds(t, part, ctx, Array.from({ length: n }, (_, k) => firstPage(part) + k * SPARSE_STRIDE));
    },
  },
  {
    name: 'sync-clean-huge',
    summary: `sync of a huge sparse, mostly clean file with ${HUGE_DIRTY_PAGES} dirty pages`,
    op: 'sync',
    variants: ['udax', 'udax-sigsegv', 'udax-sigbus', 'raw', 'bare-async', 'bare', 'msync-tmpfs', 'msync-disk', 'mmap-io'],
    skip: { 'flush-all': 'would read in and flush every page of the huge file' },
    fileSize: (o) => o.hugeSize,
    run(t, part, ctx) {
      const n = Math.min(HUGE_DIRTY_PAGES, pagesOf(part));
      const step = Math.floor(pagesOf(part) / n);
      return syncRounds(t, part, ctx, Array.from({ length: n }, (_, k) => firstPage(part) + k * step));
    },
  },
  {
    name: 'wal',
    summary: `append ${WAL_RECORD}-byte records to a log, sync every ${WAL_RECORDS_PER_COMMIT} records`,
    op: 'commit',
    variants: ['udax', 'udax-sigsegv', 'udax-sigbus', 'raw', 'flush-all', 'msync-tmpfs', 'msync-disk', 'mmap-io'],
    fileSize: (o) => o.size,
    run(t, part, ctx) {
      const commitBytes = WAL_RECORD * WAL_RECORDS_PER_COMMIT;
      const logLength = Math.max(commitBytes, Math.min(WAL_LOG_MAX, part.length) - (Math.min(WAL_LOG_MAX, part.length) % commitBytes));
      prefault(t, part.offset, logLength);
      const record = new Uint8Array(WAL_RECORD);
      let head = 0;
      let seq = 0;
      return measure(ctx, () => {
        if (head + commitBytes > logLength) head = 0;
        const at = part.offset + head;
        const t0 = now();
        const log = t.view(at, commitBytes);
        for (let r = 0; r < WAL_RECORDS_PER_COMMIT; r++) {
          record[0] = seq & 255;
          record[1] = (seq >>> 8) & 255;
          record[2] = (seq++ >>> 16) & 255;
          log.set(record, r * WAL_RECORD);
        }
        const from = Math.floor(at / PAGE_SIZE);
        const to = Math.floor((at + commitBytes - 1) / PAGE_SIZE);
        const pages = Array.from({ length: to - from + 1 }, (_, k) => from + k);
        t.sync(from * PAGE_SIZE, (to - from + 1) * PAGE_SIZE, pages);
        head += commitBytes;
        return [now() - t0, 1];
      });
    },
  },
  {
    name: 'btree',
    summary: `random 4 KiB page updates, sync every ${BTREE_UPDATES_PER_SYNC} updates`,
    op: `${BTREE_UPDATES_PER_SYNC} updates+sync`,
    variants: ['udax', 'udax-sigsegv', 'udax-sigbus', 'raw', 'flush-all', 'msync-tmpfs', 'msync-disk', 'mmap-io'],
    fileSize: (o) => o.size,
    run(t, part, ctx) {
      prefault(t, part.offset, part.length);
      const rand = random(ctx.seed);
      const image = new Uint8Array(PAGE_SIZE);
      const pages: number[] = [];
      return measure(ctx, (i) => {
        pages.length = 0;
        for (let k = 0; k < BTREE_UPDATES_PER_SYNC; k++) pages.push(firstPage(part) + Math.floor(rand() * pagesOf(part)));
        image.fill(i & 255);
        const t0 = now();
        for (const p of pages) t.view(p * PAGE_SIZE, PAGE_SIZE).set(image);
        t.sync(part.offset, part.length, pages);
        return [now() - t0, 1];
      });
    },
  },
  {
    name: 'sync-random-huge',
    summary: `${RANDOM_STORES.toLocaleString('en')} stores to random pages of a sparse file half the --huge size, then one sync`,
    op: 'sync',
    variants: ['udax', 'udax-sigsegv', 'udax-sigbus', 'raw', 'msync-tmpfs', 'msync-disk'],
    skip: {
      bare: 'one mprotect per isolated page: 200,000 islands pass vm.max_map_count',
      'flush-all': 'would read in and flush every page of the huge file',
      'mmap-io': '@riaskov/mmap-io cannot map past 2 GiB',
    },
    fileSize: (o) => Math.max(PAGE_SIZE * 16, Math.floor(o.hugeSize / 2 / PAGE_SIZE) * PAGE_SIZE),
    run(t, part, ctx) {
      const rand = random(ctx.seed);
      const stores = Math.min(RANDOM_STORES, Math.floor(pagesOf(part) / 2));
      const pages = [...new Set(Array.from({ length: stores }, () => firstPage(part) + Math.floor(rand() * pagesOf(part))))];
      const views = pages.map((p) => t.view(p * PAGE_SIZE, 8));
      return measure(ctx, (i) => {
        for (const v of views) v[0] = i;  // untimed: the stores (faults, for a tracker)
        const t0 = now();
        t.sync(part.offset, part.length, pages);
        return [now() - t0, 1];
      });
    },
  },
  {
    name: 'threaded',
    summary: '2 writer threads store to random pages while a third thread syncs the whole file every millisecond',
    op: 'store',
    variants: ['udax', 'udax-sigsegv', 'udax-sigbus', 'flush-all', 'msync-tmpfs'],
    skip: {
      raw: 'the syncing thread cannot know which pages the writers dirtied',
      bare: 'the syncing thread cannot know which pages the writers dirtied',
      'msync-disk': 'a disk msync every millisecond measures the disk',
      'mmap-io': 'the same kernel msync as msync-tmpfs',
    },
    fileSize: (o) => o.size,
    threads: 2,
    run: randomStores,
    companion: syncEveryMillisecond,
  },
  {
    name: 'processes',
    summary: '2 writer processes store to random pages while a third process syncs the whole file every millisecond (threaded across processes; ratio to it)',
    op: 'store',
    variants: ['udax', 'udax-sigsegv', 'udax-sigbus'],
    fileSize: (o) => o.size,
    threads: 2,
    processes: true,
    baseline: 'threaded',
    run: randomStores,
    companion: syncEveryMillisecond,
  },
];

export function workloadByName(name: string): Workload | undefined {
  return WORKLOADS.find((w) => w.name === name);
}
