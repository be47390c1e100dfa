// Internal declarations shared by the addon's source files: one object per
// file — inodes (entry tables), open files, regions (mappings) — each named
// from JS by a generation-checked id, so a stale or forged id is refused
// (EBADF) and never resolves to another file's table or memory.
#ifndef UDAX_H
#define UDAX_H

#include <napi.h>
#include <atomic>
#include <fcntl.h>
#include <signal.h>
#include <mutex>
#include <vector>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include "entry.h"

// ---- ids -------------------------------------------------------------------
// id = generation * slots + slot; the generation of a slot changes each time
// it is freed, and slots are handed out next-fit so a freed one is reused as
// late as possible.
inline int make_id(uint32_t gen, int slot, int slots) {
  return (int)((gen % (0x7fffffffu / (uint32_t)slots)) * (uint32_t)slots + (uint32_t)slot);
}
inline int id_slot(int id, int slots) { return id % slots; }
inline uint32_t id_gen(int id, int slots) { return (uint32_t)id / (uint32_t)slots; }
// A JS number argument as an id: -1 when it is not an int32 (EBADF follows).
int arg_id(const Napi::CallbackInfo &info, int i);
// The bytes of the typed array (or DataView's buffer view) argument i.
uint8_t *typed_bytes(const Napi::CallbackInfo &info, int i, size_t *len);

// ---- inodes: the kernel's address_space of one file (native/inode.cc) -------
// Statistics, the persistence area, the tracker's words, the sizes, then the
// entry words and the dirty summary, in one MAP_SHARED mapping of the file's
// sidecar on /dev/shm (native/sidecar.cc), shared by every open of the file
// in every process (any path spelling: keyed by device and inode number).
// Unmapped when the last open in the process is closed and the last view of
// its memory is gone; the last process to go removes the sidecar.
//
// Growth (native/resize.cc): the mapping reserves `capacity` entries (and
// their summary) up front, MAP_NORESERVE, so the table grows in place and no
// pointer or view any thread holds is ever invalidated. Invariant: entries
// [0, inode_entries(t)) are the file's; entries at or past it are not, and
// those below high_water may hold stray state (a store past EOF, a dropped
// entry) that a grow cleans under their locks before publishing them; those
// at or past high_water were never live and are zero. The live size is
// published (release) only after its entries are ready, and read (acquire)
// by whoever needs it: nothing on the store path does.
struct udax_inode {
  std::atomic<int> refs;     // opens + JS buffers + regions
  int opens;                 // open files bound to it (g_objects_mutex)
  int id;
  dev_t dev;
  ino_t ino;
  uint32_t capacity;         // entries reserved
  uint32_t entry_shift;      // 12 (PTE) or 21 (PMD)
  int32_t *entries;          // capacity words, layout in entry.h
  int32_t *summary;          // DIRTY counts per group, then per 2^UDAX_SUMMARY2_SHIFT groups
  uint32_t groups;           // counters in the first level (for capacity entries)
  int64_t *stats;            // UDAX_STAT_COUNT counters
  uint8_t *persist;          // UDAX_PERSIST_BYTES (src/persist.ts)
  int32_t *tracker;          // UDAX_TRACKER_WORDS (entry.h)
  int64_t *sizes;            // UDAX_SIZE_WORDS (entry.h)
  void *mem;
  size_t mem_len;
  size_t entries_offset, summary_offset;
  char path[512];            // as first opened, for messages only
  // The sidecar (native/sidecar.cc): this process's attachment. No
  // descriptor of it stays open: liveness is the process registry's.
  struct udax_proc_registry *registry;  // the sidecar directory's (native/proc_registry.cc)
  dev_t sidecar_dev;         // the sidecar's identity, checked when reopened
  ino_t sidecar_ino;
  int slot;                  // this process's registry slot
  struct udax_sidecar_hdr *hdr;
  struct udax_sidecar_slot *slots;  // UDAX_SLOTS records
  int32_t *tids;             // UDAX_SLOTS x 2^UDAX_OWNER_THREAD_BITS thread ids
  struct udax_sidecar_range *ranges;  // UDAX_SIDECAR_RANGES records, every process's
  uint64_t pidns;            // this process's pid namespace (inode of /proc/self/ns/pid)
  std::mutex ranges_mutex;   // this process's range records
  std::vector<uint32_t> freed_ranges;  // records this process freed, to reuse first (ranges_mutex)
  uint32_t dead_cleaned[UDAX_SLOTS] = {};  // per peer slot, 1 + the gen whose ranges this process cleaned (harvest lock)
  // Peers' sigbus userfaultfds taken with pidfd_getfd, kept for later syncs
  // while the same process (pid, slot generation) holds the slot.
  std::mutex peer_mutex;
  struct { int fd = -1; int32_t pid = 0; uint32_t gen = 0; } peer_uffd[UDAX_SLOTS];
  char sidecar_path[256];
  // The process whose shootdown helper serves this file (native/shootdown.cc):
  // a forked child's copy of a parent's inode names the parent, whose table
  // is not mapped in the child.
  std::atomic<pid_t> shootdown_pid{0};
};

// The file's size in bytes and its entry count now (acquire: what a resize
// published, with the entries it made ready).
inline uint64_t inode_size(const udax_inode *t) {
  return (uint64_t)__atomic_load_n(&t->sizes[UDAX_SIZE_LIVE], __ATOMIC_ACQUIRE);
}
// Entries ever live (sizes[UDAX_SIZE_HIGH_WATER]: every process's resizes
// move it). Written under the resize lock.
inline uint32_t inode_high_water(const udax_inode *t) {
  return (uint32_t)__atomic_load_n(&t->sizes[UDAX_SIZE_HIGH_WATER], __ATOMIC_ACQUIRE);
}
inline void inode_raise_high_water(udax_inode *t, uint32_t n) {
  if (n > inode_high_water(t)) __atomic_store_n(&t->sizes[UDAX_SIZE_HIGH_WATER], (int64_t)n, __ATOMIC_RELEASE);
}
inline uint32_t inode_entries(const udax_inode *t) {
  return (uint32_t)((inode_size(t) + (1ull << t->entry_shift) - 1) >> t->entry_shift);
}

#define UDAX_MAX_INODES 65536
#define UDAX_MAX_FILES 65536
// Mappings per process: at least vm.max_map_count's default (65530), which
// bounds them anyway (each is one VMA or more).
#define UDAX_MAX_REGIONS 65536

// Guards the inode and file tables (never taken by the fault handler).
extern std::mutex g_objects_mutex;

// The live inode with this id, with a reference the caller drops with
// inode_unref; nullptr for a stale or forged id.
udax_inode *inode_get(int id);
// Drop one open of inode id (the file bound to it is closing). Caller holds
// g_objects_mutex.
void inode_unbind_locked(int id);
void inode_ref(udax_inode *t);
void inode_unref(udax_inode *t);

// The inode named by argument i, referenced for the rest of the native call;
// throws EBADF when the id is stale.
class InodeArg {
 public:
  InodeArg(const Napi::CallbackInfo &info, int i, const char *syscall);
  ~InodeArg() { inode_unref(t_); }
  InodeArg(const InodeArg &) = delete;
  InodeArg &operator=(const InodeArg &) = delete;
  udax_inode *operator->() const { return t_; }
  udax_inode *get() const { return t_; }

 private:
  udax_inode *t_;
};

// An external ArrayBuffer's hold on native memory, released once: by
// releaseBuffer (close, unmap: at once) or by the finalizer (GC).
struct buffer_hold {
  std::atomic<bool> released;
  void (*release)(void *arg);
  void *arg;
};
// A { buffer, hold } object over [data, data+len) that keeps arg alive.
Napi::Object held_buffer(Napi::Env env, void *data, size_t len, void (*release)(void *), void *arg);

// ---- open files: the kernel's struct file (native/file.cc) ------------------
struct udax_file {
  int fd;                    // -1 while parked (fileParkFd)
  int inode_id;              // -1 until bound
  int access;                // O_RDONLY / O_WRONLY / O_RDWR, to open it again
  dev_t dev;                 // what the path named when it was opened
  ino_t ino;
  char path[512];
};
// The open file with this id (caller must not keep it past the native call).
udax_file *file_get(int id);

// The descriptor of open file argument i for the rest of the native call:
// its own, or, for a file whose descriptor is parked (a media file: only
// mapped, sized and stat'ed, so it need not hold a descriptor for its whole
// life), its path opened again, checked to name the same file (ESTALE when
// another file is there now), and closed when the call ends. EBADF for a
// stale id; with optional, a negative id gives -1.
class FileFd {
 public:
  FileFd(const Napi::CallbackInfo &info, int i, const char *syscall, bool optional = false);
  ~FileFd() {
    if (reopened_) close(fd_);
  }
  FileFd(const FileFd &) = delete;
  FileFd &operator=(const FileFd &) = delete;
  int get() const { return fd_; }
  const char *path() const { return path_; }

 private:
  int fd_ = -1;
  bool reopened_ = false;
  char path_[512];
};

// ---- regions: the kernel's vma (native/region.cc) ---------------------------
enum udax_region_state { REGION_FREE = 0, REGION_BUSY, REGION_LIVE, REGION_TOMBSTONE };

struct udax_region;
// What a write-protection fault in a live region does (per-range dispatch:
// production regions run handle_write_fault; native/testing.cc registers
// others for the benchmark baseline and the forced 2016 ordering).
typedef void (*udax_write_fault_fn)(udax_region *r, uintptr_t addr);

// One mapping in the lock-free table the fault handler reads. Fields are
// written while the slot is BUSY and published by a release store of state;
// the handler only trusts a LIVE slot it pinned.
struct udax_region {
  std::atomic<int> state;
  std::atomic<int> users;       // fault handlers and native calls using it now
  std::atomic<int> views;       // external ArrayBuffers still alive
  std::atomic<uint32_t> gen;    // bumped when the slot is freed
  uintptr_t start, end;         // page-aligned address range
  uint64_t file_offset;         // file offset of start
  udax_inode *inode;            // holds a ref
  bool tracked;                 // shared and writable: write-protected, faults dirty entries
  bool async;                   // tracked by userfaultfd WP_ASYNC (native/uffd.cc), not SIGSEGV
  bool sigbus;                  // tracked by userfaultfd WP + SIGBUS (native/uffd_sigbus.cc), not mprotect
  std::atomic<udax_write_fault_fn> on_write_fault;
  uint32_t first_entry;         // entry containing file_offset
  uint32_t n_entries;           // entries the region touches
  uint8_t *writable;            // per entry: 1 while mapped read-write here
  size_t writable_len;
  std::atomic<int32_t> rw_runs; // runs of writable entries (VMA estimate)
  int shared_range;             // async: its record in the sidecar slot, or -1
};

extern udax_region g_regions[UDAX_MAX_REGIONS];
extern std::atomic<int> g_regions_high;   // slots in use are below this

// The regions that may be inode t's: every region of t mapped when the list
// is read is in it, and others may be (a slot since freed and reused): the
// caller pins each and checks r->inode == t and its state, as before.
// regions_of_each runs fn(r, arg) on the list in place, so fn must be short
// and never wait (a map or unmap of a region of t waits for it); false from
// fn stops. Lock-free, async-signal-safe. regions_of copies the list (not in
// a handler: it allocates) for callers whose work may wait.
// regions_of returns false when it cannot allocate (out is then empty).
void regions_of_each(udax_inode *t, bool (*fn)(udax_region *r, void *arg), void *arg);
bool regions_of(udax_inode *t, std::vector<udax_region *> *out) noexcept;
// fn(r) (true: go on) for each region that may be t's, on a copy, or on the
// list in place when no copy can be made (out of memory: a map or unmap of
// t's regions then waits for fn). Not in a handler, nor under guard_sigbus.
template <typename Fn>
void for_each_region_of(udax_inode *t, Fn fn) {
  std::vector<udax_region *> copy;
  if (regions_of(t, &copy)) {
    for (udax_region *r : copy)
      if (!fn(r)) return;
    return;
  }
  regions_of_each(t, [](udax_region *r, void *arg) { return (*(Fn *)arg)(r); }, &fn);
}

// The region whose address range holds addr (live, tombstoned, or being
// mapped or freed: the caller pins it and checks state and range again), or
// nullptr. O(log n) in the regions mapped, lock-free and async-signal-safe:
// the fault handlers' lookup (native/region.cc, the address index).
udax_region *region_lookup(uintptr_t addr);

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

// The live region named by argument i, pinned for the rest of the native
// call (a concurrent unmap waits for it); throws EBADF when the id is stale.
class PinnedRegion {
 public:
  PinnedRegion(const Napi::CallbackInfo &info, int i);
  ~PinnedRegion() { region_unpin(r_); }
  PinnedRegion(const PinnedRegion &) = delete;
  PinnedRegion &operator=(const PinnedRegion &) = delete;
  udax_region *operator->() const { return r_; }
  udax_region *get() const { return r_; }

 private:
  udax_region *r_;
};

// The address of bytes [offset, offset+length) of region r (arguments i and
// i+1); EINVAL naming syscall when they are not inside it.
uintptr_t region_range(const Napi::CallbackInfo &info, udax_region *r, int i, const char *syscall, size_t *length);

// Set the protection of entries [first, last] in region r (clipped to the
// region) and keep the writable flags and VMA estimate. Caller holds the
// entry locks. Returns 0 or an errno.
int region_set_prot(udax_region *r, uint32_t first, uint32_t last, bool writable);
// Write-protect (mprotect PROT_READ) every run of r's entries flagged
// writable that meets [first, last], each run whole (so no VMA splits that
// the estimate does not count), and leave the flags set: the shootdown
// helper runs without the entry locks, and flags that say writable over a
// read-only page are safe (a store faults and makes it writable again),
// while a flag cleared over a page a fault just made writable is not.
// 0 or an errno.
int region_write_protect_runs(udax_region *r, uint32_t first, uint32_t last);

// The VMA policy, computed in TypeScript (src/vma.ts) and set once.
struct udax_vma_policy {
  std::atomic<int64_t> used;           // estimated VMAs udax's writable islands add
  std::atomic<int64_t> budget;         // past this, faults coarsen to a 2 MiB block
  std::atomic<int64_t> whole_mapping;  // past this, straight to the whole mapping
};
extern udax_vma_policy g_vma;

// ---- OFD locks (native/ofd_lock.cc) -------------------------------------------
// A write lock on bytes [start, start+len) of fd's open file description
// (len 0: to the end), never waiting: 0, or the errno (EAGAIN: another
// description holds a conflicting one).
int ofd_lock_range(int fd, off_t start, off_t len);
// Does another open file description hold a write lock on [start,
// start+len) of fd? (One's own never conflicts; true when fcntl cannot
// tell.) Async-signal-safe.
bool ofd_locked_by_other(int fd, off_t start, off_t len);

// ---- the process registry (native/proc_registry.cc) -------------------------
#define UDAX_PROC_RECORDS 4096u  // processes using one sidecar directory at once
// The layout of the registry and of the sidecars together (each names its
// version, and a sidecar's liveness is the registry's): processes of another
// layout never join, judge or sweep these files, nor these theirs.
#define UDAX_SHARED_LAYOUT 5
// One per sidecar directory: record i is owned by the process holding an OFD
// write lock on byte i of `<dir>/udax-procs-v5.<uid>`, with a generation new for
// each owner. One descriptor per process, for its life.
struct udax_proc_registry {
  char dir[256];
  int fd = -1;               // set last when joined
  void *recs = nullptr;      // the records, MAP_SHARED
  uint32_t self;             // this process's record
  uint64_t gen;              // and its generation
};
// This process's record in dir's registry, joined on first use. nullptr with
// *err and *call set when it cannot be.
udax_proc_registry *proc_registry_join(const char *dir, int *err, const char **call);
// Is the owner of record index, generation gen, alive? (async-signal-safe)
bool proc_alive(const udax_proc_registry *reg, uint32_t index, uint64_t gen);
// In a forked child: drop the parent's registry descriptors (pthread_atfork).
void proc_registry_forget_in_child();
// The wait-for graph of entry-lock waiters across processes (native/lock.cc):
// the word of thread index `thread` of record `record` (nullptr for none).
// Async-signal-safe.
#define UDAX_WAIT_THREADS (1u << UDAX_OWNER_THREAD_BITS)
std::atomic<uint32_t> *proc_wait_word(const udax_proc_registry *reg, uint32_t record, uint32_t thread);

// ---- the sidecar: the table shared by processes (native/sidecar.cc) ----------
// Layout of the sidecar file (one per data file, /dev/shm/udax-table-v5.<dev>.<ino>):
//   [0, 4096)        header: magic, the data file's identity (dev, ino, birth
//                    time), the table's shape
//   slots            UDAX_SLOTS records, one per attached process: its
//                    process-registry record, pid, pid namespace
//   ranges           UDAX_SIDECAR_RANGES records of mapped ranges, each
//                    tagged with its process's slot and slot generation
//   tids             per slot, the thread id behind each owner thread index
//   table            stats, persistence, tracker words, sizes, entries, summary
// Slot k's process is alive while the registry record it names is (its
// generation included). flock(LOCK_EX) on the sidecar serialises attach and
// detach; no descriptor stays open between them.
#define UDAX_SIDECAR_RANGES (1u << 17)
// A range record's owner word: slot + 1 in the low 32 bits, the slot's
// generation above; with UDAX_RANGE_BUSY while its owner writes it; 0: free.
#define UDAX_RANGE_BUSY (1ull << 63)
struct udax_sidecar_range {
  uint64_t owner;            // the fields below are its owner's while this says so
  uint64_t start;            // address in the owner's address space
  uint64_t end;
  uint64_t file_offset;
};
// The sigsegv shootdown (native/shootdown.cc): a syncer posts entry ranges
// here and wakes the slot's helper thread, which write-protects its own
// mappings of them and acks. Zeroed by each claimer of the slot.
struct udax_shootdown {
  // Writable runs of its tracked sigsegv mappings of the file, counted as
  // their flags are (a superset: raised before a page becomes writable,
  // lowered after it is read-only again or gone). 0: nothing to protect.
  int32_t writable_runs;
  int32_t tid;               // its helper thread (0: none yet)
  int32_t signo;             // the signal that wakes the helper
  uint32_t req;              // requests posted so far
  uint32_t ack;              // requests done (a futex word: the syncer sleeps on it)
  uint32_t first, last;      // entries to protect, merged over requests (first > last: none)
  uint32_t stalled;          // a request a syncer gave up waiting for (0: none): until
                             // it is acked, later syncers do not wait at all
};
struct udax_sidecar_slot {
  int32_t pid;               // 0 once its process detached cleanly
  uint32_t gen;              // bumped by each claimer; its range records carry it
  uint64_t pidns;
  uint64_t proc_gen;         // the registry record's generation
  uint32_t proc;             // registry record + 1; 0: free. Written last by a claimer
  int32_t sigbus_uffd;       // sigbus tracker: its userfaultfd's fd number + 1 (0: none)
  uint32_t live_ranges;      // its range records (a hint: 0 lets a scan skip it)
  uint32_t pad;
  udax_shootdown shoot;
};
struct udax_sidecar_hdr {
  uint64_t magic;            // written last by the initialiser
  uint32_t version, entry_shift;
  uint64_t dev, ino;
  int64_t btime_sec;
  uint32_t btime_nsec, capacity;
  uint64_t mem_len;
  uint32_t next_slot;        // slots are claimed next-fit: a dead one is reused late
  uint32_t slots_high;       // slots ever claimed are below this
  uint32_t ranges_high;      // range records ever used are below this
};
inline uint64_t sidecar_range_owner(int slot, uint32_t gen) { return ((uint64_t)gen << 32) | (uint32_t)(slot + 1); }
// f(start, end, file_offset) for each range record of `owner` (a live
// slot's, or a dead one's generation). A record freed or reused meanwhile can
// show a range of the same owner: the callers' effects (a scan, a
// write-protect, DIRTY) are harmless on a range that is not the file's.
template <class F> void sidecar_for_each_range(udax_inode *t, uint64_t owner, F f) {
  uint32_t high = __atomic_load_n(&t->hdr->ranges_high, __ATOMIC_ACQUIRE);
  if (high > UDAX_SIDECAR_RANGES) high = UDAX_SIDECAR_RANGES;
  for (uint32_t i = 0; i < high; i++) {
    udax_sidecar_range *r = &t->ranges[i];
    if (__atomic_load_n(&r->owner, __ATOMIC_ACQUIRE) != owner) continue;
    uint64_t start = r->start, end = r->end, file_offset = r->file_offset;
    if (__atomic_load_n(&r->owner, __ATOMIC_ACQUIRE) != owner || end <= start) continue;
    f((uintptr_t)start, (uintptr_t)end, file_offset);
  }
}
// Slot k's process died with generation gen: the stores in its mappings,
// which no scan can find any more, become DIRTY (as self), and its range
// records are freed (by CAS: a claimer of k and a harvest may both run it).
void sidecar_dirty_dead_ranges(udax_inode *t, int k, uint32_t gen, int32_t self);
// The sidecar's path for data file (dev, ino) in dir.
void sidecar_name(const char *dir, dev_t dev, ino_t ino, char *out, size_t len);
// Attach this process to the sidecar of data file fd (dev, ino) in dir, and
// map its table: *created when no live process was attached (the table is
// then fresh, as a first open). Returns the inode (refs 1) or nullptr with
// *err and *call set.
udax_inode *sidecar_attach(const char *dir, int data_fd, uint64_t size, uint32_t shift, dev_t dev, ino_t ino,
                           const char *path, bool *created, int *err, const char **call);
// Detach: drop the liveness lock; the last process removes the sidecar. Unmaps.
void sidecar_detach(udax_inode *t);
// Is registry slot k's process alive, its record (pid, ranges) its own?
// (async-signal-safe)
bool slot_alive(udax_inode *t, int k);
// Is the thread behind owner tag `owner` alive? (async-signal-safe)
bool owner_alive(udax_inode *t, int32_t owner);
// Slots ever claimed are below this (loops over peers stop there).
inline int sidecar_slots_high(const udax_inode *t) {
  int n = (int)__atomic_load_n(&t->hdr->slots_high, __ATOMIC_ACQUIRE);
  return n < UDAX_SLOTS ? n : UDAX_SLOTS;
}
// Live processes attached besides this one.
int sidecar_peers(udax_inode *t);
// Record / forget [start, end) at file_offset as one of this process's async
// or sigbus mappings of t. Publish returns the record index, or -1 when all
// are used. Unpublish: caller holds the harvest lock.
int sidecar_publish_range(udax_inode *t, uintptr_t start, uintptr_t end, uint64_t file_offset);
// Write-protect file entries [first, last] in every live peer's sigbus
// mappings, through its own userfaultfd (pidfd_getfd: PTRACE_MODE_ATTACH).
// Returns 0 or the errno of a write-protect that failed on a live peer.
// Caller holds those entry locks.
int sidecar_mkclean_peers(udax_inode *t, uint32_t first, uint32_t last);
// Could this process take peer slot k's userfaultfd (pidfd_getfd's ptrace
// check)? 0, or the errno.
int sidecar_peer_attach_access(udax_inode *t, int k);
void sidecar_unpublish_range(udax_inode *t, int index);
// At exit: unlink t's sidecar when no other live process holds it.
void sidecar_forget_at_exit(udax_inode *t);
// In a forked child (pthread_atfork): forget the parent's tables and its
// registry descriptors, so the child never keeps its parent "alive".
void sidecar_forget_in_child();

// ---- the sigsegv shootdown (native/shootdown.cc) ------------------------------
// No process can mprotect another's memory: each process with tracked sigsegv
// mappings runs a helper thread that write-protects them on a peer's request.
// A new tracked sigsegv region r of t (before it is LIVE): start the helper
// if needed and publish it in this process's slot. 0 or an errno.
int shootdown_map_added(udax_region *r);
// Add delta to the writable runs this process's slot of r's file counts
// (set_writable_flags; unmapRegion once r's pages are gone). Async-signal-safe.
void shootdown_count_runs(udax_region *r, int32_t delta);
// Live peers of t that may hold pages of it writable under sigsegv.
int shootdown_peer_count(udax_inode *t);
// Slot record s is being claimed: no mappings, no requests.
void shootdown_slot_reset(udax_sidecar_slot *s);
// Have every live peer with tracked sigsegv mappings of t write-protect its
// pages of entries [first, last], waiting a bounded time for each to ack.
// True when all did (or none needed to); false when one did not in time
// (stopped, busy, failing): its pages may still be writable, so the caller
// flushes but must keep those entries DIRTY. Caller holds the entry locks.
bool shootdown_peers(udax_inode *t, uint32_t first, uint32_t last);

// ---- owner-tag locks (native/lock.cc): the harvest lock, the resize lock ----
// Tracker word `word` of t holds its holder's owner tag, and
// UDAX_TAG_LOCK_WAITERS while someone sleeps on it; the other bits below the
// owner field are the lock's own. tag_lock takes it (free: owner field 0),
// taking it over from a holder that died, and returns the word as it was:
// its owner field set when it was a dead holder's (the caller recovers what
// that holder left), else the free word's own bits. tag_unlock stores
// free_value and wakes the sleepers. (Neither lock is taken in a signal
// handler.)
#define UDAX_TAG_LOCK_WAITERS 1
int32_t tag_lock(udax_inode *t, int word, int32_t self);
void tag_unlock(udax_inode *t, int word, int32_t free_value);
void tag_lock_wake(udax_inode *t, int word);

// ---- entry locks (native/lock.cc) -------------------------------------------
// The same protocol src/entry.ts runs with Atomics, so waiters in the fault
// handler and in JS wake each other. All async-signal-safe.
// Take the lock; if a wait-for cycle (threads holding entry locks of their
// own, waiting for each other's) persists, abort with a message naming both
// threads (the fault handlers: they cannot fail).
void entry_lock(udax_inode *t, uint32_t index);
enum lock_result { LOCK_TAKEN, LOCK_RECOVERED, LOCK_DEADLOCK };
enum deadlock_policy { LOCK_WAIT, LOCK_FAIL_ON_DEADLOCK, LOCK_ABORT_ON_DEADLOCK };
lock_result entry_lock_wait(udax_inode *t, uint32_t index, int32_t self, deadlock_policy policy, int32_t *blocker);
void entry_unlock(udax_inode *t, uint32_t index);
// Take the lock as the thread whose owner tag is self (entry.h); true when it
// was taken over from a dead owner. Caller holds no lock above index.
bool entry_lock_as(udax_inode *t, uint32_t index, int32_t self);
void entry_clean_and_unlock(udax_inode *t, uint32_t index);
void entry_set_dirty(udax_inode *t, uint32_t index);
// Slot k's previous process died attached: release every entry lock (and
// the harvest and freeze words) its threads still hold, setting DIRTY on
// each entry, before this process reuses k's owner tags. Caller holds the
// sidecar's flock and owns slot k.
void entry_release_dead_slot(udax_inode *t, int k);
// This thread's owner tag for file t: (registry slot, thread index), entry.h
// (compute once per call: gettid is a syscall). Async-signal-safe.
int32_t entry_owner_tag(udax_inode *t);
// DIRTY entry index without ever waiting (the async harvest, which holds the
// harvest lock): an unlocked entry is locked, dirtied and unlocked; one held
// by another thread gets DIRTY|REDIRTY in one CAS, so its owner's clean keeps
// DIRTY; one self holds is just dirtied.
void entry_dirty_nowait(udax_inode *t, uint32_t index, int32_t self);
pid_t udax_gettid();
// Is thread tid of process pid alive? (async-signal-safe)
bool thread_alive(pid_t pid, pid_t tid);

// ---- userfaultfd, shared by the async and sigbus trackers ---------------------
// Open a userfaultfd (user-mode faults only: no privilege needed) with the
// API handshake for features. Returns the fd, or -errno with *call naming
// the failed call (UFFDIO_API gives EINVAL for an unknown feature).
inline int uffd_create(uint64_t features, const char **call) {
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  if (fd < 0) {
    *call = "userfaultfd";
    return -errno;
  }
  struct uffdio_api api = {UFFD_API, features, 0};
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    int err = errno;
    close(fd);
    *call = "ioctl";
    return -err;
  }
  return fd;
}
// A userfaultfd with some features, and /proc/self/pagemap, opened once per
// process: the first attempt's answer (0, or an errno and the failed call)
// is every later caller's. uffd and pagemap are set once, before open
// returns 0, and never change (the sigbus handler reads them).
struct uffd_once {
  std::mutex mutex;
  int uffd = -1, pagemap = -1, err = 0;
  const char *call = nullptr;
};
int uffd_once_open(uffd_once *u, uint64_t features, const char **call);
// Register [start, start+len) with fd for write-protect faults. 0 or errno.
inline int uffd_register_wp(int fd, uintptr_t start, size_t len) {
  struct uffdio_register reg = {{start, len}, UFFDIO_REGISTER_MODE_WP, 0};
  return ioctl(fd, UFFDIO_REGISTER, &reg) == 0 ? 0 : errno;
}
// Write-protect (wp) or un-protect [start, start+len) of a registered range.
// 0 or errno. Async-signal-safe (the sigbus fault handler un-protects).
inline int uffd_set_wp(int fd, uintptr_t start, size_t len, bool wp) {
  // Nothing ever sleeps on these faults (WP_ASYNC, or SIGBUS): no wake-up.
  struct uffdio_writeprotect w = {{start, len}, wp ? UFFDIO_WRITEPROTECT_MODE_WP : UFFDIO_WRITEPROTECT_MODE_DONTWAKE};
  return ioctl(fd, UFFDIO_WRITEPROTECT, &w) == 0 ? 0 : errno;
}
// /proc/self/pagemap bits (Documentation/admin-guide/mm/pagemap.rst).
#define UDAX_PM_PRESENT (1ull << 63)
#define UDAX_PM_UFFD_WP (1ull << 57)

// ---- the sigbus tracker (native/uffd_sigbus.cc) -------------------------------
// Register [start, start+len) with the process's sync-mode userfaultfd
// (UFFD_FEATURE_SIGBUS) and write-protect all of it, holes included.
// Returns 0 or an errno; *call names the failed call.
int sigbus_arm(uintptr_t start, size_t len, const char **call);
// (Un)write-protect [start, start+len) of a sigbus region: 0 or errno.
// Async-signal-safe.
int sigbus_set_wp(uintptr_t start, size_t len, bool wp);
// Called first by the SIGBUS handler: true when the signal was a write to a
// still write-protected page of a sigbus region (or the self-test page) and
// has been handled, so the store can retry. Async-signal-safe.
bool sigbus_write_fault(siginfo_t *si, void *uctx);
// The process's sigbus userfaultfd, or -1 before the first sigbus mapping.
int sigbus_uffd_fd();
// The sigbus regions' write fault: lock -> DIRTY -> un-protect -> unlock.
void handle_uffd_write_fault(udax_region *r, uintptr_t addr);

// ---- the async tracker (native/uffd.cc) --------------------------------------
// Register [start, start+len) with the process's userfaultfd in WP_ASYNC mode;
// with scan UDAX_SCAN_ARMED also write-protect all of it, holes included.
// Returns 0 or an errno; *call names the failed call.
int uffd_arm(uintptr_t start, size_t len, int32_t scan, const char **call);
// The file's scan policy (entry.h UDAX_TRACKER_SCAN): armed unless the first
// open chose populated.
int32_t uffd_scan_policy(const udax_inode *t);
// Harvest file bytes [from, to) of async region r (harvest lock held by the
// caller): DIRTY every entry with a written page. On a scan error every entry
// of that part is dirtied (nothing lost) and the errno returned.
int harvest_region(udax_region *r, uint64_t from, uint64_t to, int32_t self, uint64_t *pages);
// Harvest file bytes [from, to) in every live peer's async mappings (through
// /proc/PID/pagemap); a dead peer's, or one that died during the scan, are
// dirtied whole. Caller holds the harvest lock.
void harvest_peers(udax_inode *t, uint64_t from, uint64_t to, int32_t self, uint64_t *pages);
// Dirty entries covering file bytes [from, to) (recovery; lock -> DIRTY -> unlock).
void dirty_file_range(udax_inode *t, uint64_t from, uint64_t to, int32_t self);
// The file's harvest lock (shared: every process's harvests exclude each
// other); taken over from a dead holder, whose in-flight scan range is
// dirtied first.
void harvest_lock(udax_inode *t);
void harvest_unlock(udax_inode *t);
// Tracker word `word` (harvest lock or freeze) holds v, a dead owner's tag:
// release it (the harvest lock: its in-flight range DIRTY first) and wake.
void tracker_word_release_dead(udax_inode *t, int word, int32_t v);

// ---- the fault handlers (native/fault.cc) ------------------------------------
// For the write-fault functions they call (async-signal-safe): was the fault
// a store (x86-64 error code; elsewhere every fault counts as one), and a
// message then abort when a system call failed in a handler.
bool is_write_fault(void *uctx);
[[noreturn]] void fatal_in_handler(const char *what, int err, udax_region *r);
void handle_write_fault(udax_region *r, uintptr_t addr);
// ---- the resize lock (native/resize_lock.cc) ------------------------------------
// Take file t's resize lock (shared by every process: resizes and fsync's
// size step), sleeping while another thread holds it and taking it over if
// that thread has died. True when a holder died holding it: the caller must
// reconcile the sizes with the files (native/resize.cc) before relying on
// them. Caller holds no entry lock and not the harvest lock.
bool resize_lock(udax_inode *t);
// Release it; with recover_pending (a reconcile failed) the next holder is
// told to reconcile.
void resize_unlock(udax_inode *t, bool recover_pending);
// The lock holds v, a dead owner's tag (its registry slot is being reused):
// free it for the next holder, who reconciles.
void resize_lock_release_dead(udax_inode *t, int32_t v);
// ---- the async tracker's freeze (native/freeze.cc) ------------------------------
// Every async region's write-fault hook: wait while the file is frozen.
void handle_frozen_write_fault(udax_region *r, uintptr_t addr);
// mapRegion's half of the freeze protocol (native/freeze.cc).
void map_wait_thawed(udax_region *r);
void init_freeze(Napi::Env env, Napi::Object exports);
// ---- open-file-description locks (native/ofd_lock.cc) ------------------------
void init_ofd_lock(Napi::Env env, Napi::Object exports);
// Run fn() with SIGBUS on udax's memory turned into a returned EFAULT (a file
// shrunk underneath: the pages past its end are gone). Returns 0 or EFAULT.
int guard_sigbus(void (*fn)(void *), void *arg);

// ---- writeback (native/writeback.cc), flush (native/flush.cc) ----------------
void flush_range(const void *addr, size_t len);
void flush_fence();

// ---- async-signal-safe messages (native/message.cc) ----------------------------
void msg_str(const char *s);
void msg_dec(uint64_t v);
void msg_hex(uint64_t v);
[[noreturn]] void msg_abort();  // abort with the default SIGABRT action

// ---- errors (native/addon.cc) ---------------------------------------------------
// A JS Error carrying errno, syscall and (when known) path: src/native.ts
// turns it into a DaxError.
Napi::Error errno_error(Napi::Env env, int err, const char *syscall, const char *path = nullptr);

void init_inode(Napi::Env env, Napi::Object exports);
void init_file(Napi::Env env, Napi::Object exports);
void init_region(Napi::Env env, Napi::Object exports);
void init_writeback(Napi::Env env, Napi::Object exports);
void init_flush(Napi::Env env, Napi::Object exports);
void init_fault(Napi::Env env, Napi::Object exports);
void init_lock(Napi::Env env, Napi::Object exports);
void init_testing(Napi::Env env, Napi::Object exports);
void init_uffd(Napi::Env env, Napi::Object exports);
void init_uffd_sigbus(Napi::Env env, Napi::Object exports);
void init_resize(Napi::Env env, Napi::Object exports);
void init_shootdown(Napi::Env env, Napi::Object exports);

#endif
