// Regions (the kernel's vmas): the lock-free table the fault handler reads,
// pinning, views and tombstones, protection with the writable flags, and the
// VMA estimate.
#include "udax.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

udax_region g_regions[UDAX_MAX_REGIONS];
std::atomic<int> g_regions_high{0};
udax_vma_policy g_vma;
static std::mutex g_regions_mutex;  // slot allocation only (never the handler)
static int g_region_next = 0;

static int region_id(int slot) {
  return make_id(g_regions[slot].gen.load(std::memory_order_acquire), slot, UDAX_MAX_REGIONS);
}

// The region an id names, if its slot still carries that generation.
static udax_region *region_of(int id) {
  if (id < 0) return nullptr;
  int slot = id_slot(id, UDAX_MAX_REGIONS);
  return region_id(slot) == id ? &g_regions[slot] : nullptr;
}

PinnedRegion::PinnedRegion(const Napi::CallbackInfo &info, int i) {
  int id = arg_id(info, i);
  udax_region *r = region_of(id);
  if (!r || !region_pin(r)) throw errno_error(info.Env(), EBADF, "mmap");
  if (region_id((int)(r - g_regions)) != id) {  // unmapped and reused meanwhile
    region_unpin(r);
    throw errno_error(info.Env(), EBADF, "mmap");
  }
  r_ = r;
}

uintptr_t region_range(const Napi::CallbackInfo &info, udax_region *r, int i, const char *syscall, size_t *length) {
  size_t offset = (size_t)info[i].As<Napi::Number>().Int64Value();
  *length = (size_t)info[i + 1].As<Napi::Number>().Int64Value();
  size_t limit = r->end - r->start;
  if (offset > limit || *length > limit - offset) throw errno_error(info.Env(), EINVAL, syscall, r->inode->path);
  return r->start + offset;
}

// ---- writable flags and the VMA estimate ------------------------------------

// Runs of writable entries in [lo, hi] (relative indices, clipped).
static int32_t count_runs(const udax_region *r, int64_t lo, int64_t hi) {
  if (lo < 0) lo = 0;
  if (hi >= (int64_t)r->n_entries) hi = (int64_t)r->n_entries - 1;
  int32_t runs = 0;
  for (int64_t e = lo; e <= hi; e++)
    if (r->writable[e] && (e == lo || !r->writable[e - 1])) runs++;
  return runs;
}

// Keep r's writable flags and VMA estimate for entries [lo, hi] (relative).
// Each writable island inside a read-only mapping adds two VMAs.
static void set_writable_flags(udax_region *r, int64_t lo, int64_t hi, bool writable) {
  int32_t before = count_runs(r, lo - 1, hi + 1);
  memset(r->writable + lo, writable ? 1 : 0, (size_t)(hi - lo + 1));
  int32_t delta = count_runs(r, lo - 1, hi + 1) - before;
  if (delta) {
    r->rw_runs.fetch_add(delta, std::memory_order_relaxed);
    g_vma.used.fetch_add(2 * delta, std::memory_order_relaxed);
  }
}

// The flags are a superset of what is writable: set before mprotect RW,
// cleared after mprotect RO succeeds. mprotect can fail with ENOMEM after
// changing part of the range; a flag left clear would let writeback skip a
// writable page (found by the model check, model/README.md).
int region_set_prot(udax_region *r, uint32_t first, uint32_t last, bool writable) {
  udax_inode *t = r->inode;
  uint32_t region_last = r->first_entry + r->n_entries - 1;
  if (first < r->first_entry) first = r->first_entry;
  if (last > region_last) last = region_last;
  if (first > last) return 0;
  uint64_t from = (uint64_t)first << t->entry_shift, to = ((uint64_t)last + 1) << t->entry_shift;
  uint64_t region_to = r->file_offset + (r->end - r->start);
  if (from < r->file_offset) from = r->file_offset;
  if (to > region_to) to = region_to;
  uintptr_t addr = r->start + (from - r->file_offset);
  int64_t lo = (int64_t)(first - r->first_entry), hi = (int64_t)(last - r->first_entry);
  if (r->sigbus) {  // per-PTE userfaultfd write-protect: no VMA to count
    if (writable) memset(r->writable + lo, 1, (size_t)(hi - lo + 1));
    if (int err = sigbus_set_wp(addr, to - from, !writable)) return err;
    if (!writable) memset(r->writable + lo, 0, (size_t)(hi - lo + 1));
    return 0;
  }
  if (writable) set_writable_flags(r, lo, hi, true);
  if (mprotect((void *)addr, to - from, writable ? PROT_READ | PROT_WRITE : PROT_READ) != 0) return errno;
  if (!writable) set_writable_flags(r, lo, hi, false);
  return 0;
}

// ---- map, view, unmap ---------------------------------------------------------

// mapRegion(fileId, inodeId, fileOffset, length, shared, writable, tracked, mapSync, async, sigbus) -> region id.
// Tracked regions (shared and writable) start read-only: the first store
// faults. Async and sigbus ones are read-write, registered with their
// userfaultfd and write-protected there instead (native/uffd.cc,
// native/uffd_sigbus.cc). None is inherited by a forked child (MADV_DONTFORK).
static Napi::Value MapRegion(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t offset = (uint64_t)info[2].As<Napi::Number>().Int64Value();
  size_t length = (size_t)info[3].As<Napi::Number>().Int64Value();
  bool shared = info[4].As<Napi::Boolean>().Value();
  bool writable = info[5].As<Napi::Boolean>().Value();
  bool tracked = info[6].As<Napi::Boolean>().Value() && shared && writable;
  bool map_sync = info[7].As<Napi::Boolean>().Value();
  bool async = tracked && info[8].As<Napi::Boolean>().Value();
  bool sigbus = tracked && !async && info[9].As<Napi::Boolean>().Value();
  InodeArg t(info, 1, "mmap");
  int fd;
  {
    std::lock_guard<std::mutex> lock(g_objects_mutex);
    udax_file *f = file_get(arg_id(info, 0));
    if (!f) throw errno_error(env, EBADF, "mmap");
    fd = f->fd;
  }
  if (length == 0 || offset + length > (((uint64_t)t->capacity) << t->entry_shift))  // past EOF is allowed, as mmap does; src/ checks users' ranges
    throw errno_error(env, EINVAL, "mmap", t->path);
  int prot = PROT_READ | (writable && (!tracked || async || sigbus) ? PROT_WRITE : 0);
  int flags = shared ? (map_sync ? MAP_SHARED_VALIDATE | MAP_SYNC : MAP_SHARED) : MAP_PRIVATE;
  void *p = mmap(nullptr, length, prot, flags | MAP_NORESERVE, fd, (off_t)offset);
  if (p == MAP_FAILED) throw errno_error(env, errno, "mmap", t->path);
  // A forked child must not inherit a tracked mapping: it would keep the
  // writable pages with no entry table of its own (sigsegv) or lose the
  // userfaultfd registration (async, sigbus), and its stores would go untracked.
  // The child opens the file itself.
  if (tracked && madvise(p, length, MADV_DONTFORK) != 0) {
    int err = errno;
    munmap(p, length);
    throw errno_error(env, err, "madvise", t->path);
  }
  if (async) {
    const char *call = nullptr;
    int err = uffd_arm((uintptr_t)p, length, uffd_scan_policy(t.get()), &call);
    if (err) {
      munmap(p, length);
      throw errno_error(env, err, call, t->path);
    }
  }
  if (sigbus) {
    const char *call = nullptr;
    int err = sigbus_arm((uintptr_t)p, length, &call);
    if (err) {
      munmap(p, length);
      throw errno_error(env, err, call, t->path);
    }
  }

  uint32_t first = (uint32_t)(offset >> t->entry_shift);
  uint32_t last = (uint32_t)((offset + length - 1) >> t->entry_shift);
  uint32_t n = last - first + 1;
  uint8_t *flags_mem = (uint8_t *)mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (flags_mem == MAP_FAILED) {
    int err = errno;
    munmap(p, length);
    throw errno_error(env, err, "mmap", t->path);
  }

  int slot = -1;
  {
    std::lock_guard<std::mutex> lock(g_regions_mutex);
    for (int k = 0; k < UDAX_MAX_REGIONS; k++) {
      int i = (g_region_next + k) % UDAX_MAX_REGIONS;
      int st = REGION_FREE;
      if (g_regions[i].state.compare_exchange_strong(st, REGION_BUSY)) { slot = i; break; }
    }
    if (slot >= 0) {
      g_region_next = slot + 1;
      if (slot >= g_regions_high.load()) g_regions_high.store(slot + 1, std::memory_order_release);
    }
  }
  if (slot < 0) {
    munmap(p, length);
    munmap(flags_mem, n);
    throw errno_error(env, ENFILE, "mmap", t->path);
  }
  udax_region *r = &g_regions[slot];
  r->start = (uintptr_t)p;
  r->end = (uintptr_t)p + length;
  r->file_offset = offset;
  r->inode = t.get();
  inode_ref(t.get());
  r->tracked = tracked;
  r->async = async;
  r->sigbus = sigbus;
  r->on_write_fault.store(!tracked ? nullptr : async ? handle_frozen_write_fault : sigbus ? handle_uffd_write_fault : handle_write_fault);
  r->first_entry = first;
  r->n_entries = n;
  r->writable = flags_mem;
  r->writable_len = n;
  r->rw_runs.store(0);
  r->views.store(0);
  r->users.store(0);
  // Peers' syncs harvest it from now on (before any store: map returns after).
  // (sigbus: they write-protect it through our userfaultfd, which never closes.)
  if (sigbus) __atomic_store_n(&t->slots[t->slot].sigbus_uffd, sigbus_uffd_fd() + 1, __ATOMIC_RELEASE);
  r->shared_range = async || sigbus ? sidecar_publish_range(t.get(), r->start, r->end, offset) : -1;
  if ((async || sigbus) && r->shared_range < 0) {
    r->inode = nullptr;
    r->state.store(REGION_FREE, std::memory_order_release);
    inode_unref(t.get());
    munmap(p, length);
    munmap(flags_mem, n);
    throw errno_error(env, ENOMEM, "mmap", t->path);
  }
  r->state.store(REGION_LIVE, std::memory_order_release);
  return Napi::Number::New(env, region_id(slot));
}

// Free a tombstoned region's address range and slot once no view remains.
static void region_release_if_unused(udax_region *r) {
  if (r->views.load() != 0) return;
  int st = REGION_TOMBSTONE;
  if (!r->state.compare_exchange_strong(st, REGION_BUSY)) return;
  munmap((void *)r->start, r->end - r->start);
  munmap(r->writable, r->writable_len);
  udax_inode *t = r->inode;
  r->inode = nullptr;
  r->state.store(REGION_FREE, std::memory_order_release);
  inode_unref(t);
}

static void view_release(void *arg) {
  udax_region *r = (udax_region *)arg;
  if (r->views.fetch_sub(1) == 1) region_release_if_unused(r);
}

// regionView(id, offset, length) -> { buffer, hold }: an external ArrayBuffer
// over part of the mapping. One per thread: V8 does not promise that a second
// buffer over the same memory works.
static Napi::Value RegionView(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  PinnedRegion r(info, 0);
  size_t length;
  uintptr_t addr = region_range(info, r.get(), 1, "mmap", &length);
  r->views.fetch_add(1);
  return held_buffer(env, (void *)addr, length, view_release, r.get());
}

// unmapRegion(id): unmap the file range and make the id stale at once. The
// addresses stay reserved PROT_NONE (a tombstone) until every view of the
// region is gone, so a stale view in another thread crashes with a message
// instead of reaching memory that a later mmap reused.
// An async region is harvested first, under the harvest lock held across the
// tombstoning, so its unflushed stores become DIRTY entries before any sync
// can miss the region.
static Napi::Value UnmapRegion(const Napi::CallbackInfo &info) {
  int id = arg_id(info, 0);
  udax_region *r = region_of(id);
  udax_inode *async_inode = nullptr;
  if (r && region_pin(r)) {
    if (r->async) inode_ref(async_inode = r->inode);
    region_unpin(r);
  }
  if (async_inode) harvest_lock(async_inode);
  // Hold a view of our own until the tombstone is finished: another thread
  // releasing the last view (a worker ending) must not free the slot, its
  // flags and its addresses while we still write them.
  if (r) r->views.fetch_add(1, std::memory_order_acq_rel);
  int live = REGION_LIVE;
  if (!r || !r->state.compare_exchange_strong(live, REGION_TOMBSTONE)) {
    if (async_inode) {
      harvest_unlock(async_inode);
      inode_unref(async_inode);
    }
    if (r && r->views.fetch_sub(1, std::memory_order_acq_rel) == 1) region_release_if_unused(r);
    throw errno_error(info.Env(), EBADF, "munmap");
  }
  r->gen.fetch_add(1, std::memory_order_acq_rel);
  while (r->users.load(std::memory_order_seq_cst) != 0) sched_yield();
  if (r->sigbus) {
    // Its record goes before its pages do (only this unmap got here): a
    // peer's write-protect of the range afterwards finds nothing registered
    // (ENOENT), or another udax mapping there, which then faults once more.
    sidecar_unpublish_range(r->inode, r->shared_range);
    r->shared_range = -1;
  }
  if (async_inode) {
    uint64_t pages = 0;
    harvest_region(r, 0, UINT64_MAX, entry_owner_tag(async_inode), &pages);  // on error: all of it DIRTY
    sidecar_unpublish_range(async_inode, r->shared_range);  // under the harvest lock: no peer scans it now
    r->shared_range = -1;
    __atomic_fetch_add(&async_inode->stats[UDAX_STAT_PAGES_HARVESTED], (int64_t)pages, __ATOMIC_RELAXED);
    harvest_unlock(async_inode);
    inode_unref(async_inode);
  }
  int64_t runs = r->rw_runs.exchange(0);
  g_vma.used.fetch_sub(2 * runs);
  void *p = mmap((void *)r->start, r->end - r->start, PROT_NONE,
                 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) munmap((void *)r->start, r->end - r->start);
  memset(r->writable, 0, r->writable_len);
  if (r->views.fetch_sub(1, std::memory_order_acq_rel) == 1) region_release_if_unused(r);
  return info.Env().Undefined();
}

// regionProtect(id, firstEntry, lastEntry, writable) -> 0 or an errno.
// Caller holds the entry locks (mprotect with the writable-flag bookkeeping).
static Napi::Value RegionProtect(const Napi::CallbackInfo &info) {
  PinnedRegion r(info, 0);
  int err = region_set_prot(r.get(), info[1].As<Napi::Number>().Uint32Value(), info[2].As<Napi::Number>().Uint32Value(),
                            info[3].As<Napi::Boolean>().Value());
  return Napi::Number::New(info.Env(), err);
}

// regionMsync(id, offset, length): msync(MS_SYNC) of part of the mapping
// (the kernel's own writeback, for comparison).
static Napi::Value RegionMsync(const Napi::CallbackInfo &info) {
  PinnedRegion r(info, 0);
  size_t length;
  uintptr_t addr = region_range(info, r.get(), 1, "msync", &length);
  uintptr_t from = addr & ~((uintptr_t)sysconf(_SC_PAGESIZE) - 1);
  if (msync((void *)from, addr + length - from, MS_SYNC) != 0)
    throw errno_error(info.Env(), errno, "msync", r->inode->path);
  return info.Env().Undefined();
}

// regionInfo(id) -> { address, inode, fileOffset, length, tracked } of a live
// region (EBADF once it is unmapped): what a worker checks before using a
// mapping another thread made.
static Napi::Value RegionInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  PinnedRegion r(info, 0);
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", Napi::Number::New(env, (double)r->start));
  o.Set("inode", Napi::Number::New(env, r->inode->id));
  o.Set("fileOffset", Napi::Number::New(env, (double)r->file_offset));
  o.Set("length", Napi::Number::New(env, (double)(r->end - r->start)));
  o.Set("tracked", Napi::Boolean::New(env, r->tracked));
  o.Set("async", Napi::Boolean::New(env, r->async));
  o.Set("sigbus", Napi::Boolean::New(env, r->sigbus));
  return o;
}

// regionIsLive(id) -> whether id names a live region: a cheap check for the
// hot path of a worker's views (no pin, no object).
static Napi::Value RegionIsLive(const Napi::CallbackInfo &info) {
  udax_region *r = region_of(arg_id(info, 0));
  return Napi::Boolean::New(info.Env(), r && r->state.load(std::memory_order_acquire) == REGION_LIVE);
}

// setVmaPolicy(budget, wholeMapping): coarsen faults to a 2 MiB block once
// udax's estimated VMAs would pass budget, to the whole mapping past wholeMapping.
static Napi::Value SetVmaPolicy(const Napi::CallbackInfo &info) {
  g_vma.budget.store(info[0].As<Napi::Number>().Int64Value());
  g_vma.whole_mapping.store(info[1].As<Napi::Number>().Int64Value());
  return info.Env().Undefined();
}

// vmaUsage() -> { used, budget, wholeMapping }
static Napi::Value VmaUsage(const Napi::CallbackInfo &info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("used", Napi::Number::New(info.Env(), (double)g_vma.used.load()));
  o.Set("budget", Napi::Number::New(info.Env(), (double)g_vma.budget.load()));
  o.Set("wholeMapping", Napi::Number::New(info.Env(), (double)g_vma.whole_mapping.load()));
  return o;
}

void init_region(Napi::Env env, Napi::Object exports) {
  exports.Set("mapRegion", Napi::Function::New(env, MapRegion, "mapRegion"));
  exports.Set("regionView", Napi::Function::New(env, RegionView, "regionView"));
  exports.Set("unmapRegion", Napi::Function::New(env, UnmapRegion, "unmapRegion"));
  exports.Set("regionProtect", Napi::Function::New(env, RegionProtect, "regionProtect"));
  exports.Set("regionMsync", Napi::Function::New(env, RegionMsync, "regionMsync"));
  exports.Set("regionInfo", Napi::Function::New(env, RegionInfo, "regionInfo"));
  exports.Set("regionIsLive", Napi::Function::New(env, RegionIsLive, "regionIsLive"));
  exports.Set("setVmaPolicy", Napi::Function::New(env, SetVmaPolicy, "setVmaPolicy"));
  exports.Set("vmaUsage", Napi::Function::New(env, VmaUsage, "vmaUsage"));
}
