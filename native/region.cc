// Regions (the kernel's vmas): the lock-free table the fault handler reads,
// pinning, views and tombstones, protection with the writable flags, and the
// VMA estimate.
#include "udax.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <new>
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
static std::mutex g_regions_mutex;  // slot allocation and index updates (never the handler)
static int g_region_next = 0;

// ---- the address index --------------------------------------------------------
// The fault handlers find a region by address with two binary searches over
// the address ranges of every slot that is not FREE, sorted by start (ranges
// never overlap: a tombstone keeps its addresses reserved until its slot is
// freed, and a slot leaves the index before its addresses are unmapped).
// The entries live in chunks of at most kChunk; a version of the index is a
// top-level array of chunks (with each chunk's first start). An update
// copies the top level and the one or two chunks it changes (never a chunk
// in place), so it costs O(n / kChunk + kChunk), not O(n).
// Two top-level buffers: writers (g_regions_mutex) build the next version in
// the buffer no one reads, then publish it by switching g_index_current; a
// reader counts itself into the buffer it is about to search and searches
// only if that buffer is still current, so a writer never rewrites a buffer
// under a reader (it waits for the buffer's readers to leave). A chunk
// replaced by update k is reused only at update k+1, after the buffer that
// still named it has no reader. Readers never wait for a writer: lock-free,
// no allocation, async-signal-safe.
static const uint32_t kChunk = 64;
struct region_index_entry {
  uintptr_t start, end;
  int32_t slot;
};
struct index_chunk {
  uint32_t n;
  region_index_entry e[kChunk];
  index_chunk *next_free;
};
struct region_index {
  std::atomic<int> readers;
  uint32_t chunks;
  uintptr_t first[UDAX_MAX_REGIONS];  // chunk[i]->e[0].start
  index_chunk *chunk[UDAX_MAX_REGIONS];
};
static region_index g_index[2];
static std::atomic<int> g_index_current{0};
static index_chunk *g_chunks_free = nullptr;     // reusable now
static index_chunk *g_chunks_retired = nullptr;  // replaced by the last update
static uint32_t g_chunks_spare = 0;              // on g_chunks_free

// The last i in [0, n) with key(i) <= addr, or -1.
template <typename Key>
static int64_t last_at_or_below(uint32_t n, uintptr_t addr, Key key) {
  uint32_t lo = 0, hi = n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (key(mid) <= addr) lo = mid + 1;
    else hi = mid;
  }
  return (int64_t)lo - 1;
}

udax_region *region_lookup(uintptr_t addr) {
  int c;
  for (;;) {
    c = g_index_current.load(std::memory_order_seq_cst);
    g_index[c].readers.fetch_add(1, std::memory_order_seq_cst);
    if (g_index_current.load(std::memory_order_seq_cst) == c) break;
    g_index[c].readers.fetch_sub(1, std::memory_order_release);
  }
  const region_index &x = g_index[c];
  udax_region *r = nullptr;
  int64_t ci = last_at_or_below(x.chunks, addr, [&](uint32_t i) { return x.first[i]; });
  if (ci >= 0) {
    const index_chunk *k = x.chunk[ci];
    int64_t ei = last_at_or_below(k->n, addr, [&](uint32_t i) { return k->e[i].start; });
    if (ei >= 0 && addr < k->e[ei].end) r = &g_regions[k->e[ei].slot];
  }
  g_index[c].readers.fetch_sub(1, std::memory_order_release);
  return r;
}

// A chunk off the free list (caller holds g_regions_mutex and made sure one
// is there: index_reserve).
static index_chunk *chunk_take() {
  index_chunk *k = g_chunks_free;
  g_chunks_free = k->next_free;
  g_chunks_spare--;
  return k;
}

// Make sure an update can take the chunks it needs (at most 2) without
// allocating: removals must not fail. Caller holds g_regions_mutex.
static bool index_reserve() {
  while (g_chunks_spare < 4) {
    index_chunk *k = (index_chunk *)malloc(sizeof(index_chunk));
    if (!k) return false;
    k->next_free = g_chunks_free;
    g_chunks_free = k;
    g_chunks_spare++;
  }
  return true;
}

// Publish the index with slot's range [start, end) added (add) or removed.
// Caller holds g_regions_mutex and, for an add, reserved chunks
// (index_reserve) since the last update; never fails.
static void index_update(int slot, uintptr_t start, uintptr_t end, bool add) {
  const int cur = g_index_current.load(std::memory_order_relaxed), next = 1 - cur;
  while (g_index[next].readers.load(std::memory_order_seq_cst) != 0) sched_yield();
  while (g_chunks_retired) {  // the buffer that named them has no reader now
    index_chunk *k = g_chunks_retired;
    g_chunks_retired = k->next_free;
    k->next_free = g_chunks_free;
    g_chunks_free = k;
    g_chunks_spare++;
  }
  const region_index &a = g_index[cur];
  region_index &b = g_index[next];
  // The chunks the change touches: the one holding (or to hold) start, and
  // for a removal that leaves it small, its right neighbour (merged).
  int64_t ci = last_at_or_below(a.chunks, start, [&](uint32_t i) { return a.first[i]; });
  if (ci < 0) ci = 0;
  region_index_entry tmp[2 * kChunk + 1];
  uint32_t n = 0, consumed = 0;
  if (a.chunks > 0) {
    const index_chunk *k = a.chunk[ci];
    for (uint32_t i = 0; i < k->n; i++) {
      if (add && k->e[i].start > start && (n == 0 || tmp[n - 1].start < start)) tmp[n++] = {start, end, slot};
      if (!add && k->e[i].slot == slot && k->e[i].start == start) continue;
      tmp[n++] = k->e[i];
    }
    if (add && (n == 0 || tmp[n - 1].start < start)) tmp[n++] = {start, end, slot};
    consumed = 1;
    if (!add && n < kChunk / 4 && ci + 1 < (int64_t)a.chunks) {
      const index_chunk *right = a.chunk[ci + 1];
      for (uint32_t i = 0; i < right->n; i++) tmp[n++] = right->e[i];
      consumed = 2;
    }
  } else if (add) {
    tmp[n++] = {start, end, slot};
  }
  index_chunk *made[2];
  uint32_t produced = 0;
  if (n > 0) {
    uint32_t parts = n > kChunk ? 2 : 1, at = 0;
    for (uint32_t p = 0; p < parts; p++) {
      uint32_t m = (n - at) / (parts - p);
      index_chunk *k = chunk_take();
      k->n = m;
      memcpy(k->e, tmp + at, m * sizeof tmp[0]);
      made[produced++] = k;
      at += m;
    }
  }
  uint32_t w = 0;
  for (uint32_t i = 0; i < (uint32_t)ci && i < a.chunks; i++, w++) {
    b.chunk[w] = a.chunk[i];
    b.first[w] = a.first[i];
  }
  for (uint32_t p = 0; p < produced; p++, w++) {
    b.chunk[w] = made[p];
    b.first[w] = made[p]->e[0].start;
  }
  for (uint32_t i = (uint32_t)ci + consumed; i < a.chunks; i++, w++) {
    b.chunk[w] = a.chunk[i];
    b.first[w] = a.first[i];
  }
  b.chunks = w;
  for (uint32_t i = 0; i < consumed; i++) {  // named by a (readers may be in it): reused after the next drain
    index_chunk *k = a.chunk[ci + i];
    k->next_free = g_chunks_retired;
    g_chunks_retired = k;
  }
  g_index_current.store(next, std::memory_order_seq_cst);
}

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

// ---- regions by inode -----------------------------------------------------------
// Per inode slot, the slots of its regions, so a writeback, a harvest, a
// resize or a freeze visits a file's mappings, not every mapping of the
// process. The same two-buffer scheme as the address index, with the slot
// arrays on the heap (g_regions_mutex for writers). An inode slot reused
// while regions of its previous inode live keeps those in its list too:
// readers check r->inode.
struct region_list {
  std::atomic<int> readers;
  std::atomic<uint32_t> n;
  std::atomic<int32_t *> slots;
};
struct inode_regions {
  std::atomic<int> current;
  region_list b[2];
};
static inode_regions g_by_inode[UDAX_MAX_INODES];

static inode_regions &regions_slot(const udax_inode *t) { return g_by_inode[id_slot(t->id, UDAX_MAX_INODES)]; }

// Count in to the current list of ir; returns it (count out with readers--).
static region_list &list_enter(inode_regions &ir) {
  for (;;) {
    int c = ir.current.load(std::memory_order_seq_cst);
    ir.b[c].readers.fetch_add(1, std::memory_order_seq_cst);
    if (ir.current.load(std::memory_order_seq_cst) == c) return ir.b[c];
    ir.b[c].readers.fetch_sub(1, std::memory_order_release);
  }
}

void regions_of_each(udax_inode *t, bool (*fn)(udax_region *r, void *arg), void *arg) {
  region_list &l = list_enter(regions_slot(t));
  const uint32_t n = l.n.load(std::memory_order_acquire);
  const int32_t *slots = l.slots.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; i++)
    if (!fn(&g_regions[slots[i]], arg)) break;
  l.readers.fetch_sub(1, std::memory_order_release);
}

bool regions_of(udax_inode *t, std::vector<udax_region *> *out) noexcept {
  out->clear();
  inode_regions &ir = regions_slot(t);
  uint32_t n;
  for (;;) {  // reserve outside the list: allocating while counted in would make writers wait on malloc
    n = ir.b[ir.current.load(std::memory_order_acquire)].n.load(std::memory_order_acquire);
    try {
      out->reserve(n + 4);
    } catch (const std::bad_alloc &) {
      return false;
    }
    region_list &l = list_enter(ir);
    n = l.n.load(std::memory_order_acquire);
    if (n <= out->capacity()) {
      const int32_t *slots = l.slots.load(std::memory_order_acquire);
      for (uint32_t i = 0; i < n; i++) out->push_back(&g_regions[slots[i]]);  // within capacity: no allocation
      l.readers.fetch_sub(1, std::memory_order_release);
      return true;
    }
    l.readers.fetch_sub(1, std::memory_order_release);
  }
}

// Publish t's list with slot added (add) or removed. Caller holds
// g_regions_mutex. Returns false when out of memory (the list is unchanged).
static bool by_inode_update(udax_inode *t, int slot, bool add) {
  inode_regions &ir = regions_slot(t);
  const int cur = ir.current.load(std::memory_order_relaxed), next = 1 - cur;
  const uint32_t n = ir.b[cur].n.load(std::memory_order_relaxed);
  const int32_t *old = ir.b[cur].slots.load(std::memory_order_relaxed);
  int32_t *fresh = (int32_t *)malloc(((size_t)n + 1) * sizeof(int32_t));
  if (!fresh) return false;
  uint32_t m = 0;
  for (uint32_t i = 0; i < n; i++)
    if (old[i] != slot) fresh[m++] = old[i];
  if (add) fresh[m++] = slot;
  while (ir.b[next].readers.load(std::memory_order_seq_cst) != 0) sched_yield();
  free(ir.b[next].slots.load(std::memory_order_relaxed));
  ir.b[next].slots.store(fresh, std::memory_order_relaxed);
  ir.b[next].n.store(m, std::memory_order_relaxed);
  ir.current.store(next, std::memory_order_seq_cst);
  return true;
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
    if (r->tracked && !r->async && !r->sigbus) shootdown_count_runs(r, delta);  // what peers' syncs must shoot down
  }
}

// The flags are a superset of what is writable: set before mprotect RW,
// cleared after mprotect RO succeeds. mprotect can fail with ENOMEM after
// changing part of the range; a flag left clear would let writeback skip a
// writable page (found by the model check, model/README.md).
// The addresses [*addr, *addr + *len) of entries [*first, *last] in r, the
// entries clipped to r first. False when none of them is in r.
static bool region_span(const udax_region *r, uint32_t *first, uint32_t *last, uintptr_t *addr, uint64_t *len) {
  uint32_t region_last = r->first_entry + r->n_entries - 1;
  if (*first < r->first_entry) *first = r->first_entry;
  if (*last > region_last) *last = region_last;
  if (*first > *last) return false;
  const uint32_t shift = r->inode->entry_shift;
  uint64_t from = (uint64_t)*first << shift, to = ((uint64_t)*last + 1) << shift;
  uint64_t region_to = r->file_offset + (r->end - r->start);
  if (from < r->file_offset) from = r->file_offset;
  if (to > region_to) to = region_to;
  *addr = r->start + (from - r->file_offset);
  *len = to - from;
  return true;
}

int region_set_prot(udax_region *r, uint32_t first, uint32_t last, bool writable) {
  uintptr_t addr;
  uint64_t span;
  if (!region_span(r, &first, &last, &addr, &span)) return 0;
  int64_t lo = (int64_t)(first - r->first_entry), hi = (int64_t)(last - r->first_entry);
  if (r->sigbus) {  // per-PTE userfaultfd write-protect: no VMA to count
    if (writable) memset(r->writable + lo, 1, (size_t)(hi - lo + 1));
    if (int err = sigbus_set_wp(addr, span, !writable)) return err;
    if (!writable) memset(r->writable + lo, 0, (size_t)(hi - lo + 1));
    return 0;
  }
  if (writable) set_writable_flags(r, lo, hi, true);
  if (mprotect((void *)addr, span, writable ? PROT_READ | PROT_WRITE : PROT_READ) != 0) return errno;
  if (!writable) set_writable_flags(r, lo, hi, false);
  return 0;
}

int region_write_protect_runs(udax_region *r, uint32_t first, uint32_t last) {
  uint32_t region_last = r->first_entry + r->n_entries - 1;
  if (first < r->first_entry) first = r->first_entry;
  if (last > region_last) last = region_last;
  for (uint32_t e = first; e <= last && e >= first; e++) {
    if (!__atomic_load_n(&r->writable[e - r->first_entry], __ATOMIC_ACQUIRE)) continue;
    uint32_t a = e, b = e;
    while (a > r->first_entry && __atomic_load_n(&r->writable[a - 1 - r->first_entry], __ATOMIC_ACQUIRE)) a--;
    while (b < region_last && __atomic_load_n(&r->writable[b + 1 - r->first_entry], __ATOMIC_ACQUIRE)) b++;
    uintptr_t addr;
    uint64_t len;
    if (region_span(r, &a, &b, &addr, &len) && mprotect((void *)addr, len, PROT_READ) != 0) {
      if (errno != ENOMEM) return errno;
      // Splitting a VMA past vm.max_map_count: the whole mapping read-only
      // instead (one VMA; protecting more than asked is always safe).
      if (mprotect((void *)r->start, r->end - r->start, PROT_READ) != 0) return errno;
      return 0;
    }
    if (b == UINT32_MAX) break;
    e = b;
  }
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
  FileFd file(info, 0, "mmap");
  const int fd = file.get();
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
  // Heap, not a mapping of its own: one VMA per region is all a region costs
  // (calloc of a large array is a fresh mapping, zeroed lazily).
  uint8_t *flags_mem = (uint8_t *)calloc(n, 1);
  if (!flags_mem) {
    munmap(p, length);
    throw errno_error(env, ENOMEM, "mmap", t->path);
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
    free(flags_mem);
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
  // sigsegv: peers' syncs ask this process's helper thread to write-protect it.
  const bool shot = tracked && !async && !sigbus;
  int shoot_err = shot ? shootdown_map_added(r) : 0;
  if (((async || sigbus) && r->shared_range < 0) || shoot_err) {
    r->inode = nullptr;
    r->state.store(REGION_FREE, std::memory_order_release);
    inode_unref(t.get());
    munmap(p, length);
    free(flags_mem);
    throw errno_error(env, shoot_err ? shoot_err : ENOMEM, shoot_err ? "pthread_create" : "mmap", t->path);
  }
  {
    std::lock_guard<std::mutex> lock(g_regions_mutex);
    if (!index_reserve() || !by_inode_update(t.get(), slot, true)) {
      if (r->shared_range >= 0) sidecar_unpublish_range(t.get(), r->shared_range);
      r->inode = nullptr;
      inode_unref(t.get());
      munmap(p, length);
      free(flags_mem);
      r->state.store(REGION_FREE, std::memory_order_release);
      throw errno_error(env, ENOMEM, "mmap", t->path);
    }
    index_update(slot, r->start, r->end, true);
  }
  r->state.store(REGION_LIVE, std::memory_order_release);
  if (async) map_wait_thawed(r);  // a volume snapshot holds the file's stores back: this mapping's too
  return Napi::Number::New(env, region_id(slot));
}

// Free a tombstoned region's address range and slot once no view remains.
static void region_release_if_unused(udax_region *r) {
  if (r->views.load() != 0) return;
  int st = REGION_TOMBSTONE;
  if (!r->state.compare_exchange_strong(st, REGION_BUSY)) return;
  {
    std::lock_guard<std::mutex> lock(g_regions_mutex);
    index_update((int)(r - g_regions), r->start, r->end, false);
    // Out of memory: the slot stays listed (readers check r->inode; a
    // later add of the same slot to this list replaces it).
    by_inode_update(r->inode, (int)(r - g_regions), false);
  }
  munmap((void *)r->start, r->end - r->start);  // after the index: its addresses may be reused now
  free(r->writable);
  r->writable = nullptr;
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
  if (r->tracked && !r->async && !r->sigbus) shootdown_count_runs(r, (int32_t)-runs);  // its pages are gone
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
