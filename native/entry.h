// The entry word: one 32-bit word per entry (4 KiB page or 2 MiB block) of a
// DaxFile. This header is the single source of truth for its layout; the addon
// exports these constants to TypeScript (src/entry.ts), and a test checks both
// sides agree. Mirrors the kernel's DAX entry flags and page-cache tags.
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
// While LOCKED: the low 23 bits of the owner's Linux thread id (pid_max is at
// most 2^22), so a thread that faults on an entry it holds is detected.
#define UDAX_ENTRY_OWNER_SHIFT 8
#define UDAX_ENTRY_OWNER_MASK 0x7fffff00u
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

// Per-file statistics: 64-bit counters after the summary, updated by the fault
// handler (atomically) and by TypeScript (Atomics.add on a BigInt64Array).
enum udax_stat {
  UDAX_STAT_WRITE_FAULTS = 0,   // write faults handled (re-dirtied entries)
  UDAX_STAT_FAULT_NS,           // time spent in the fault handler
  UDAX_STAT_COARSEN_BLOCK,      // faults that unprotected a whole 2 MiB block
  UDAX_STAT_COARSEN_MAPPING,    // faults that unprotected a whole mapping
  UDAX_STAT_SYNCS,              // sync calls
  UDAX_STAT_ENTRIES_CLEANED,    // entries written back and cleaned
  UDAX_STAT_BYTES_FLUSHED,      // bytes whose cache lines were flushed
  UDAX_STAT_FLUSH_NS,           // time in mkclean + flush + fence
  UDAX_STAT_PREPARE_WRITES,     // entries dirtied by prepareWrite
  UDAX_STAT_EARLY_WRITEBACKS,   // syncs udax ran itself, near the VMA budget
  UDAX_STAT_COUNT
};

#endif
