// Writeback: the kernel's dax_writeback_mapping_range / dax_writeback_one.
//
// 1. tagForWriteback: every DIRTY entry in range gets TOWRITE (a snapshot, so
//    writers that keep dirtying cannot livelock the sync).
// 2. writebackRun, per contiguous run of tagged entries, ascending:
//    lock the run -> for entries still DIRTY|TOWRITE: mkclean (write-protect
//    in every tracked mapping) + flush their cache lines -> one fence -> clear
//    DIRTY and TOWRITE of exactly those -> unlock and wake. An entry whose
//    TOWRITE is gone was written back by a concurrent sync after our
//    snapshot: nothing left to do.
// A store that arrives meanwhile faults on the read-only page, waits for the
// entry lock, and re-dirties the entry after the flush: nothing is lost.
// Writeback records errors (injected ones, in the errseq word, through the
// hooks) and never reports them: only sync does (file.ts, handle.ts), so an
// internal writeback (near the VMA budget) cannot swallow a user's error.
import { DIRTY, holdsEntryLocks, TOWRITE, type EntryTable } from './entry.js';
import { shrankError } from './errors.js';
import { native } from './native.js';
import type { WritebackHooks, WritebackPlan } from './persist.js';

/** What one sync wrote back. */
export interface SyncResult {
  /** Entries this call flushed and cleaned. */
  entries: number;
  /** Bytes whose cache lines it flushed. */
  bytes: number;
}

/** Entries locked at once: ~4 MiB, so writers stall briefly at most. */
function maxRunEntries(table: EntryTable): number {
  return Math.max(1, (4 * 1024 * 1024) >>> table.shift);
}

/** Mark every DIRTY entry of [first, last] TOWRITE; returns them ascending. */
export function tagForWriteback(table: EntryTable, first: number, last: number): number[] {
  const tagged: number[] = [];
  table.forEachMaybeDirty(first, last, (i) => {
    const words = table.words;  // (views widen when another process grows the file)
    const v = Atomics.load(words, i);
    if (!(v & DIRTY)) return;
    if (!(v & TOWRITE)) Atomics.or(words, i, TOWRITE);
    tagged.push(i);
  });
  return tagged;
}

/** What mkcleanFlush reports: 1 when a sigsegv peer did not ack its shootdown. */
const shootdown = new Float64Array(1);

/** Write back the tagged entries [first, last] (all tagged by the caller's
 * snapshot). Holds their locks, ascending, for the whole run. */
function writebackRun(table: EntryTable, first: number, last: number, fallbackRegion: number, result: SyncResult, hooks?: WritebackHooks): void {
  // Entries this run flushed: only these may be cleaned. TOWRITE alone is not
  // enough — a concurrent sync may tag an entry after we found it not due
  // (cleaned by a third sync, then re-dirtied), and clearing DIRTY on it
  // would leave a writable page behind a clean entry.
  const flushed = new Uint8Array(last - first + 1);
  // Only entries due when we come to them are locked (a run may span clean
  // gaps; native/writeback.cc WritebackRun says why that is enough).
  const held = new Uint8Array(last - first + 1);
  const dueWord = (i: number) => (Atomics.load(table.words, i) & (DIRTY | TOWRITE)) === (DIRTY | TOWRITE);
  let locked = first;
  try {
    for (; locked <= last; locked++) {
      if (!dueWord(locked)) continue;
      table.lock(locked);
      held[locked - first] = 1;
    }
    let start = -1;
    for (let i = first; i <= last + 1; i++) {
      const due = i <= last && held[i - first] === 1 && dueWord(i);
      if (due && start < 0) start = i;
      if (!due && start >= 0) {
        const bytes = native.mkcleanFlush(table.id, start, i - 1, fallbackRegion, shootdown);
        result.bytes += bytes;
        // A sigsegv peer that did not ack its shootdown may still hold these
        // pages writable: flushed (and copied to the media), kept DIRTY.
        const peersProtected = shootdown[0] === 0;
        if (peersProtected) flushed.fill(1, start - first, i - first);
        // persist.ts: media copy, injected errors (entries to keep dirty), delay
        const keepDirty = hooks?.flushed(start, i - 1, bytes);
        if (keepDirty) for (const k of keepDirty) flushed[k - first] = 0;
        if (peersProtected) result.entries += i - start - (keepDirty?.length ?? 0);
        start = -1;
      }
    }
    native.fence();
    hooks?.fenced();
  } catch (e) {
    for (let i = first; i < locked; i++) if (held[i - first]) table.unlock(i);  // still DIRTY: nothing is lost
    throw shrankError(e, table.path, '; the dirty entries stay dirty');
  }
  for (let i = first; i <= last; i++) {
    if (!held[i - first]) continue;
    if (flushed[i - first]) table.cleanAndUnlock(i);
    else table.unlock(i);
  }
}

/** What a native run reports: entries cleaned, bytes flushed, bytes copied
 * to the media, ns copying, entries flushed but kept DIRTY (a sigsegv peer
 * did not ack its shootdown in time: flush now, clean later). */
const runResult = new Float64Array(5);

/** writebackRun in one native call (native/writeback.cc WritebackRun). */
function nativeRun(table: EntryTable, first: number, last: number, fallbackRegion: number, plan: WritebackPlan, result: SyncResult): void {
  try {
    native.writebackRun(table.id, first, last, fallbackRegion, table.self, plan.mediaRegion, runResult);
    result.entries += runResult[0];
    result.bytes += runResult[1];
    plan.mediaCopied(runResult[2], runResult[3]);
  } catch (e) {
    throw shrankError(e, table.path, '; the dirty entries stay dirty');
  }
}

/** sync: write back every entry of [first, last] that is dirty now. Returns
 * once each has been flushed and fenced, by this call or a concurrent one. */
export function writeback(table: EntryTable, first: number, last: number, fallbackRegion: number, plan: WritebackPlan): SyncResult {

  const started = process.hrtime.bigint();
  const result: SyncResult = { entries: 0, bytes: 0 };
  const tagged = tagForWriteback(table, first, last);
  const maxRun = maxRunEntries(table);
  // A run is one native call (which copies to the media too); with hooks
  // (injected errors, timing), or inside withEntriesLocked (where a lock this
  // thread holds must throw ERR_UDAX_DEADLOCK, not abort), the same steps in JS.
  const inOneCall = plan.native && !holdsEntryLocks();
  // Each run costs a round trip to every sigsegv peer that may hold pages
  // writable (its shootdown): then a run spans clean gaps (locked, skipped)
  // up to maxRun entries, so scattered dirty entries cost one, not one each.
  const spanGaps = tagged.length > 1 && native.inodeShootdownPeers(table.id) > 0;
  for (let k = 0; k < tagged.length; ) {
    let end = k;
    if (spanGaps) while (end + 1 < tagged.length && tagged[end + 1] - tagged[k] < maxRun) end++;
    else while (end + 1 < tagged.length && tagged[end + 1] === tagged[end] + 1 && end + 1 - k < maxRun) end++;
    if (inOneCall) nativeRun(table, tagged[k], tagged[end], fallbackRegion, plan, result);
    else writebackRun(table, tagged[k], tagged[end], fallbackRegion, result, plan.hooks);
    k = end + 1;
  }
  table.addStat('syncs', 1);
  table.addStat('entriesCleaned', result.entries);
  table.addStat('bytesFlushed', result.bytes);
  table.addStat('syncTimeNs', Number(process.hrtime.bigint() - started));
  return result;
}
