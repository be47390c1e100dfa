// Internal declarations shared by the addon's source files.
#ifndef UDAX_H
#define UDAX_H

#include <napi.h>
#include <atomic>
#include <stddef.h>
#include <stdint.h>
#include "entry.h"

// The entry table of one DaxFile: entry words, dirty summary, statistics. One
// anonymous mapping, shared by every thread that attaches to the file.
struct udax_table {
  std::atomic<int> refs;     // attachments (JS views) + live regions
  uint32_t n_entries;
  uint32_t entry_shift;      // 12 (PTE) or 21 (PMD)
  int32_t *entries;          // n_entries words, layout in entry.h
  int32_t *summary;          // DIRTY counts per group, then per 2^UDAX_SUMMARY2_SHIFT groups
  uint32_t groups;           // counters in the first level
  int64_t *stats;            // UDAX_STAT_COUNT counters
  void *mem;
  size_t mem_len;
  size_t entries_bytes, summary_bytes;
  char path[512];            // for messages only
};

#define UDAX_MAX_TABLES 4096
#define UDAX_MAX_REGIONS 8192

enum udax_region_state { REGION_FREE = 0, REGION_BUSY, REGION_LIVE, REGION_TOMBSTONE };

// What the fault handler does on a write fault in a region: nothing (chain:
// a genuine crash), the DAX fault path, or — for the benchmark baseline
// only — a bare mprotect of the page with no entry lock or tag.
enum udax_region_mode { REGION_UNTRACKED = 0, REGION_TRACKED = 1, REGION_BARE = 2 };

// One mapping (the kernel's vma) in the lock-free table the fault handler
// reads. Fields are written while the slot is BUSY and published by a
// release store of state; the handler only trusts a LIVE slot it acquired.
struct udax_region {
  std::atomic<int> state;
  std::atomic<int> users;       // fault handlers and native calls using it now
  std::atomic<int> views;       // external ArrayBuffers still alive
  uintptr_t start, end;         // page-aligned address range
  uint64_t file_offset;         // file offset of start
  int table_id;
  udax_table *table;
  int mode;                     // REGION_UNTRACKED / REGION_TRACKED / REGION_BARE
  uint32_t first_entry;         // entry containing file_offset
  uint32_t n_entries;           // entries the region touches
  uint8_t *writable;            // per entry: 1 while mapped read-write here
  size_t writable_len;
  std::atomic<int32_t> rw_runs; // runs of writable entries (VMA estimate)
};

// Pin r while using it, as the fault handler does: unmapRegion marks a region
// TOMBSTONE, then waits until no one has it pinned before replacing its pages.
// Returns false (not pinned) when r is not LIVE.
inline bool region_pin(udax_region *r) {
  r->users.fetch_add(1, std::memory_order_seq_cst);
  if (r->state.load(std::memory_order_seq_cst) == REGION_LIVE) return true;
  r->users.fetch_sub(1, std::memory_order_release);
  return false;
}
inline void region_unpin(udax_region *r) { r->users.fetch_sub(1, std::memory_order_release); }

extern udax_region g_regions[UDAX_MAX_REGIONS];
extern std::atomic<int> g_regions_high;   // slots in use are below this
extern std::atomic<int64_t> g_vma_used;   // estimated VMAs added by udax
extern std::atomic<int64_t> g_vma_budget; // coarsen beyond this

udax_table *table_get(int id);
pid_t udax_gettid();

// Entry locking shared by the fault handler and the native helpers; the
// TypeScript side implements the same protocol with Atomics (src/entry.ts).
void entry_lock(udax_table *t, uint32_t index);
void entry_unlock(udax_table *t, uint32_t index);
void entry_set_dirty(udax_table *t, uint32_t index);

// Set the protection of entries [first, last] in region r (clipped to the
// region) and keep the writable flags and VMA estimate. Caller holds the
// entry locks. Returns 0 or an errno.
int region_set_prot(udax_region *r, uint32_t first, uint32_t last, bool writable);

// Async-signal-safe messages to stderr (native/message.cc).
void msg_str(const char *s);
void msg_dec(uint64_t v);
void msg_hex(uint64_t v);
[[noreturn]] void msg_abort();  // abort with the default SIGABRT action

void futex_wait_word(int32_t *word, int32_t expected);
void futex_wake_word(int32_t *word);

void flush_range(const void *addr, size_t len);
void flush_fence();

Napi::Error errno_error(Napi::Env env, int err, const char *syscall);

void init_map(Napi::Env env, Napi::Object exports);
void init_flush(Napi::Env env, Napi::Object exports);
void init_fault(Napi::Env env, Napi::Object exports);
void init_futex(Napi::Env env, Napi::Object exports);

#endif
