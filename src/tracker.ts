// Fault tracking behind one small interface; writeback only sees entry tags.
//   sigsegv  mprotect read-only; the SIGSEGV handler runs the kernel's fault
//            protocol (lock -> DIRTY -> writable -> unlock): the faithful one,
//            at a signal and an mprotect per first store, one VMA per island.
//   sigbus   userfaultfd write-protect in sync mode with UFFD_FEATURE_SIGBUS
//            (native/uffd_sigbus.cc): the same fault protocol as sigsegv, the
//            handler un-protects with UFFDIO_WRITEPROTECT, per PTE: no VMA
//            splitting, so no VMA budget, coarsening or early writeback.
//            tmpfs only (ext4 refuses the registration). Signal-bound cost.
//   async    userfaultfd WP_ASYNC: the kernel resolves write faults itself
//            and marks the page written; every writeback first harvests the
//            written pages into DIRTY entries (native/uffd.cc; how it
//            scans: src/scan.ts). No fault hook, no VMA splitting, ~1 µs a
//            fault.
// auto picks async where its self-test passes; else sigbus for a tmpfs file
// where its self-test passes (exact, no VMA limit); else sigsegv.
// Which one a file runs is decided at its first open and kept in its entry
// table, so every open and every worker agrees.
import { typeError, udaxError } from './errors.js';
import type { EntryTable } from './entry.js';
import { fileSystemName, TMPFS_MAGIC } from './constants.js';
import { native } from './native.js';
import type { ScanPolicy } from './scan.js';
import { activeVmaPolicy, nearVmaBudget } from './vma.js';

export type TrackerName = 'sigsegv' | 'sigbus' | 'async';
export type TrackerOption = 'auto' | TrackerName;
export const TRACKER_OPTIONS: readonly TrackerOption[] = ['auto', 'sigsegv', 'sigbus', 'async'];

export interface FaultTracker {
  readonly name: TrackerName;
  /** True when a store to a clean page runs udax's fault hook (so pages are
   * mprotected and system calls into them need prepareWrite). */
  readonly faultHook: boolean;
  /** Make sure faults on protected pages of tracked mappings reach us. */
  ensureInstalled(): void;
  /** Throw if tracking is broken (so no store can fault forever). */
  check(path: string): void;
  /** True when the tracker's own resources (VMAs) call for early writeback. */
  wantsEarlyWriteback(): boolean;
  /** Before writeback tags: turn what the kernel recorded as written in
   * entries [first, last] into DIRTY entries. */
  harvest(table: EntryTable, first: number, last: number): void;
}

/** Throw if udax's handler for signal was replaced: stores to
 * write-protected pages would then fault forever. */
function checkHandler(signal: 'SIGSEGV' | 'SIGBUS', path: string): void {
  if (!native.faultHandlerIsOurs(signal)) {
    throw udaxError('ERR_UDAX_HANDLER_REPLACED',
      `the ${signal} handler is no longer udax's (was process.on('${signal}') called?); stores to write-protected pages would fault forever:`,
      { syscall: 'sigaction', path });
  }
}

class SigsegvTracker implements FaultTracker {
  readonly name = 'sigsegv';
  readonly faultHook = true;
  #installed = false;

  ensureInstalled(): void {
    if (this.#installed) return;
    activeVmaPolicy();  // before the first tracked mapping can fault
    native.installFaultHandler();
    this.#installed = true;
  }

  wantsEarlyWriteback(): boolean {
    return nearVmaBudget();
  }

  check(path: string): void {
    checkHandler('SIGSEGV', path);
  }

  harvest(): void {}  // the fault handler dirtied entries already
}

class SigbusTracker implements FaultTracker {
  readonly name = 'sigbus';
  readonly faultHook = true;  // system calls into protected pages get EFAULT: prepareWrite

  ensureInstalled(): void {
    native.installFaultHandler();
  }

  wantsEarlyWriteback(): boolean {
    return false;  // per-PTE protection: no VMAs to run out of
  }

  check(path: string): void {
    checkHandler('SIGBUS', path);
  }

  harvest(): void {}  // the fault handler dirtied entries already
}

class AsyncTracker implements FaultTracker {
  readonly name = 'async';
  readonly faultHook = false;

  ensureInstalled(): void {
    native.installFaultHandler();  // its SIGBUS guard protects writeback's flushes
  }

  wantsEarlyWriteback(): boolean {
    return false;
  }

  check(): void {}

  harvest(table: EntryTable, first: number, last: number): void {
    native.harvest(table.id, first, last);
  }
}

/** Run fn with stores from other threads into the file's async mappings
 * held back: they are made read-only whole and a store waits in the fault
 * handler until fn returns (native/freeze.cc). The other trackers' stores
 * fault on write-protected entries already: for them this is just fn(). */
export function withStoresFrozen<T>(tracker: FaultTracker, tableId: number, fn: () => T): T {
  const thaw = freezeStores(tracker, tableId);
  try {
    return fn();
  } finally {
    thaw();
  }
}

/** withStoresFrozen's two halves: freeze now, and the thaw to call once. */
export function freezeStores(tracker: FaultTracker, tableId: number): () => void {
  if (tracker.name !== 'async') return () => {};
  native.freezeAsync(tableId);
  return () => native.thawAsync(tableId);
}

const TRACKERS: Record<TrackerName, FaultTracker> = { sigsegv: new SigsegvTracker(), sigbus: new SigbusTracker(), async: new AsyncTracker() };
/** The kind word in the entry table: 0 until the first open claims it. */
const KIND_CODES: Record<TrackerName, number> = { sigsegv: 1, async: 2, sigbus: 3 };

export interface TrackerAvailability {
  available: boolean;
  /** Why (not): the self-test's outcome. */
  reason: string;
}

let asyncAvailability: TrackerAvailability | undefined;

/** Can this process run the async tracker? A self-test once per process. */
export function asyncTrackerAvailability(): TrackerAvailability {
  if (!asyncAvailability) {
    const r = native.asyncSelfTest();
    asyncAvailability = r.ok
      ? { available: true, reason: 'userfaultfd WP_ASYNC + PAGEMAP_SCAN self-test passed' }
      : { available: false, reason: `${r.detail}: ${r.syscall} failed with errno ${r.errno}` };
  }
  return asyncAvailability;
}

let sigbusAvailability: TrackerAvailability | undefined;

/** Can this process run the sigbus tracker (on tmpfs)? A self-test once per
 * process, with udax's SIGBUS handler installed. */
export function sigbusTrackerAvailability(): TrackerAvailability {
  if (!sigbusAvailability) {
    native.installFaultHandler();
    const r = native.sigbusSelfTest();
    sigbusAvailability = r.ok
      ? { available: true, reason: 'userfaultfd write-protect + UFFD_FEATURE_SIGBUS self-test passed (tmpfs files only)' }
      : { available: false, reason: `${r.detail}: ${r.syscall} failed with errno ${r.errno}` };
  }
  return sigbusAvailability;
}

/** Can the sigbus tracker run on a file of this file system (statfs f_type)?
 * userfaultfd write-protect registers shmem and hugetlbfs only (ext4:
 * EINVAL); udax runs it on tmpfs (hugetlbfs is untested, so refused). */
function sigbusOnFileSystem(fsType: number): TrackerAvailability {
  return fsType === TMPFS_MAGIC
    ? { available: true, reason: 'sigbus runs on this tmpfs file' }
    : { available: false, reason: `userfaultfd write-protect needs a tmpfs file; this one is on ${fileSystemName(fsType)}` };
}

export function trackerAvailability(name: TrackerName): TrackerAvailability {
  if (name === 'async') return asyncTrackerAvailability();
  if (name === 'sigbus') return sigbusTrackerAvailability();
  return { available: true, reason: 'SIGSEGV + mprotect: works everywhere' };
}

/** The tracker option as given, or UDAX_TRACKER, or 'auto'. */
export function trackerOption(given: unknown, env: NodeJS.ProcessEnv = process.env): { option: TrackerOption; explicit: boolean } {
  if (given !== undefined) {
    if (!TRACKER_OPTIONS.includes(given as TrackerOption)) throw typeError(`tracker must be one of ${TRACKER_OPTIONS.join(', ')}, got ${String(given)}`);
    return { option: given as TrackerOption, explicit: given !== 'auto' };
  }
  const fromEnv = env.UDAX_TRACKER;
  if (fromEnv === undefined || fromEnv === '') return { option: 'auto', explicit: false };
  if (!TRACKER_OPTIONS.includes(fromEnv as TrackerOption)) {
    throw Object.assign(new TypeError(`UDAX_TRACKER must be one of ${TRACKER_OPTIONS.join(', ')}, got ${fromEnv}`), { code: 'ERR_INVALID_ARG_VALUE' });
  }
  return { option: fromEnv as TrackerOption, explicit: fromEnv !== 'auto' };
}

/** The tracker an option picks here for a file on fsType (statfs f_type;
 * undefined: not known yet, sigbus counts as possible): 'auto' the fastest
 * available (async, else sigbus on tmpfs, else sigsegv, with the reason); a
 * forced one that is not available throws ERR_UDAX_TRACKER_UNAVAILABLE. */
export function resolveTracker(option: TrackerOption, path?: string, fsType?: number): { name: TrackerName; reason: string } {
  if (option === 'sigsegv') return { name: 'sigsegv', reason: 'forced' };
  if (option === 'sigbus') {
    const s = sigbusUsable(fsType);
    if (s.available) return { name: 'sigbus', reason: 'forced' };
    throw udaxError('ERR_UDAX_TRACKER_UNAVAILABLE', `the sigbus tracker is not available here (${s.reason}):`, { syscall: 'ioctl', path });
  }
  const a = asyncTrackerAvailability();
  if (a.available) return { name: 'async', reason: option === 'auto' ? a.reason : 'forced' };
  if (option === 'auto') {
    const s = sigbusUsable(fsType);
    if (s.available) return { name: 'sigbus', reason: `async unavailable (${a.reason}); ${s.reason}` };
    return { name: 'sigsegv', reason: `async unavailable (${a.reason}); sigbus unavailable (${s.reason})` };
  }
  throw udaxError('ERR_UDAX_TRACKER_UNAVAILABLE', `the async tracker is not available here (${a.reason}):`, { syscall: 'userfaultfd', path });
}

function sigbusUsable(fsType: number | undefined): TrackerAvailability {
  const p = sigbusTrackerAvailability();
  if (!p.available || fsType === undefined) return p;
  return sigbusOnFileSystem(fsType);
}

const SCAN_CODES: Record<ScanPolicy, number> = { armed: native.constants.SCAN_ARMED, populated: native.constants.SCAN_POPULATED };

/** The file's tracker: the one its table holds, or (the first open) name,
 * claimed atomically, with the async scan policy (set before the kind, so
 * whoever sees the kind sees the policy; native reads it at map and scan).
 * Throws ERR_UDAX_ALREADY_OPEN when an explicit request disagrees with the
 * one the file runs. */
export function claimTracker(table: EntryTable, name: TrackerName, explicit: boolean, path: string, scan: ScanPolicy): FaultTracker {
  const word = table.trackerWords;
  const kind = native.constants.TRACKER_KIND;
  if (Atomics.load(word, kind) === 0) Atomics.compareExchange(word, native.constants.TRACKER_SCAN, 0, SCAN_CODES[scan]);
  Atomics.compareExchange(word, kind, 0, KIND_CODES[name]);
  const running = trackerOfTable(table);
  if (explicit && running.name !== name) {
    throw udaxError('ERR_UDAX_ALREADY_OPEN',
      `the file is open (in this or another process) already with the ${running.name} tracker; this open asks for ${name} (close the other first):`,
      { syscall: 'open', path });
  }
  return running;
}

/** The tracker a file's table says it runs (attach: a worker joins it). */
export function trackerOfTable(table: EntryTable): FaultTracker {
  const code = Atomics.load(table.trackerWords, native.constants.TRACKER_KIND);
  const name = (Object.keys(KIND_CODES) as TrackerName[]).find((n) => KIND_CODES[n] === code);
  if (!name) throw new Error(`udax: the file's entry table names no tracker (${code})`);
  return TRACKERS[name];
}

/** The async scan policy a file's table holds (armed unless populated). */
export function scanPolicyOfTable(table: EntryTable): ScanPolicy {
  return Atomics.load(table.trackerWords, native.constants.TRACKER_SCAN) === SCAN_CODES.populated ? 'populated' : 'armed';
}

export function trackerNamed(name: TrackerName): FaultTracker {
  return TRACKERS[name];
}
