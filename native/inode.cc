// Inodes: the entry table of one file (the kernel's address_space), shared by
// every open of that file in the process, found by device and inode number.
#include "udax.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <new>
#include <unordered_map>
#include <utility>

static udax_inode *g_inodes[UDAX_MAX_INODES];
static uint32_t g_inode_gen[UDAX_MAX_INODES];
static int g_inode_next = 0;
// The slot of each bound inode by (device, inode number), so an open costs
// O(1), not a scan of every slot (g_objects_mutex).
struct inode_key_hash {
  size_t operator()(const std::pair<dev_t, ino_t> &k) const { return std::hash<uint64_t>()((uint64_t)k.first * 0x9e3779b97f4a7c15ull ^ (uint64_t)k.second); }
};
static std::unordered_map<std::pair<dev_t, ino_t>, int, inode_key_hash> g_inode_slot;

udax_inode *inode_get(int id) {
  if (id < 0) return nullptr;
  std::lock_guard<std::mutex> lock(g_objects_mutex);
  int slot = id_slot(id, UDAX_MAX_INODES);
  udax_inode *t = g_inodes[slot];
  if (!t || t->id != id) return nullptr;
  inode_ref(t);
  return t;
}

void inode_ref(udax_inode *t) { t->refs.fetch_add(1, std::memory_order_relaxed); }

void inode_unref(udax_inode *t) {
  if (t->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  munmap(t->mem, t->mem_len);
  delete t;
}

InodeArg::InodeArg(const Napi::CallbackInfo &info, int i, const char *syscall) {
  t_ = inode_get(arg_id(info, i));
  if (!t_) throw errno_error(info.Env(), EBADF, syscall);
}

void inode_unbind_locked(int id) {
  int slot = id_slot(id, UDAX_MAX_INODES);
  udax_inode *t = g_inodes[slot];
  if (!t || t->id != id || --t->opens > 0) return;
  g_inodes[slot] = nullptr;  // no new open finds it; views and regions keep the memory
  g_inode_slot.erase({t->dev, t->ino});
  g_inode_gen[slot]++;
  inode_unref(t);
}

static void buffer_finalize(napi_env, void *, void *hint) {
  buffer_hold *h = (buffer_hold *)hint;
  if (!h->released.exchange(true)) h->release(h->arg);
  delete h;
}

Napi::Object held_buffer(Napi::Env env, void *data, size_t len, void (*release)(void *), void *arg) {
  buffer_hold *h = new buffer_hold{{false}, release, arg};
  napi_value ab;
  if (napi_create_external_arraybuffer(env, data, len, buffer_finalize, h, &ab) != napi_ok) {
    release(arg);
    delete h;
    throw Napi::Error::New(env, "napi_create_external_arraybuffer failed");
  }
  napi_value holder;
  napi_create_external(env, h, nullptr, nullptr, &holder);
  Napi::Object o = Napi::Object::New(env);
  o.Set("buffer", Napi::Value(env, ab));
  o.Set("hold", Napi::Value(env, holder));
  return o;
}

static void inode_release(void *arg) { inode_unref((udax_inode *)arg); }

// External buffers over entries [0, cover) of t and their summary counters:
// { cover, entries, groups, blocks, holds: [...] }. Each holds a reference.
// A thread's views cover what it needs and grow (new buffers over the same
// memory: the table never moves, old views stay valid): V8 counts external
// buffers as memory pressure, so a view of the whole reservation per open
// would cost a full GC every few opens.
static Napi::Object coverage_view(Napi::Env env, udax_inode *t, uint32_t cover) {
  if (cover < 1) cover = 1;
  if (cover > t->capacity) cover = t->capacity;
  size_t groups = ((size_t)cover + (1u << UDAX_SUMMARY_SHIFT) - 1) >> UDAX_SUMMARY_SHIFT;
  size_t blocks = (groups + (1u << UDAX_SUMMARY2_SHIFT) - 1) >> UDAX_SUMMARY2_SHIFT;
  Napi::Object o = Napi::Object::New(env);
  Napi::Array holds = Napi::Array::New(env);
  auto part = [&](const char *name, void *data, size_t len) {
    inode_ref(t);
    Napi::Object h = held_buffer(env, data, len, inode_release, t);
    o.Set(name, h.Get("buffer"));
    holds.Set(holds.Length(), h);
  };
  part("entries", t->entries, (size_t)cover * 4);
  part("groups", t->summary, groups * 4);
  part("blocks", t->summary + t->groups, blocks * 4);
  o.Set("cover", Napi::Number::New(env, cover));
  o.Set("holds", holds);
  return o;
}

// The table's header (statistics, persistence area, tracker words, sizes) as
// one external ArrayBuffer, with its layout and a coverage view of the
// entries the file has now; the buffers hold references.
static Napi::Object inode_view(Napi::Env env, udax_inode *t, bool created) {
  inode_ref(t);
  Napi::Object o = held_buffer(env, t->mem, t->entries_offset, inode_release, t);
  uint8_t *base = (uint8_t *)t->mem;
  o.Set("id", Napi::Number::New(env, t->id));
  o.Set("created", Napi::Boolean::New(env, created));
  o.Set("size", Napi::Number::New(env, (double)inode_size(t)));
  o.Set("capacity", Napi::Number::New(env, t->capacity));
  o.Set("entryShift", Napi::Number::New(env, t->entry_shift));
  o.Set("statsOffset", Napi::Number::New(env, (double)((uint8_t *)t->stats - base)));
  o.Set("persistOffset", Napi::Number::New(env, (double)(t->persist - base)));
  o.Set("trackerOffset", Napi::Number::New(env, (double)((uint8_t *)t->tracker - base)));
  o.Set("sizesOffset", Napi::Number::New(env, (double)((uint8_t *)t->sizes - base)));
  o.Set("coverage", coverage_view(env, t, inode_entries(t)));
  o.Set("path", Napi::String::New(env, t->path));
  return o;
}

// Layout (udax.h): the fixed header, then `capacity` entry words from a page
// boundary, then the summary for `capacity` entries. Untouched pages of the
// reservation cost nothing (MAP_NORESERVE, anonymous: read as zero).
static udax_inode *inode_create(uint64_t size, uint32_t shift, dev_t dev, ino_t ino, const char *path, int *err) {
  uint64_t n = (size + (1ull << shift) - 1) >> shift;
  uint64_t reserve = UDAX_TABLE_RESERVE_BYTES >> shift;
  uint64_t capacity = n > reserve ? n : reserve;
  if (capacity > UDAX_MAX_ENTRIES) capacity = UDAX_MAX_ENTRIES;
  if (n > UDAX_MAX_ENTRIES) { *err = EFBIG; return nullptr; }
  udax_inode *t = new udax_inode();
  t->capacity = (uint32_t)capacity;
  t->high_water = (uint32_t)n;
  t->entry_shift = shift;
  t->dev = dev;
  t->ino = ino;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t header = UDAX_STAT_COUNT * 8 + UDAX_PERSIST_BYTES + UDAX_TRACKER_WORDS * 4 + UDAX_SIZE_WORDS * 8;
  t->entries_offset = (header + page - 1) & ~(page - 1);
  size_t entries_bytes = ((size_t)capacity * 4 + 7) & ~(size_t)7;
  size_t groups = ((size_t)capacity + (1u << UDAX_SUMMARY_SHIFT) - 1) >> UDAX_SUMMARY_SHIFT;
  size_t groups2 = (groups + (1u << UDAX_SUMMARY2_SHIFT) - 1) >> UDAX_SUMMARY2_SHIFT;
  t->groups = (uint32_t)groups;
  t->summary_offset = t->entries_offset + entries_bytes;
  t->mem_len = (t->summary_offset + (groups + groups2) * 4 + page - 1) & ~(page - 1);
  t->mem = mmap(nullptr, t->mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (t->mem == MAP_FAILED) {
    *err = errno;
    delete t;
    return nullptr;
  }
  uint8_t *base = (uint8_t *)t->mem;
  t->stats = (int64_t *)base;
  t->persist = base + UDAX_STAT_COUNT * 8;
  t->tracker = (int32_t *)(t->persist + UDAX_PERSIST_BYTES);
  t->sizes = (int64_t *)(t->tracker + UDAX_TRACKER_WORDS);
  t->entries = (int32_t *)(base + t->entries_offset);
  t->summary = (int32_t *)(base + t->summary_offset);
  t->sizes[UDAX_SIZE_LIVE] = (int64_t)size;
  t->sizes[UDAX_SIZE_DURABLE] = (int64_t)size;
  snprintf(t->path, sizeof t->path, "%s", path);
  t->refs.store(1);  // the slot's
  return t;
}

// inodeBind(fileId, size, entryShift, dev, ino) -> table view (see inode_view)
// with created = true for a new table, or the existing table of the same
// inode when it tracks at least size bytes with this entry size; else
// { conflict: true, size, entryShift } and nothing is bound.
static Napi::Value InodeBind(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int file_id = arg_id(info, 0);
  uint64_t size = (uint64_t)info[1].As<Napi::Number>().Int64Value();
  uint32_t shift = info[2].As<Napi::Number>().Uint32Value();
  dev_t dev = (dev_t)info[3].As<Napi::Number>().Int64Value();
  ino_t ino = (ino_t)info[4].As<Napi::Number>().Int64Value();
  std::unique_lock<std::mutex> lock(g_objects_mutex);
  udax_file *f = file_get(file_id);
  if (!f) throw errno_error(env, EBADF, "open");
  if (f->inode_id >= 0) throw errno_error(env, EINVAL, "open", f->path);
  udax_inode *found = nullptr;
  auto known = g_inode_slot.find({dev, ino});
  if (known != g_inode_slot.end()) found = g_inodes[known->second];
  if (found) {
    if (found->entry_shift != shift || inode_size(found) < size) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("conflict", true);
      o.Set("size", Napi::Number::New(env, (double)inode_size(found)));
      o.Set("entryShift", Napi::Number::New(env, found->entry_shift));
      return o;
    }
    found->opens++;
    f->inode_id = found->id;
    return inode_view(env, found, false);
  }
  int free_slot = -1;
  for (int k = 0; k < UDAX_MAX_INODES && free_slot < 0; k++) {  // next-fit: O(1) until the table is nearly full
    int slot = (g_inode_next + k) % UDAX_MAX_INODES;
    if (!g_inodes[slot]) free_slot = slot;
  }
  if (free_slot < 0) throw errno_error(env, ENFILE, "open", f->path);
  int err = 0;
  udax_inode *t = inode_create(size, shift, dev, ino, f->path, &err);
  if (!t) throw errno_error(env, err, err == EFBIG ? "open" : "mmap", f->path);
  try {
    g_inode_slot[{dev, ino}] = free_slot;
  } catch (const std::bad_alloc &) {
    inode_unref(t);
    throw errno_error(env, ENOMEM, "open", f->path);
  }
  t->id = make_id(g_inode_gen[free_slot], free_slot, UDAX_MAX_INODES);
  t->opens = 1;
  g_inodes[free_slot] = t;
  g_inode_next = free_slot + 1;
  f->inode_id = t->id;
  return inode_view(env, t, true);
}

// inodeView(id) -> a table view for this thread (a worker using a file
// opened in another thread).
static Napi::Value InodeView(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "open");
  return inode_view(info.Env(), t.get(), false);
}

// inodeCoverage(id, cover) -> a coverage view of entries [0, cover) (clamped
// to the reservation), for a thread whose views no longer cover the file.
static Napi::Value InodeCoverage(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "open");
  return coverage_view(info.Env(), t.get(), info[1].As<Napi::Number>().Uint32Value());
}

// releaseBuffer(buffer, hold): detach an ArrayBuffer made by the addon (its
// indexed stores become no-ops) and drop its hold now rather than at GC.
static Napi::Value ReleaseBuffer(const Napi::CallbackInfo &info) {
  // Release first: the finalizer may run (and free the hold) once detached.
  buffer_hold *h = nullptr;
  if (napi_get_value_external(info.Env(), info[1], (void **)&h) == napi_ok && h && !h->released.exchange(true))
    h->release(h->arg);
  napi_value ab = info[0];
  bool is_ab = false, detached = false;
  napi_is_arraybuffer(info.Env(), ab, &is_ab);
  if (is_ab) napi_is_detached_arraybuffer(info.Env(), ab, &detached);
  if (is_ab && !detached) napi_detach_arraybuffer(info.Env(), ab);
  return info.Env().Undefined();
}

void init_inode(Napi::Env env, Napi::Object exports) {
  exports.Set("inodeBind", Napi::Function::New(env, InodeBind, "inodeBind"));
  exports.Set("inodeView", Napi::Function::New(env, InodeView, "inodeView"));
  exports.Set("inodeCoverage", Napi::Function::New(env, InodeCoverage, "inodeCoverage"));
  exports.Set("releaseBuffer", Napi::Function::New(env, ReleaseBuffer, "releaseBuffer"));
}
