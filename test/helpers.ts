// Test helpers: scratch files, real page protections, child processes.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, rmSync, statfsSync } from 'node:fs';
import { expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import type { DaxFile, Mapping } from 'udax';
import { asyncTrackerAvailability, mappingAddress, sigbusTrackerAvailability } from 'udax/testing';

/** The tracker files open with in this run (npm test runs the suite with the
 * default, auto, and again with UDAX_TRACKER=sigsegv and =sigbus). Scratch
 * files are on tmpfs, where auto without async picks sigbus if it can. */
export const TRACKER: 'async' | 'sigbus' | 'sigsegv' = (() => {
  const env = process.env.UDAX_TRACKER;
  if (env === 'sigsegv' || env === 'sigbus' || env === 'async') return env;
  if (asyncTrackerAvailability().available) return 'async';
  return sigbusTrackerAvailability().available ? 'sigbus' : 'sigsegv';
})();
/** For test.skipIf: the test is about the SIGSEGV tracker's mprotect (its
 * VMAs: /proc/self/maps, the VMA budget, coarsening, early writeback). */
export const notSigsegv = TRACKER !== 'sigsegv';
/** For test.skipIf: the test is about the sigbus tracker. */
export const notSigbus = TRACKER !== 'sigbus';
/** For test.skipIf: the test is about the async tracker. */
export const notAsync = TRACKER !== 'async';
/** For test.skipIf: the test is about a fault hook (sigsegv and sigbus:
 * fault counts, write-protected pages, setWriteFault; async has none). */
export const noFaultHook = TRACKER === 'async';

/** Stores the tracker has seen: write faults (sigsegv, sigbus) or written
 * pages harvested (async; stats() harvests first). */
export function writesSeen(f: DaxFile): number {
  const s = f.stats();
  return TRACKER === 'async' ? s.pagesHarvested : s.writeFaults;
}

/** Bytes free on /dev/shm, where the scratch files go. */
export function shmFree(): number {
  const s = statfsSync('/dev/shm');
  return s.bavail * s.bsize;
}

/** For test.skipIf: true (and says why) when /dev/shm has less than bytes
 * free, since a store past a full tmpfs kills the worker with SIGBUS. */
export function shortOfShm(bytes: number, test: string): boolean {
  const free = shmFree();
  if (free >= bytes) return false;
  const mib = (n: number) => Math.floor(n / 2 ** 20);
  console.warn(`skipped '${test}': it needs ${mib(bytes)} MiB free on /dev/shm, ${mib(free)} MiB are (docker: --shm-size=1g)`);
  return true;
}

let counter = 0;
const made: string[] = [];

/** A fresh path on /dev/shm, removed after the test file. */
export function scratchPath(tag = 'f'): string {
  const path = `/dev/shm/udax-test-${process.pid}-${tag}-${counter++}`;
  made.push(path);
  return path;
}

/** Remove the scratch files, with the media and images udax made beside them. */
export function removeScratch(): void {
  for (const p of made.splice(0)) for (const q of [p, `${p}.media`, `${p}.img`]) rmSync(q, { force: true });
}

interface Vma { start: number; end: number; perms: string }

function vmas(): Vma[] {
  return readFileSync('/proc/self/maps', 'utf8').trim().split('\n').map((line) => {
    const [range, perms] = line.split(' ');
    const [a, b] = range.split('-');
    return { start: parseInt(a, 16), end: parseInt(b, 16), perms };
  });
}

/** The kernel's protection of each page of [offset, offset+length) of a
 * mapping: true = a store would not fault: the VMA's permissions in
 * /proc/self/maps, and with the sigbus tracker not userfaultfd
 * write-protected either (uffdProtectedPages). */
export function writablePages(m: Mapping, offset = 0, length = m.length): boolean[] {
  const base = mappingAddress(m);
  const all = vmas();
  const out: boolean[] = [];
  for (let p = offset; p < offset + length; p += 4096) {
    const addr = base + p;
    const vma = all.find((v) => addr >= v.start && addr < v.end);
    if (!vma) throw new Error(`no VMA at ${addr.toString(16)}`);
    out.push(vma.perms[1] === 'w');
  }
  if (TRACKER !== 'sigbus') return out;
  const wp = uffdProtectedPages(base + offset, length);
  return out.map((w, i) => w && !wp[i]);
}

/** PM_UFFD_WP of /proc/self/pagemap (a present page's bit, or a hole's
 * marker). */
const PM_UFFD_WP = 1n << 57n;

/** Per page of [address, address+length): is it userfaultfd write-protected
 * (the sigbus tracker's protection), from /proc/self/pagemap bit 57. */
export function uffdProtectedPages(address: number, length: number): boolean[] {
  const pages = Math.ceil(length / 4096);
  const words = new BigUint64Array(pages);
  const fd = openSync('/proc/self/pagemap', 'r');
  try {
    const got = readSync(fd, new Uint8Array(words.buffer), 0, pages * 8, Math.floor(address / 4096) * 8);
    if (got !== pages * 8) throw new Error(`short read of /proc/self/pagemap: ${got} of ${pages * 8} bytes`);
  } finally {
    closeSync(fd);
  }
  return Array.from(words, (w) => (w & PM_UFFD_WP) !== 0n);
}

export const distIndex = fileURLToPath(new URL('../dist/src/index.js', import.meta.url));

/** Run an ES module script in a child node process with a timeout. */
export function runChild(script: string, opts: { timeout?: number; env?: NodeJS.ProcessEnv; args?: string[] } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [...(opts.args ?? []), '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: opts.timeout ?? 20_000,
    env: { ...process.env, ...opts.env },
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A worker script of test/workers/. */
export const workerUrl = (name: string) => new URL(`./workers/${name}`, import.meta.url);

/** The next message from w that match accepts (or the worker's error). */
export function nextMessage(w: import('node:worker_threads').Worker, match?: (m: unknown) => boolean): Promise<any> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown) => {
      if (match && !match(m)) return;
      w.off('message', onMessage);
      w.off('error', reject);
      resolve(m);
    };
    w.on('message', onMessage);
    w.once('error', reject);
  });
}

/** A matcher for a DaxError with this code (and syscall). */
export const daxError = (code: string, syscall?: string) =>
  expect.objectContaining({ name: 'DaxError', code, ...(syscall ? { syscall } : {}) });
