// udax/testing: mechanisms for benchmarks and tests, beside the public API.
// Nothing here is needed to use udax; everything here is real (the same
// native code), only not policy: the benchmark's bare baseline, the forced
// 2016 ordering, the VMA budget, raw flushes, and views of the entry words.
import type { DaxFile } from './file.js';
import { DIRTY, LOCKED, TOWRITE, WAITERS } from './entry.js';
import type { Mapping } from './mapping.js';
import { native } from './native.js';
import { activeVmaPolicy, applyVmaPolicy, vmaPolicy, type VmaPolicy } from './vma.js';
import { tagForWriteback as tag } from './writeback.js';
import { trackerNamed, withStoresFrozen } from './tracker.js';
import * as check from './validate.js';

export type { VmaPolicy } from './vma.js';
export { mulberry32 } from './prng.js';
export { fileSystemName, TMPFS_MAGIC } from './constants.js';
export { WINDOW_STRIDE } from './window.js';
/** errseq_t, as lib/errseq.c (src/errseq.ts). */
export { errseqCheckAndAdvance, errseqSample, errseqSet } from './errseq.js';

/** The addon's constants, as native/entry.h defines them. */
export const NATIVE_CONSTANTS = native.constants;

/** The flush instruction the addon runs now. */
export function flushInstructionInUse(): string {
  return native.flushInstruction();
}

/** The entry word's bits (native/entry.h). */
export const ENTRY_BITS = Object.freeze({ LOCKED, DIRTY, TOWRITE, WAITERS });

/** What a write fault in a tracked mapping runs (native/testing.cc):
 * 'dax' udax's own; 'delayed' udax's ordering with a sleep between DIRTY and
 * making the page writable; '2016' the 2016 patch's ordering (DIRTY, unlock,
 * sleep, then writable); 'bare' mprotect only (no lock, no tag). */
export type WriteFaultKind = 'dax' | 'delayed' | '2016' | 'bare';

export function setWriteFault(mapping: Mapping, kind: WriteFaultKind, delayNs = 0): void {
  check.integer('delayNs', delayNs, 0);
  native.testingSetWriteFault(mapping.region, kind, delayNs);
}

/** The entry word of entry index (an atomic load). */
export function entryWord(file: DaxFile, index: number): number {
  return Atomics.load(file.table.words, check.integer('index', index, 0, file.table.count - 1));
}

/** The mapping's start address (to read its protections in /proc/self/maps). */
export function mappingAddress(mapping: Mapping): number {
  return native.regionInfo(mapping.region).address;
}

/** VMAs udax's writable islands add now (estimated), and the policy. */
export function vmaUsage(): { used: number } & VmaPolicy {
  return { used: native.vmaUsage().used, ...activeVmaPolicy() };
}

/** Change the VMA budget of this process (every threshold follows it). */
export function setVmaBudget(budget: number): void {
  applyVmaPolicy(vmaPolicy(check.integer('budget', budget, 1), 'udax/testing'));
}

/** A shared mapping of the whole file that udax does not track: stores never
 * fault, sync never sees them (the benchmark's raw baselines). */
export function mapUntracked(file: DaxFile): Mapping {
  file.assertOpen('mmap');
  return file.mapRange(0, file.size, false, false);
}

/** A tracked mapping whose write faults only mprotect the page writable
 * (the benchmark's bare SIGSEGV + mprotect baseline). */
export function mapBare(file: DaxFile): Mapping {
  file.assertOpen('mmap');
  const sigsegv = trackerNamed('sigsegv');  // whichever tracker the file runs
  sigsegv.ensureInstalled();
  const m = file.mapRange(0, file.size, false, true, sigsegv);
  setWriteFault(m, 'bare');
  return m;
}

/** A mapping registered with the userfaultfd in WP_ASYNC mode and armed, that
 * udax never harvests (the benchmark's bare async baseline; the file's own
 * syncs would). Needs the async tracker available. */
export function mapBareAsync(file: DaxFile): Mapping {
  file.assertOpen('mmap');
  return file.mapRange(0, file.size, false, true, trackerNamed('async'));
}

/** Write-protect [offset, offset+length) of a mapBareAsync mapping again
 * (the bare async baseline's sync: no scan, no tags). */
export function uffdWriteProtect(mapping: Mapping, offset: number, length: number): void {
  native.testingUffdWriteProtect(mapping.region, offset, length);
}

/** mprotect entries [first, last] of a mapping read-only (the bare baseline's sync). */
export function writeProtect(mapping: Mapping, first: number, last: number): void {
  const err = native.regionProtect(mapping.region, first, last, false);
  if (err !== 0) throw new Error(`mprotect failed with errno ${err}`);
}

/** msync(MS_SYNC) of part of a mapping: the kernel's own writeback. */
export function msync(mapping: Mapping, offset: number, length: number): void {
  native.regionMsync(mapping.region, offset, length);
}

/** clwb (or the chosen instruction) every cache line behind bytes; no fence. */
export function flushBytes(bytes: ArrayBufferView): void {
  native.flushBuffer(bytes);
}

/** sfence. */
export function fence(): void {
  native.fence();
}

/** Writeback's first step alone: tag the DIRTY entries of [first, last]
 * TOWRITE; returns them (the benchmark's phase breakdown). */
export function tagForWriteback(file: DaxFile, first: number, last: number): number[] {
  return tag(file.table, first, last);
}

/** The async tracker's harvest alone (what every writeback runs first):
 * DIRTY each entry with a page written since the last harvest; returns the
 * written pages found (0 for a sigsegv file: nothing to harvest). */
export function harvest(file: DaxFile): number {
  file.assertOpen('ioctl');
  return file.tracker === 'async' ? native.harvest(file.table.id, 0, file.table.count - 1) : 0;
}

/** Run fn with stores from other threads into file's async mappings held
 * back until it returns, as a volume snapshot does (sigsegv, sigbus: fn
 * alone; their snapshots hold stores back through write-protected entries). */
export function withAsyncStoresFrozen<T>(file: DaxFile, fn: () => T): T {
  file.assertOpen('mprotect');
  return withStoresFrozen(file.faultTracker, file.table.id, fn);
}

/** Sleep delayNs in every harvest between the scan (which consumed the
 * written bits) and dirtying the entries: the window the harvest lock
 * closes (0 restores no delay). Process-wide. */
export function setHarvestDelay(delayNs: number): void {
  native.testingSetHarvestDelay(check.integer('delayNs', delayNs, 0));
}

/** Sleep delayNs inside every resize this process makes, holding the
 * file's resize lock (shared by every process), after a grow grew the files
 * and before it publishes the size, or after a shrink published the size
 * and before it cuts the file: where a process killed mid-resize leaves the
 * most to reconcile (0 restores no delay). Process-wide. */
export function setResizeDelay(delayNs: number): void {
  native.testingSetResizeDelay(check.integer('delayNs', delayNs, 0));
}

/** madvise part of a mapping: 'pageout' or 'dontneed' zap its pages, as the
 * kernel's reclaim does. */
export function madvise(mapping: Mapping, offset: number, length: number, advice: 'pageout' | 'dontneed'): void {
  native.testingMadvise(mapping.region, offset, length, advice);
}

/** fork() this process; the child reports what is mapped at the mapping's
 * addresses ('unmapped', 'mapped', or 'partly') and exits at once. Tracked
 * mappings are MADV_DONTFORK: a child finds nothing there. */
export function forkProbe(mapping: Mapping): 'unmapped' | 'mapped' | 'partly' {
  return native.testingForkProbe(mapping.region);
}

/** Make userfaultfd() fail with EPERM in this process from now on (a
 * seccomp filter, as Docker's profile: irreversible — child processes only). */
export function refuseUserfaultfd(): void {
  native.testingRefuseUserfaultfd();
}

/** Make the PAGEMAP_SCAN ioctl fail with ENOTTY in this process from now on,
 * as on a kernel before 6.7 (async unavailable, sigbus still possible).
 * Irreversible: child processes only. */
export function refusePagemapScan(): void {
  native.testingRefusePagemapScan();
}

/** The bare userfaultfd WP_ASYNC write fault, ns per page, measured on a
 * memfd with no udax in the way (the benchmark's floor for async). */
export function asyncFaultNs(pages: number): number {
  return native.testingAsyncFault(check.integer('pages', pages, 1));
}

export { asyncTrackerAvailability, sigbusTrackerAvailability } from './tracker.js';
/** Delta debugging (ddmin), as checkVolumeRecovery reduces failures with it. */
export { ddmin } from './volume-check.js';
