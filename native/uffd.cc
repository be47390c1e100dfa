// The async tracker's mechanisms: one userfaultfd per process in WP_ASYNC
// mode (the kernel resolves a write to a write-protected page itself and
// marks the PTE written; no signal, no fault hook), and the harvest:
// PAGEMAP_SCAN reports written pages and write-protects them again,
// atomically per page, so a store after the scan marks its page written
// again and the next harvest finds it. Two scan policies (TS picks one per
// file, src/tracker.ts):
//   armed      every mapping write-protected whole at map time, holes
//              included: exactly the pages written since, or written and
//              zapped since (a hole again), are reported. Costs a walk of
//              every mapped page per scan, and page tables for holes.
//   populated  nothing armed; a scan looks at present (or swapped) pages
//              only, so holes cost nothing. A page faulted in by a read is
//              reported once; a written page the kernel zaps before a scan
//              is missed, so TS picks it only where nothing can zap.
#include "udax.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <linux/futex.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// Debian 12's headers predate these (upstream include/uapi/linux/fs.h and
// userfaultfd.h, Linux 6.7).
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
  __u64 start, end, categories;
};
struct pm_scan_arg {
  __u64 size, flags, start, end, walk_end, vec, vec_len, max_pages;
  __u64 category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#define PAGEMAP_SCAN _IOWR('f', 0x10, struct pm_scan_arg)
#endif

static uffd_once g_async;

int uffd_once_open(uffd_once *u, uint64_t features, const char **call) {
  std::lock_guard<std::mutex> lock(u->mutex);
  if (u->uffd < 0 && !u->err) {
    int fd = uffd_create(features, &u->call);
    int pm = fd < 0 ? -1 : open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      u->err = -fd;
    } else if (pm < 0) {
      u->err = errno;
      u->call = "open";
      close(fd);
    } else {
      u->pagemap = pm;
      u->uffd = fd;
    }
  }
  *call = u->call;
  return u->err;
}

// The async tracker's userfaultfd (WP_ASYNC) and pagemap.
static int uffd_open(const char **call) {
  return uffd_once_open(&g_async, UFFD_FEATURE_WP_ASYNC, call);
}

int32_t uffd_scan_policy(const udax_inode *t) {
  return __atomic_load_n(&t->tracker[UDAX_TRACKER_SCAN], __ATOMIC_ACQUIRE) == UDAX_SCAN_POPULATED ? UDAX_SCAN_POPULATED
                                                                                                  : UDAX_SCAN_ARMED;
}

int uffd_arm(uintptr_t start, size_t len, int32_t scan, const char **call) {
  int err = uffd_open(call);
  if (err) return err;
  // ext4 maps 2 MiB folios with a PMD; a partial scan splits it and loses
  // the written bit (TRACKERS.md trap 2).
  if (madvise((void *)start, len, MADV_NOHUGEPAGE) != 0) {
    *call = "madvise";
    return errno;
  }
  *call = "ioctl";
  if ((err = uffd_register_wp(g_async.uffd, start, len)) != 0) return err;
  if (scan != UDAX_SCAN_ARMED) return 0;
  return uffd_set_wp(g_async.uffd, start, len, true);
}

// Scan [start, end) of the address space pagemap describes (this process's,
// or a peer's /proc/PID/pagemap): call fn(from, to, arg) for each run of
// written pages, write-protecting them; populated: present or swapped pages
// only (holes would report as written). Loops until the walk reaches end: a
// scan may stop early with room left in the vector (trap 5). Returns 0 or
// an errno.
static int scan_written(int pagemap, uintptr_t start, uintptr_t end, int32_t scan, void (*fn)(uintptr_t, uintptr_t, void *),
                        void *arg) {
  struct page_region vec[256];
  for (uintptr_t at = start; at < end;) {
    struct pm_scan_arg a = {};
    a.size = sizeof a;
    a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
    a.start = at;
    a.end = end;
    a.vec = (uintptr_t)vec;
    a.vec_len = sizeof vec / sizeof vec[0];
    a.category_mask = PAGE_IS_WRITTEN;
    if (scan == UDAX_SCAN_POPULATED) a.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    a.return_mask = PAGE_IS_WRITTEN;
    long n = ioctl(pagemap, PAGEMAP_SCAN, &a);
    if (n < 0) return errno;
    for (long i = 0; i < n; i++) fn((uintptr_t)vec[i].start, (uintptr_t)vec[i].end, arg);
    if (a.walk_end <= at) return EIO;  // no progress: never loop forever
    at = (uintptr_t)a.walk_end;
  }
  return 0;
}

// ---- the harvest lock ------------------------------------------------------------
// A futex word in the shared table: 0 free, else the holder's owner tag, with
// UDAX_TAG_LOCK_WAITERS set while someone sleeps on it (tag_lock, native/lock.cc). A waiter whose holder died
// (a process killed mid-sync) takes it over; what the holder was scanning
// (UDAX_TRACKER_HARVEST_FIRST/END: written bits it may have consumed and not
// yet turned into DIRTY) becomes DIRTY first. Recovery only sets DIRTY.
// Innermost: its holder never waits for an entry lock (entry_dirty_nowait),
// so a thread holding entry locks (withEntriesLocked, a grow) may take it.


void dirty_file_range(udax_inode *t, uint64_t from, uint64_t to, int32_t self) {
  if (from >= to) return;
  uint32_t first = (uint32_t)(from >> t->entry_shift), last = (uint32_t)((to - 1) >> t->entry_shift);
  for (uint32_t e = first, n = inode_entries(t); e <= last && e < n; e++) entry_dirty_nowait(t, e, self);
}

// What the harvest lock's holder scans now, in entries (holder only).
static void set_inflight(udax_inode *t, uint64_t from, uint64_t to) {
  uint32_t first = (uint32_t)(from >> t->entry_shift), end = (uint32_t)(((to - 1) >> t->entry_shift) + 1);
  __atomic_store_n(&t->tracker[UDAX_TRACKER_HARVEST_FIRST], (int32_t)first, __ATOMIC_SEQ_CST);
  __atomic_store_n(&t->tracker[UDAX_TRACKER_HARVEST_END], (int32_t)end, __ATOMIC_SEQ_CST);
}
static void clear_inflight(udax_inode *t) {
  __atomic_store_n(&t->tracker[UDAX_TRACKER_HARVEST_END], 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&t->tracker[UDAX_TRACKER_HARVEST_FIRST], 0, __ATOMIC_SEQ_CST);
}
static void recover_inflight(udax_inode *t, int32_t self) {
  uint32_t first = (uint32_t)__atomic_load_n(&t->tracker[UDAX_TRACKER_HARVEST_FIRST], __ATOMIC_SEQ_CST);
  uint32_t end = (uint32_t)__atomic_load_n(&t->tracker[UDAX_TRACKER_HARVEST_END], __ATOMIC_SEQ_CST);
  if (end > first) dirty_file_range(t, (uint64_t)first << t->entry_shift, (uint64_t)end << t->entry_shift, self);
  clear_inflight(t);
}

void harvest_lock(udax_inode *t) {
  const int32_t self = entry_owner_tag(t);
  if (tag_lock(t, UDAX_TRACKER_HARVEST_LOCK, self) & (int32_t)UDAX_ENTRY_OWNER_MASK)
    recover_inflight(t, self);  // a dead holder's scan: DIRTY
}

void harvest_unlock(udax_inode *t) { tag_unlock(t, UDAX_TRACKER_HARVEST_LOCK, 0); }

void tracker_word_release_dead(udax_inode *t, int word, int32_t v) {
  std::atomic<int32_t> *w = reinterpret_cast<std::atomic<int32_t> *>(&t->tracker[word]);
  if (word == UDAX_TRACKER_HARVEST_LOCK) {
    recover_inflight(t, entry_owner_tag(t));
    __atomic_fetch_add(&t->stats[UDAX_STAT_LOCKS_RECOVERED], 1, __ATOMIC_RELAXED);
  }
  if (w->compare_exchange_strong(v, 0, std::memory_order_acq_rel))
    syscall(SYS_futex, &t->tracker[word], FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// ---- harvest ------------------------------------------------------------------

// udax/testing only: a sleep between "the scan consumed the written bit"
// and "the entry is DIRTY", so a test can run a second sync inside it.
static std::atomic<int64_t> g_harvest_delay_ns{0};

struct harvest_job {
  udax_inode *t;
  uintptr_t start;       // address of file_offset in the scanned address space
  uint64_t file_offset;
  int32_t self;
  uint64_t pages;
};

static void on_written(uintptr_t from, uintptr_t to, void *arg) {
  harvest_job *j = (harvest_job *)arg;
  j->pages += (to - from) / 4096;
  int64_t ns = g_harvest_delay_ns.load(std::memory_order_relaxed);
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (ns > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  dirty_file_range(j->t, j->file_offset + (from - j->start), j->file_offset + (to - j->start), j->self);
}

// Harvest file bytes [from, to) of the mapping [start, start + len) at
// file_offset in the address space pagemap describes. On a scan error that
// part is dirtied whole (nothing lost) and the errno returned.
static int harvest_range(udax_inode *t, int pagemap, uintptr_t start, size_t len, uint64_t file_offset, uint64_t from,
                         uint64_t to, int32_t self, uint64_t *pages) {
  if (from < file_offset) from = file_offset;
  if (to > file_offset + len) to = file_offset + len;
  if (from >= to) return 0;
  harvest_job j{t, start, file_offset, self, 0};
  set_inflight(t, from, to);
  int err = scan_written(pagemap, start + (from - file_offset), start + (to - file_offset), uffd_scan_policy(t), on_written, &j);
  if (!err && pagemap != g_async.pagemap) {
    // A peer's scan counts only if its address space outlived it (the
    // pagemap of a process that is gone reads nothing).
    uint64_t word;
    if (pread(pagemap, &word, sizeof word, (off_t)((start + (from - file_offset)) / 4096 * 8)) != (ssize_t)sizeof word) err = ESRCH;
  }
  if (err) dirty_file_range(t, from, to, self);
  clear_inflight(t);
  *pages += j.pages;
  return err;
}

int harvest_region(udax_region *r, uint64_t from, uint64_t to, int32_t self, uint64_t *pages) {
  return harvest_range(r->inode, g_async.pagemap, r->start, r->end - r->start, r->file_offset, from, to, self, pages);
}

// A dead peer's ranges: what it stored is in the page cache, its written
// bits went with its page tables: all DIRTY, and its records go (a claimer
// of its slot does the same first; the frees are CASes, so either may). Once
// per dead generation in this process (the caller holds the harvest lock).
static void harvest_dead_peer(udax_inode *t, int k, int32_t self) {
  uint32_t gen = __atomic_load_n(&t->slots[k].gen, __ATOMIC_ACQUIRE);
  if (t->dead_cleaned[k] == gen + 1) return;
  sidecar_dirty_dead_ranges(t, k, gen, self);
  t->dead_cleaned[k] = gen + 1;
}

void harvest_peers(udax_inode *t, uint64_t from, uint64_t to, int32_t self, uint64_t *pages) {
  for (int k = 0, high = sidecar_slots_high(t); k < high; k++) {
    if (k == t->slot) continue;
    udax_sidecar_slot *s = &t->slots[k];
    if (!slot_alive(t, k)) {
      harvest_dead_peer(t, k, self);
      continue;
    }
    if (__atomic_load_n(&s->live_ranges, __ATOMIC_ACQUIRE) == 0) continue;
    char path[64];
    int32_t pid = __atomic_load_n(&s->pid, __ATOMIC_ACQUIRE);
    uint32_t gen = __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
    snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
    int pagemap = open(path, O_RDONLY | O_CLOEXEC);
    // Alive after the open, with the same pid and generation: that pid named
    // the process whose ranges these are when it was opened (a claimer
    // writes its pid, then its registry record). Else: dirtied whole below.
    bool usable = pagemap >= 0 && slot_alive(t, k) && __atomic_load_n(&s->pid, __ATOMIC_ACQUIRE) == pid &&
                  __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) == gen;
    sidecar_for_each_range(t, sidecar_range_owner(k, gen), [&](uintptr_t start, uintptr_t end, uint64_t file_offset) {
      if (usable) {
        harvest_range(t, pagemap, start, end - start, file_offset, from, to, self, pages);  // on error: DIRTY
      } else {
        uint64_t a = from > file_offset ? from : file_offset, b = to < file_offset + (end - start) ? to : file_offset + (end - start);
        if (a < b) dirty_file_range(t, a, b, self);
      }
    });
    if (pagemap >= 0) close(pagemap);
  }
}

static inline int64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// harvest(inodeId, firstEntry, lastEntry) -> written pages found: under the
// file's harvest lock, scan those entries in every live async mapping of the
// file and DIRTY (entry_dirty_nowait, as entry_set_dirty counts) each
// entry holding a written page. Every writeback runs it over its range before
// it tags (trap 6); pages outside keep their written bit for a later harvest.
// Caller may hold entry locks
// (withEntriesLocked): those entries are dirtied without waiting. Throws
// the scan's errno after dirtying the whole mapping it failed on.
static Napi::Value Harvest(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "ioctl");
  uint32_t first = info[1].As<Napi::Number>().Uint32Value();
  uint32_t last = info[2].As<Napi::Number>().Uint32Value();
  if (first > last || last >= t->capacity) throw errno_error(info.Env(), EINVAL, "ioctl", t->path);
  uint64_t from = (uint64_t)first << t->entry_shift, to = ((uint64_t)last + 1) << t->entry_shift;
  int64_t t0 = now_ns();
  int32_t self = entry_owner_tag(t.get());
  uint64_t pages = 0;
  int err = 0;
  harvest_lock(t.get());
  harvest_peers(t.get(), from, to, self, &pages);  // other processes' mappings (none: nothing)
  for_each_region_of(t.get(), [&](udax_region *r) {
    if (r->state.load(std::memory_order_acquire) != REGION_LIVE || !r->async || r->inode != t.get()) return true;
    if (!region_pin(r)) return true;
    if (r->inode == t.get() && r->async) err = harvest_region(r, from, to, self, &pages);
    region_unpin(r);
    return !err;
  });
  harvest_unlock(t.get());
  __atomic_fetch_add(&t->stats[UDAX_STAT_PAGES_HARVESTED], (int64_t)pages, __ATOMIC_RELAXED);
  __atomic_fetch_add(&t->stats[UDAX_STAT_HARVEST_NS], now_ns() - t0, __ATOMIC_RELAXED);
  if (err) throw errno_error(info.Env(), err, "ioctl", t->path);
  return Napi::Number::New(info.Env(), (double)pages);
}

static int count_scan(uintptr_t start, uintptr_t end, int32_t scan, uint64_t *pages) {
  struct counter {
    static void add(uintptr_t from, uintptr_t to, void *arg) { *(uint64_t *)arg += (to - from) / 4096; }
  };
  *pages = 0;
  return scan_written(g_async.pagemap, start, end, scan, counter::add, pages);
}

// One self-test of a scan policy on a fresh memfd page: register (armed:
// and write-protect), a scan reports 0, a store, a scan reports 1, a scan
// reports 0. Returns 0, or an errno with *call and *what set.
static int self_test_scan(int32_t scan, const char **call, const char **what) {
  int fd = (int)syscall(SYS_memfd_create, "udax-selftest", MFD_CLOEXEC);
  if (fd < 0) return *call = "memfd_create", *what = "no memfd for the self-test", errno;
  if (ftruncate(fd, 4096) != 0) {
    int err = errno;
    close(fd);
    return *call = "ftruncate", *what = "no memfd page for the self-test", err;
  }
  void *p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return *call = "mmap", *what = "no mapping for the self-test", errno;
  uintptr_t a = (uintptr_t)p;
  uint64_t n0 = 9, n1 = 9, n2 = 9;
  int err = uffd_arm(a, 4096, scan, call);
  if (err) *what = "registering a memfd page for write-protect failed";
  if (!err && (err = count_scan(a, a + 4096, scan, &n0)) != 0) *call = "ioctl", *what = "PAGEMAP_SCAN failed (Linux < 6.7?)";
  if (!err) *(volatile char *)p = 1;
  if (!err && (err = count_scan(a, a + 4096, scan, &n1)) != 0) *call = "ioctl", *what = "PAGEMAP_SCAN failed";
  if (!err && (err = count_scan(a, a + 4096, scan, &n2)) != 0) *call = "ioctl", *what = "PAGEMAP_SCAN failed";
  munmap(p, 4096);
  if (!err && (n0 != 0 || n1 != 1 || n2 != 0))
    err = EIO, *call = "ioctl", *what = "PAGEMAP_SCAN did not report exactly the page stored (0, 1, 0)";
  return err;
}

// asyncSelfTest() -> { ok, syscall?, errno?, detail? }: can this process use
// the async tracker? Both scan policies, each on its own memfd page. Leaves
// nothing behind but the userfaultfd.
static Napi::Value AsyncSelfTest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const char *call = nullptr, *what = "no userfaultfd with UFFD_FEATURE_WP_ASYNC";
  int err = uffd_open(&call);
  if (!err) err = self_test_scan(UDAX_SCAN_ARMED, &call, &what);
  if (!err) err = self_test_scan(UDAX_SCAN_POPULATED, &call, &what);
  o.Set("ok", err == 0);
  if (err) {
    o.Set("syscall", call);
    o.Set("errno", err);
    o.Set("detail", what);
  }
  return o;
}

// testingAsyncFault(pages) -> ns per first store to a write-protected page:
// the bare WP_ASYNC fault (no udax), on a memfd, for the benchmark's floor.
static Napi::Value TestingAsyncFault(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  size_t pages = (size_t)info[0].As<Napi::Number>().Int64Value();
  size_t len = pages * 4096;
  int fd = (int)syscall(SYS_memfd_create, "udax-probe", MFD_CLOEXEC);
  if (fd < 0) throw errno_error(env, errno, "memfd_create");
  if (ftruncate(fd, (off_t)len) != 0) {
    int e = errno;
    close(fd);
    throw errno_error(env, e, "ftruncate");
  }
  void *p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) throw errno_error(env, errno, "mmap");
  volatile char *c = (volatile char *)p;
  for (size_t i = 0; i < pages; i++) c[i * 4096] = 1;  // populate: a minor fault is not the floor
  const char *call = nullptr;
  int err = uffd_arm((uintptr_t)p, len, UDAX_SCAN_ARMED, &call);
  if (err) {
    munmap(p, len);
    throw errno_error(env, err, call);
  }
  int64_t t0 = now_ns();
  for (size_t i = 0; i < pages; i++) c[i * 4096] = 2;
  int64_t ns = now_ns() - t0;
  munmap(p, len);
  return Napi::Number::New(env, (double)ns / (double)pages);
}

// testingUffdWriteProtect(region, offset, length): write-protect part of an
// async region again, with no harvest and no tags (the bare floor's sync).
static Napi::Value TestingUffdWriteProtect(const Napi::CallbackInfo &info) {
  PinnedRegion r(info, 0);
  size_t offset = (size_t)info[1].As<Napi::Number>().Int64Value();
  size_t length = (size_t)info[2].As<Napi::Number>().Int64Value();
  if (!r->async || offset > r->end - r->start || length > r->end - r->start - offset)
    throw errno_error(info.Env(), EINVAL, "ioctl", r->inode->path);
  struct uffdio_writeprotect wp = {{r->start + offset, length}, UFFDIO_WRITEPROTECT_MODE_WP};
  if (ioctl(g_async.uffd, UFFDIO_WRITEPROTECT, &wp) != 0) throw errno_error(info.Env(), errno, "ioctl", r->inode->path);
  return info.Env().Undefined();
}

// testingSetHarvestDelay(ns): sleep ns in every harvest between scanning a
// run of written pages and dirtying its entries (0: none).
static Napi::Value TestingSetHarvestDelay(const Napi::CallbackInfo &info) {
  g_harvest_delay_ns.store(info[0].As<Napi::Number>().Int64Value());
  return info.Env().Undefined();
}

void init_uffd(Napi::Env env, Napi::Object exports) {
  exports.Set("testingSetHarvestDelay", Napi::Function::New(env, TestingSetHarvestDelay, "testingSetHarvestDelay"));
  exports.Set("testingUffdWriteProtect", Napi::Function::New(env, TestingUffdWriteProtect, "testingUffdWriteProtect"));
  exports.Set("harvest", Napi::Function::New(env, Harvest, "harvest"));
  exports.Set("asyncSelfTest", Napi::Function::New(env, AsyncSelfTest, "asyncSelfTest"));
  exports.Set("testingAsyncFault", Napi::Function::New(env, TestingAsyncFault, "testingAsyncFault"));
}
