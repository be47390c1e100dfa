// The entry word: one 32-bit word per entry (4 KiB page or 2 MiB block) of a
// file. This header is the single source of truth for its layout, for the
// statistics and for the shape of an entry table; the addon exports these to
// TypeScript (src/native.ts checks them at load, and a test checks both sides
// agree). Mirrors the kernel's DAX entry flags and page-cache tags.
#ifndef UDAX_ENTRY_H
#define UDAX_ENTRY_H

#include <stdint.h>

// Entry lock (the kernel's DAX_LOCKED). Held across "dirty + make writable"
// by the fault path and across "mkclean + flush + fence + clear" by writeback.
#define UDAX_ENTRY_LOCKED 0x1u
// Some shared mapping may hold unflushed stores (PAGECACHE_TAG_DIRTY).
#define UDAX_ENTRY_DIRTY 0x2u
// Snapshot of DIRTY taken when a sync starts (PAGECACHE_TAG_TOWRITE).
#define UDAX_ENTRY_TOWRITE 0x4u
// A thread sleeps on this word's futex; unlock must wake it.
#define UDAX_ENTRY_WAITERS 0x8u
// DIRTY was set by an async harvest while another thread held the lock (the
// harvest never waits for an entry lock: the harvest lock is innermost). The
// owner's clean must keep DIRTY (and TOWRITE); any unlock clears this bit.
#define UDAX_ENTRY_REDIRTY 0x10u
// While LOCKED: the owner, (registry slot + 1, thread index) of the thread
// that holds it (native/sidecar.cc): unique across the processes sharing the
// file, in any pid namespace, and never confused by a reused pid. A thread
// that faults on an entry it holds is detected, and a waiter whose owner has
// died (a terminated worker, a killed process) takes the lock over.
#define UDAX_ENTRY_OWNER_SHIFT 8
#define UDAX_ENTRY_OWNER_MASK 0x7fffff00u
#define UDAX_OWNER_THREAD_BITS 15
// Processes one file's registry holds: slot + 1 fills the owner's other 8 bits.
#define UDAX_SLOTS 255
#define UDAX_ENTRY_FLAGS_MASK 0xffu

// The dirty summary, so a sync of a huge clean file skips clean parts fast:
// exact counts of DIRTY entries, one counter per group of 2^UDAX_SUMMARY_SHIFT
// entries, then one per 2^UDAX_SUMMARY2_SHIFT groups. Both are incremented
// when an entry goes clean -> DIRTY (before its page becomes writable) and
// decremented when writeback cleans it, each under the entry lock. Exact
// counts, not bits: a bit cleared and re-set after a scan lets a concurrent
// sync skip a group that holds an entry dirty before it started (found by
// the model check, model/README.md).
#define UDAX_SUMMARY_SHIFT 6
#define UDAX_SUMMARY2_SHIFT 5

// Per-file statistics: 64-bit counters after the summary, updated by native
// code (atomically) and by TypeScript (Atomics.add on a BigInt64Array).
// X(C name, name in file.stats())
#define UDAX_STATS(X)                                                           \
  X(WRITE_FAULTS, writeFaults)           /* write faults handled */            \
  X(FAULT_NS, faultTimeNs)               /* time in the fault handler */       \
  X(COARSEN_BLOCK, coarsenedBlocks)      /* faults that unprotected a 2 MiB block */ \
  X(COARSEN_MAPPING, coarsenedMappings)  /* ... a whole mapping */             \
  X(SYNCS, syncs)                        /* writebacks run */                  \
  X(ENTRIES_CLEANED, entriesCleaned)     /* entries written back and cleaned */ \
  X(BYTES_FLUSHED, bytesFlushed)         /* bytes whose cache lines were flushed */ \
  X(FLUSH_NS, syncTimeNs)                /* time in writeback */               \
  X(PREPARE_WRITES, preparedEntries)     /* entries dirtied by prepareWrite */ \
  X(EARLY_WRITEBACKS, earlyWritebacks)   /* writebacks near the VMA budget */  \
  X(LOCKS_RECOVERED, locksRecovered)     /* entry locks taken over from dead threads */ \
  X(PAGES_HARVESTED, pagesHarvested)     /* written pages the async tracker's scans found */ \
  X(HARVEST_NS, harvestTimeNs)           /* time in those scans (harvest lock held) */ \
  X(SHOOTDOWNS, shootdowns)              /* sigsegv: write-protect requests posted to peers */ \
  X(SHOOTDOWN_NS, shootdownTimeNs)       /* time writebacks waited for their acks */ \
  X(SHOOTDOWNS_UNACKED, shootdownsUnacked) /* requests not acked in time: flushed, kept DIRTY */

enum udax_stat {
#define UDAX_STAT_ENUM(name, js) UDAX_STAT_##name,
  UDAX_STATS(UDAX_STAT_ENUM)
#undef UDAX_STAT_ENUM
  UDAX_STAT_COUNT
};

// After the statistics: bytes reserved for the persistence model's shared
// state (errseq word, injected errors, counters); src/persist.ts lays it out
// and checks that it fits.
#define UDAX_PERSIST_BYTES 2048

// After the persistence area: the fault tracker's and the file's shared
// lock words. Which
// tracker the file runs (set once by the first open, src/tracker.ts), and
// the async tracker's harvest lock (native/uffd.cc: a futex word, so two
// syncs never interleave "scan consumed the written bit" and "entry DIRTY"),
// and the async tracker's scan policy (set with the kind; src/tracker.ts):
// armed (every mapping write-protected whole at map time, holes included)
// or populated (nothing armed; scans look at present pages only).
#define UDAX_TRACKER_KIND 0
#define UDAX_TRACKER_HARVEST_LOCK 1
#define UDAX_TRACKER_SCAN 2
// The async tracker's freeze word (native/freeze.cc): 0, or the owner tag
// of the thread that holds the file's async mappings read-only.
#define UDAX_TRACKER_FREEZE 3
// The entries [first, last + 1) a harvester is scanning now (0, 0: none):
// whoever takes the harvest lock over from a dead holder dirties them.
#define UDAX_TRACKER_HARVEST_FIRST 4
#define UDAX_TRACKER_HARVEST_END 5
// The file's resize lock (native/resize_lock.cc: a futex word, so resizes
// and fsync's size step in every process exclude each other): 0, or the
// owner tag of its holder.
#define UDAX_TRACKER_RESIZE_LOCK 6
#define UDAX_SCAN_ARMED 1
#define UDAX_SCAN_POPULATED 2
#define UDAX_TRACKER_WORDS 8

// After the tracker's words: the file's sizes, int64 words (BigInt64 in TS),
// written by native/resize.cc under the file's resize lock and read by
// every open of the file in every thread (a DaxFile's size is LIVE):
//   LIVE     bytes the file has now (what stat() says)
//   DURABLE  bytes a crash would leave (set by fsync: sizes are metadata)
//   RESIZES  size changes so far (a DaxFile refreshes its mappings when it moves)
#define UDAX_SIZE_LIVE 0
#define UDAX_SIZE_DURABLE 1
#define UDAX_SIZE_RESIZES 2
//   HIGH_WATER entries ever live (udax_inode.high_water, for every process)
#define UDAX_SIZE_HIGH_WATER 3
#define UDAX_SIZE_WORDS 4

// The largest entry count of one file (entry indices are int32 in TS).
#define UDAX_MAX_ENTRIES 0x7fffffffu
// An entry table reserves (MAP_NORESERVE) room for a file of this many bytes,
// or of its open size if larger: a file grows in place up to that, so no
// thread's view of the table is ever invalidated; past it, resize is EFBIG.
#define UDAX_TABLE_RESERVE_BYTES (1ull << 36)

#endif
