// Test helpers: scratch files, real page protections, child processes.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { readFileSync, rmSync, statfsSync } from 'node:fs';
import { expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import type { DaxFile, Mapping } from 'udax';
import { asyncTrackerAvailability, mappingAddress } from 'udax/testing';

/** The tracker files open with in this run (npm test runs the suite with the
 * default, auto, and again with UDAX_TRACKER=sigsegv). */
export const TRACKER: 'async' | 'sigsegv' =
  process.env.UDAX_TRACKER === 'sigsegv' || (process.env.UDAX_TRACKER !== 'async' && !asyncTrackerAvailability().available)
    ? 'sigsegv' : 'async';
/** For test.skipIf: the test is about the SIGSEGV tracker's fault hook
 * (fault counts, mprotect'ed pages, the VMA budget, setWriteFault). */
export const notSigsegv = TRACKER !== 'sigsegv';
/** For test.skipIf: the test is about the async tracker. */
export const notAsync = TRACKER !== 'async';

/** Stores the tracker has seen: write faults (sigsegv) or written pages
 * harvested (async; stats() harvests first). */
export function writesSeen(f: DaxFile): number {
  const s = f.stats();
  return TRACKER === 'sigsegv' ? s.writeFaults : s.pagesHarvested;
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
 * mapping, from /proc/self/maps: true = writable. */
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
  return out;
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
