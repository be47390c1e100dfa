// Files, entry tables, mappings and views: the mechanisms TypeScript composes.
#include "udax.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <vector>

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

static const size_t kPage = 4096;

// Errors carry errno and syscall; TypeScript turns them into DaxError.
Napi::Error errno_error(Napi::Env env, int err, const char *syscall) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

// ---- files ---------------------------------------------------------------

// openFile(path, flags, mode) -> fd
static Napi::Value OpenFile(const Napi::CallbackInfo &info) {
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), info[1].As<Napi::Number>().Int32Value() | O_CLOEXEC,
                (mode_t)info[2].As<Napi::Number>().Uint32Value());
  if (fd < 0) throw errno_error(info.Env(), errno, "open");
  return Napi::Number::New(info.Env(), fd);
}

// statFd(fd) -> { size, isFile, fsType } (fsType: statfs f_type)
static Napi::Value StatFd(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct stat st;
  struct statfs sfs;
  if (fstat(fd, &st) != 0) throw errno_error(info.Env(), errno, "fstat");
  if (fstatfs(fd, &sfs) != 0) throw errno_error(info.Env(), errno, "fstatfs");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("size", Napi::Number::New(info.Env(), (double)st.st_size));
  o.Set("isFile", Napi::Boolean::New(info.Env(), S_ISREG(st.st_mode)));
  o.Set("fsType", Napi::Number::New(info.Env(), (double)(unsigned long)sfs.f_type));
  return o;
}

// truncateFd(fd, size)
static Napi::Value TruncateFd(const Napi::CallbackInfo &info) {
  if (ftruncate(info[0].As<Napi::Number>().Int32Value(), (off_t)info[1].As<Napi::Number>().Int64Value()) != 0)
    throw errno_error(info.Env(), errno, "ftruncate");
  return info.Env().Undefined();
}

// closeFd(fd)
static Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  if (close(info[0].As<Napi::Number>().Int32Value()) != 0) throw errno_error(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// probeMapSync(fd) -> true when MAP_SHARED_VALIDATE|MAP_SYNC works (a DAX mount)
static Napi::Value ProbeMapSync(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  void *p = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
  if (p == MAP_FAILED) return Napi::Boolean::New(info.Env(), false);
  munmap(p, kPage);
  return Napi::Boolean::New(info.Env(), true);
}

// ---- entry tables ----------------------------------------------------------

static udax_table *g_tables[UDAX_MAX_TABLES];
static std::atomic<uint32_t> g_table_gen[UDAX_MAX_TABLES];
static std::atomic<int> g_tables_lock{0};  // guards slot allocation only (not used by the handler)

static void tables_lock() {
  int expected = 0;
  while (!g_tables_lock.compare_exchange_weak(expected, 1, std::memory_order_acquire)) {
    expected = 0;
    sched_yield();
  }
}
static void tables_unlock() { g_tables_lock.store(0, std::memory_order_release); }

// Table ids carry a generation so a stale id from a closed file is refused.
udax_table *table_get(int id) {
  if (id < 0) return nullptr;
  int slot = id % UDAX_MAX_TABLES;
  uint32_t gen = (uint32_t)id / UDAX_MAX_TABLES;
  if (g_table_gen[slot].load(std::memory_order_acquire) != gen) return nullptr;
  return g_tables[slot];
}

static void table_unref(int id) {
  udax_table *t = table_get(id);
  if (!t || t->refs.fetch_sub(1) != 1) return;
  tables_lock();
  int slot = id % UDAX_MAX_TABLES;
  g_tables[slot] = nullptr;
  g_table_gen[slot].fetch_add(1);
  tables_unlock();
  munmap(t->mem, t->mem_len);
  delete t;
}

static void table_view_finalize(napi_env, void *, void *hint) { table_unref((int)(intptr_t)hint); }

// The table as one external ArrayBuffer (entries, summary counters, stats); holds a ref.
static Napi::Object table_view(Napi::Env env, int id, udax_table *t) {
  t->refs.fetch_add(1);
  napi_value ab;
  napi_status s = napi_create_external_arraybuffer(env, t->mem, t->mem_len, table_view_finalize,
                                                   (void *)(intptr_t)id, &ab);
  if (s != napi_ok) {
    table_unref(id);
    throw Napi::Error::New(env, "napi_create_external_arraybuffer failed");
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, id));
  o.Set("buffer", Napi::Value(env, ab));
  o.Set("entries", Napi::Number::New(env, t->n_entries));
  o.Set("entryShift", Napi::Number::New(env, t->entry_shift));
  o.Set("summaryOffset", Napi::Number::New(env, (double)t->entries_bytes));
  o.Set("summaryGroups", Napi::Number::New(env, (double)t->groups));
  o.Set("statsOffset", Napi::Number::New(env, (double)(t->entries_bytes + t->summary_bytes)));
  o.Set("path", Napi::String::New(env, t->path));
  return o;
}

// tableCreate(entries, entryShift, path) -> table view (see table_view)
static Napi::Value TableCreate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t n = info[0].As<Napi::Number>().Uint32Value();
  uint32_t shift = info[1].As<Napi::Number>().Uint32Value();
  std::string path = info[2].As<Napi::String>().Utf8Value();
  udax_table *t = new udax_table();
  t->n_entries = n;
  t->entry_shift = shift;
  t->entries_bytes = ((size_t)n * 4 + 7) & ~(size_t)7;
  size_t groups = ((size_t)n + (1u << UDAX_SUMMARY_SHIFT) - 1) >> UDAX_SUMMARY_SHIFT;
  size_t groups2 = (groups + (1u << UDAX_SUMMARY2_SHIFT) - 1) >> UDAX_SUMMARY2_SHIFT;
  t->groups = (uint32_t)groups;
  t->summary_bytes = ((groups + groups2) * 4 + 7) & ~(size_t)7;
  t->mem_len = (t->entries_bytes + t->summary_bytes + UDAX_STAT_COUNT * 8 + kPage - 1) & ~(kPage - 1);
  t->mem = mmap(nullptr, t->mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (t->mem == MAP_FAILED) {
    int err = errno;
    delete t;
    throw errno_error(env, err, "mmap");
  }
  t->entries = (int32_t *)t->mem;
  t->summary = (int32_t *)((char *)t->mem + t->entries_bytes);
  t->stats = (int64_t *)((char *)t->mem + t->entries_bytes + t->summary_bytes);
  strncpy(t->path, path.c_str(), sizeof t->path - 1);
  tables_lock();
  int slot = -1;
  for (int i = 0; i < UDAX_MAX_TABLES; i++)
    if (!g_tables[i]) { slot = i; break; }
  if (slot < 0) {
    tables_unlock();
    munmap(t->mem, t->mem_len);
    delete t;
    throw errno_error(env, EMFILE, "tableCreate");
  }
  g_tables[slot] = t;
  int id = (int)(g_table_gen[slot].load() * UDAX_MAX_TABLES + slot);
  tables_unlock();
  return table_view(env, id, t);
}

// tableAttach(id) -> table view for this thread (a worker attaching to a file)
static Napi::Value TableAttach(const Napi::CallbackInfo &info) {
  int id = info[0].As<Napi::Number>().Int32Value();
  tables_lock();
  udax_table *t = table_get(id);
  if (t) t->refs.fetch_add(1);  // hold it while the view is made
  tables_unlock();
  if (!t) throw errno_error(info.Env(), EBADF, "tableAttach");
  Napi::Object view = table_view(info.Env(), id, t);
  table_unref(id);
  return view;
}

// ---- regions (mappings) --------------------------------------------------

static std::atomic<int> g_regions_lock{0};

static void region_release_if_unused(int slot);

// mapRegion(fd, fileOffset, length, shared, writable, mode, tableId, mapSync) -> slot
// Shared writable tracked (and bare) mappings start read-only: the first store faults.
static Napi::Value MapRegion(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint64_t offset = (uint64_t)info[1].As<Napi::Number>().Int64Value();
  size_t length = (size_t)info[2].As<Napi::Number>().Int64Value();
  bool shared = info[3].As<Napi::Boolean>().Value();
  bool writable = info[4].As<Napi::Boolean>().Value();
  int mode = info[5].As<Napi::Number>().Int32Value();
  int table_id = info[6].As<Napi::Number>().Int32Value();
  bool map_sync = info[7].As<Napi::Boolean>().Value();
  udax_table *t = table_get(table_id);
  if (!t) throw errno_error(env, EBADF, "mapRegion");

  if (!shared || !writable) mode = REGION_UNTRACKED;
  int prot = PROT_READ | (writable && mode == REGION_UNTRACKED ? PROT_WRITE : 0);
  int flags = shared ? (map_sync ? MAP_SHARED_VALIDATE | MAP_SYNC : MAP_SHARED) : MAP_PRIVATE;
  void *p = mmap(nullptr, length, prot, flags | MAP_NORESERVE, fd, (off_t)offset);
  if (p == MAP_FAILED) throw errno_error(env, errno, "mmap");

  uint32_t first = (uint32_t)(offset >> t->entry_shift);
  uint32_t last = (uint32_t)((offset + length - 1) >> t->entry_shift);
  uint32_t n = last - first + 1;
  uint8_t *flags_mem = (uint8_t *)mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (flags_mem == MAP_FAILED) {
    int err = errno;
    munmap(p, length);
    throw errno_error(env, err, "mmap");
  }

  int expected = 0;
  while (!g_regions_lock.compare_exchange_weak(expected, 1)) { expected = 0; sched_yield(); }
  int slot = -1;
  for (int i = 0; i < UDAX_MAX_REGIONS; i++) {
    int st = REGION_FREE;
    if (g_regions[i].state.compare_exchange_strong(st, REGION_BUSY)) { slot = i; break; }
  }
  if (slot >= 0 && slot >= g_regions_high.load()) g_regions_high.store(slot + 1, std::memory_order_release);
  g_regions_lock.store(0);
  if (slot < 0) {
    munmap(p, length);
    munmap(flags_mem, n);
    throw errno_error(env, ENFILE, "mapRegion");
  }
  udax_region *r = &g_regions[slot];
  r->start = (uintptr_t)p;
  r->end = (uintptr_t)p + length;
  r->file_offset = offset;
  r->table_id = table_id;
  r->table = t;
  r->mode = mode;
  r->first_entry = first;
  r->n_entries = n;
  r->writable = flags_mem;
  r->writable_len = n;
  r->rw_runs.store(0);
  r->views.store(0);
  r->users.store(0);
  t->refs.fetch_add(1);
  r->state.store(REGION_LIVE, std::memory_order_release);
  return Napi::Number::New(env, slot);
}

// The region named by argument i, pinned for the rest of the native call (a
// concurrent unmap waits for it); EBADF when it is not a live mapping.
class PinnedRegion {
 public:
  PinnedRegion(const Napi::CallbackInfo &info, int i) {
    int slot = info[i].As<Napi::Number>().Int32Value();
    if (slot < 0 || slot >= UDAX_MAX_REGIONS || !region_pin(&g_regions[slot]))
      throw errno_error(info.Env(), EBADF, "region");
    r_ = &g_regions[slot];
  }
  ~PinnedRegion() { region_unpin(r_); }
  PinnedRegion(const PinnedRegion &) = delete;
  PinnedRegion &operator=(const PinnedRegion &) = delete;
  udax_region *operator->() const { return r_; }
  udax_region *get() const { return r_; }

 private:
  udax_region *r_;
};

// A view's hold on its region; released once, by detach or by the finalizer.
struct view_hold {
  std::atomic<bool> released;
  int slot;
};

static void view_release(view_hold *h) {
  if (h->released.exchange(true)) return;
  udax_region *r = &g_regions[h->slot];
  if (r->views.fetch_sub(1) == 1) region_release_if_unused(h->slot);
}

static void view_finalize(napi_env, void *, void *hint) {
  view_hold *h = (view_hold *)hint;
  view_release(h);
  delete h;
}

// regionView(slot, offset, length, what) -> external ArrayBuffer over the
// mapping (what = 0) or over its writable flags (what = 1). One per thread:
// V8 does not promise that a second buffer over the same memory works.
static Napi::Value RegionView(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  PinnedRegion r(info, 0);
  size_t offset = (size_t)info[1].As<Napi::Number>().Int64Value();
  size_t length = (size_t)info[2].As<Napi::Number>().Int64Value();
  bool flags = info[3].As<Napi::Number>().Int32Value() == 1;
  void *base = flags ? (void *)r->writable : (void *)r->start;
  size_t limit = flags ? r->writable_len : r->end - r->start;
  if (offset > limit || length > limit - offset) throw Napi::RangeError::New(env, "regionView: out of range");
  view_hold *h = new view_hold{{false}, info[0].As<Napi::Number>().Int32Value()};
  r->views.fetch_add(1);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, (char *)base + offset, length, view_finalize, h, &ab) != napi_ok) {
    view_release(h);
    delete h;
    throw Napi::Error::New(env, "napi_create_external_arraybuffer failed");
  }
  // Remember the hold so detachView can release it before the GC does.
  napi_value holder;
  napi_create_external(env, h, nullptr, nullptr, &holder);
  Napi::Object o = Napi::Object::New(env);
  o.Set("buffer", Napi::Value(env, ab));
  o.Set("hold", Napi::Value(env, holder));
  return o;
}

// detachView(buffer, hold): detach an ArrayBuffer made by regionView (its
// indexed stores become no-ops) and release its hold on the region.
static Napi::Value DetachView(const Napi::CallbackInfo &info) {
  napi_value ab = info[0];
  bool detachable = false;
  napi_is_detached_arraybuffer(info.Env(), ab, &detachable);
  if (!detachable) napi_detach_arraybuffer(info.Env(), ab);
  view_hold *h = nullptr;
  napi_get_value_external(info.Env(), info[1], (void **)&h);
  if (h) view_release(h);
  return info.Env().Undefined();
}

// Free a tombstoned region's address range and slot once no view remains.
static void region_release_if_unused(int slot) {
  udax_region *r = &g_regions[slot];
  if (r->views.load() != 0) return;
  int st = REGION_TOMBSTONE;
  if (!r->state.compare_exchange_strong(st, REGION_BUSY)) return;
  munmap((void *)r->start, r->end - r->start);
  munmap(r->writable, r->writable_len);
  int table_id = r->table_id;
  r->state.store(REGION_FREE, std::memory_order_release);
  table_unref(table_id);
}

// unmapRegion(slot): unmap the file range. The addresses stay reserved
// PROT_NONE (a tombstone) until every view of the region is gone, so a stale
// view in another thread crashes with a message instead of reaching memory
// that a later mmap reused.
static Napi::Value UnmapRegion(const Napi::CallbackInfo &info) {
  int slot = info[0].As<Napi::Number>().Int32Value();
  int live = REGION_LIVE;
  if (slot < 0 || slot >= UDAX_MAX_REGIONS || !g_regions[slot].state.compare_exchange_strong(live, REGION_TOMBSTONE))
    throw errno_error(info.Env(), EBADF, "region");
  udax_region *r = &g_regions[slot];
  while (r->users.load(std::memory_order_seq_cst) != 0) sched_yield();
  int64_t runs = r->rw_runs.exchange(0);
  g_vma_used.fetch_sub(2 * runs);
  void *p = mmap((void *)r->start, r->end - r->start, PROT_NONE,
                 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) munmap((void *)r->start, r->end - r->start);
  memset(r->writable, 0, r->writable_len);
  region_release_if_unused(slot);
  return info.Env().Undefined();
}

// regionProtect(slot, firstEntry, lastEntry, writable) -> 0 or errno.
// Caller holds the entry locks (mprotect with the writable-flag bookkeeping).
static Napi::Value RegionProtect(const Napi::CallbackInfo &info) {
  PinnedRegion r(info, 0);
  int err = region_set_prot(r.get(), info[1].As<Napi::Number>().Uint32Value(), info[2].As<Napi::Number>().Uint32Value(),
                            info[3].As<Napi::Boolean>().Value());
  return Napi::Number::New(info.Env(), err);
}

// Flush [addr, addr+len) of a file with entries of 2^shift bytes. With PTE
// entries a large piece comes from a coarsened 2 MiB block (VMA budget) that
// may hold only a few written pages: skip pages not resident in the page
// cache (holes: no cache line to write back; touching them would allocate
// them). PMD entries are flushed whole, as the kernel does. Returns the bytes
// flushed.
static uint64_t flush_resident(void *addr, uint64_t len, uint32_t shift) {
  const uint64_t kMincoreMin = 16 * kPage;
  if (len < kMincoreMin || shift != 12) {
    flush_range(addr, len);
    return len;
  }
  uint64_t pages = (len + kPage - 1) / kPage, flushed = 0;
  std::vector<unsigned char> resident(pages);
  if (mincore(addr, len, resident.data()) != 0) {
    flush_range(addr, len);
    return len;
  }
  for (uint64_t p = 0; p < pages;) {
    if (!(resident[p] & 1)) { p++; continue; }
    uint64_t q = p;
    while (q + 1 < pages && (resident[q + 1] & 1)) q++;
    uint64_t from = p * kPage, to = (q + 1) * kPage < len ? (q + 1) * kPage : len;
    flush_range((char *)addr + from, to - from);
    flushed += to - from;
    p = q + 1;
  }
  return flushed;
}

// mkcleanFlush(tableId, firstEntry, lastEntry, fallbackSlot) -> bytes flushed.
// dax_entry_mkclean + dax_flush for a run of entries: write-protect them in
// every tracked mapping of the file that holds them writable, and flush each
// entry's cache lines exactly once — through a mapping that holds the whole
// entry writable (its pages are present there), else through fallbackSlot, a
// read-only mapping of the whole file. No fence: the caller fences once per
// batch. Caller holds the entry locks.
static Napi::Value MkcleanFlush(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int table_id = info[0].As<Napi::Number>().Int32Value();
  uint32_t first = info[1].As<Napi::Number>().Uint32Value();
  uint32_t last = info[2].As<Napi::Number>().Uint32Value();
  PinnedRegion fallback(info, 3);
  udax_table *t = table_get(table_id);
  if (!t || first > last || last >= t->n_entries) throw Napi::RangeError::New(env, "mkcleanFlush: bad range");
  const uint32_t shift = t->entry_shift;
  const uint64_t file_size = fallback->end - fallback->start;
  auto entry_end = [&](uint32_t e) {
    uint64_t end = ((uint64_t)e + 1) << shift;
    return end < file_size ? end : file_size;
  };
  std::vector<uint8_t> done(last - first + 1, 0);
  uint64_t flushed = 0;
  int high = g_regions_high.load(std::memory_order_acquire);
  for (int i = 0; i < high; i++) {
    udax_region *r = &g_regions[i];
    if (r->state.load(std::memory_order_acquire) != REGION_LIVE || r->mode != REGION_TRACKED || r->table_id != table_id) continue;
    if (!region_pin(r)) continue;  // being unmapped: its pages are going away
    struct Unpin { udax_region *r; ~Unpin() { region_unpin(r); } } unpin{r};
    uint32_t region_last = r->first_entry + r->n_entries - 1;
    uint32_t lo = first > r->first_entry ? first : r->first_entry;
    uint32_t hi = last < region_last ? last : region_last;
    uint64_t region_to = r->file_offset + (r->end - r->start);
    for (uint32_t e = lo; lo <= hi && e <= hi;) {
      if (!r->writable[e - r->first_entry]) { e++; continue; }
      uint32_t run_end = e;
      while (run_end < hi && r->writable[run_end + 1 - r->first_entry]) run_end++;
      int err = region_set_prot(r, e, run_end, false);
      if (err) throw errno_error(env, err, "mprotect");
      // Flush the entries this region covers whole, in contiguous pieces.
      for (uint32_t k = e; k <= run_end;) {
        uint64_t from = (uint64_t)k << shift;
        if (done[k - first] || from < r->file_offset || entry_end(k) > region_to) { k++; continue; }
        uint32_t piece_end = k;
        while (piece_end < run_end && !done[piece_end + 1 - first] && entry_end(piece_end + 1) <= region_to) piece_end++;
        uint64_t to = entry_end(piece_end);
        flushed += flush_resident((void *)(r->start + (from - r->file_offset)), to - from, shift);
        memset(&done[k - first], 1, piece_end - k + 1);
        k = piece_end + 1;
      }
      e = run_end + 1;
    }
  }
  // Entries no tracked mapping held whole and writable (dirtied through a
  // mapping since unmapped, or partly covered PMD entries): the fallback.
  for (uint32_t e = first; e <= last; e++) {
    uint64_t from = (uint64_t)e << shift;
    if (done[e - first] || from >= file_size) continue;
    flushed += flush_resident((void *)(fallback->start + from), entry_end(e) - from, shift);
  }
  return Napi::Number::New(env, (double)flushed);
}

// regionAddress(slot) -> start address (for /proc/self/maps checks)
static Napi::Value RegionAddress(const Napi::CallbackInfo &info) {
  PinnedRegion r(info, 0);
  return Napi::Number::New(info.Env(), (double)r->start);
}

void init_map(Napi::Env env, Napi::Object exports) {
  exports.Set("openFile", Napi::Function::New(env, OpenFile, "openFile"));
  exports.Set("statFd", Napi::Function::New(env, StatFd, "statFd"));
  exports.Set("truncateFd", Napi::Function::New(env, TruncateFd, "truncateFd"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("probeMapSync", Napi::Function::New(env, ProbeMapSync, "probeMapSync"));
  exports.Set("tableCreate", Napi::Function::New(env, TableCreate, "tableCreate"));
  exports.Set("tableAttach", Napi::Function::New(env, TableAttach, "tableAttach"));
  exports.Set("mapRegion", Napi::Function::New(env, MapRegion, "mapRegion"));
  exports.Set("regionView", Napi::Function::New(env, RegionView, "regionView"));
  exports.Set("detachView", Napi::Function::New(env, DetachView, "detachView"));
  exports.Set("unmapRegion", Napi::Function::New(env, UnmapRegion, "unmapRegion"));
  exports.Set("regionProtect", Napi::Function::New(env, RegionProtect, "regionProtect"));
  exports.Set("mkcleanFlush", Napi::Function::New(env, MkcleanFlush, "mkcleanFlush"));
  exports.Set("regionAddress", Napi::Function::New(env, RegionAddress, "regionAddress"));
}
