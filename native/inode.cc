// Inodes: the entry table of one file (the kernel's address_space), shared by
// every open of that file in the process, found by device and inode number,
// and through its sidecar (native/sidecar.cc) by every other process.
#include "udax.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string>
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
static uint64_t g_inode_epoch = 0;  // bumped whenever g_inodes changes (g_objects_mutex)

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
  sidecar_detach(t);  // unmaps; the last process removes the sidecar
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
  g_inode_epoch++;
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
  uint8_t *base = (uint8_t *)t->stats;  // the table's header, after the sidecar's registry
  Napi::Object o = held_buffer(env, base, (uint8_t *)t->entries - base, inode_release, t);
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

// inodeBind(fileId, size, entryShift, dev, ino) -> table view (see inode_view)
// with created = true for a new table, or the existing table of the same
// inode when it tracks at least size bytes with this entry size; else
// { conflict: true, size, entryShift } and nothing is bound.
static udax_inode *inode_find_locked(dev_t dev, ino_t ino, int *free_slot) {
  auto known = g_inode_slot.find({dev, ino});
  if (known != g_inode_slot.end()) return g_inodes[known->second];
  *free_slot = -1;
  for (int k = 0; k < UDAX_MAX_INODES && *free_slot < 0; k++) {  // next-fit: O(1) until the table is nearly full
    int slot = (g_inode_next + k) % UDAX_MAX_INODES;
    if (!g_inodes[slot]) *free_slot = slot;
  }
  return nullptr;
}

// Bind file f to t (caller holds g_objects_mutex): its view, or a conflict.
static Napi::Object inode_bind_locked(Napi::Env env, udax_file *f, udax_inode *t, uint64_t size, uint32_t shift, bool created) {
  if (t->entry_shift != shift || inode_size(t) < size) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("conflict", true);
    o.Set("size", Napi::Number::New(env, (double)inode_size(t)));
    o.Set("entryShift", Napi::Number::New(env, t->entry_shift));
    return o;
  }
  t->opens++;
  f->inode_id = t->id;
  return inode_view(env, t, created);
}

// inodeBind(fileId, size, entryShift, dev, ino, sidecarDir) -> table view
// (see inode_view) with created = true for a fresh table (no process had
// the file open), or the existing table of the same inode, in this process
// or another, when it tracks at least size bytes with this entry size; else
// { conflict: true, size, entryShift } and nothing is bound.
static Napi::Value InodeBind(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int file_id = arg_id(info, 0);
  uint64_t size = (uint64_t)info[1].As<Napi::Number>().Int64Value();
  uint32_t shift = info[2].As<Napi::Number>().Uint32Value();
  dev_t dev = (dev_t)info[3].As<Napi::Number>().Int64Value();
  ino_t ino = (ino_t)info[4].As<Napi::Number>().Int64Value();
  std::string dir = info[5].As<Napi::String>().Utf8Value();
  int fd, free_slot;
  uint64_t epoch;
  char path[512];
  {
    std::lock_guard<std::mutex> lock(g_objects_mutex);
    udax_file *f = file_get(file_id);
    if (!f) throw errno_error(env, EBADF, "open");
    if (f->inode_id >= 0) throw errno_error(env, EINVAL, "open", f->path);
    if (udax_inode *found = inode_find_locked(dev, ino, &free_slot)) return inode_bind_locked(env, f, found, size, shift, false);
    epoch = g_inode_epoch;
    if (free_slot < 0) throw errno_error(env, ENFILE, "open", f->path);
    fd = f->fd;
    memcpy(path, f->path, sizeof path);
  }
  // Attach outside g_objects_mutex: it may wait for entry locks (a dead
  // process's ranges become DIRTY) held by threads that need the mutex.
  bool created = false;
  int err = 0;
  const char *call = "open";
  udax_inode *t = sidecar_attach(dir.c_str(), fd, size, shift, dev, ino, path, &created, &err, &call);
  if (!t) {
    char sidecar[256];
    sidecar_name(dir.c_str(), dev, ino, sidecar, sizeof sidecar);
    throw errno_error(env, err, call, err == EFBIG ? path : sidecar);  // the rest are the sidecar's
  }
  std::unique_lock<std::mutex> lock(g_objects_mutex);
  udax_file *f = file_get(file_id);
  // Unchanged since the search: still not found, free_slot still free.
  udax_inode *found = f && g_inode_epoch != epoch ? inode_find_locked(dev, ino, &free_slot) : nullptr;
  if (!f || f->inode_id >= 0 || found || free_slot < 0) {
    // Closed, bound or attached by another thread meanwhile: use that.
    lock.unlock();
    inode_unref(t);
    lock.lock();
    f = file_get(file_id);
    if (!f) throw errno_error(env, EBADF, "open");
    if (f->inode_id >= 0) throw errno_error(env, EINVAL, "open", f->path);
    if (!(found = inode_find_locked(dev, ino, &free_slot))) throw errno_error(env, EAGAIN, "open", f->path);
    return inode_bind_locked(env, f, found, size, shift, false);
  }
  try {
    g_inode_slot[{dev, ino}] = free_slot;
  } catch (const std::bad_alloc &) {
    lock.unlock();
    inode_unref(t);
    throw errno_error(env, ENOMEM, "open", path);
  }
  t->id = make_id(g_inode_gen[free_slot], free_slot, UDAX_MAX_INODES);
  t->opens = 0;
  g_inodes[free_slot] = t;
  g_inode_next = free_slot + 1;
  g_inode_epoch++;
  Napi::Object o = inode_bind_locked(env, f, t, size, shift, created);
  if (t->opens == 0) {  // a conflict: another process has it with another shape
    g_inodes[free_slot] = nullptr;
    g_inode_slot.erase({dev, ino});
    g_inode_gen[free_slot]++;
    g_inode_epoch++;
    lock.unlock();
    inode_unref(t);
  }
  return o;
}

// At process exit (atexit): files still open leave no sidecar behind unless
// another process still has them open. Other threads may still run (a worker
// closing a file frees its inode under g_objects_mutex): the walk holds the
// mutex, whose holders never wait for anything long. (lock, not try_lock:
// pthread_mutex_trylock is GLIBC_2.34, and the prebuilt binary loads with
// glibc 2.33.)
static void inodes_forget_at_exit() {
  std::lock_guard<std::mutex> lock(g_objects_mutex);
  for (int k = 0; k < UDAX_MAX_INODES; k++)
    if (udax_inode *t = g_inodes[k]) sidecar_forget_at_exit(t);
}
static int g_at_exit = atexit(inodes_forget_at_exit);

// In a forked child: the parent's tables are not mapped here (MADV_DONTFORK).
// Forget them; the child opens files afresh (its own registry record).
void inodes_forget_in_child() {
  for (int k = 0; k < UDAX_MAX_INODES; k++) {
    udax_inode *t = g_inodes[k];
    if (!t) continue;
    g_inodes[k] = nullptr;  // leaked: nothing of it is usable here
  }
  g_inode_slot.clear();
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

// inodePeers(id) -> [{ pid, sameNamespace }] of the other live processes
// attached to the file (TS checks what a peer needs at open).
static Napi::Value InodePeers(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "open");
  Napi::Array a = Napi::Array::New(info.Env());
  for (int k = 0, high = sidecar_slots_high(t.get()); k < high; k++) {
    if (k == t->slot || !slot_alive(t.get(), k)) continue;
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("pid", Napi::Number::New(info.Env(), __atomic_load_n(&t->slots[k].pid, __ATOMIC_ACQUIRE)));
    o.Set("sameNamespace", Napi::Boolean::New(info.Env(), __atomic_load_n(&t->slots[k].pidns, __ATOMIC_ACQUIRE) == t->pidns));
    o.Set("attachErrno", Napi::Number::New(info.Env(), sidecar_peer_attach_access(t.get(), k)));
    a.Set(a.Length(), o);
  }
  return a;
}

// inodeSidecar(id) -> the sidecar's path.
static Napi::Value InodeSidecar(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "open");
  return Napi::String::New(info.Env(), t->sidecar_path);
}

void init_inode(Napi::Env env, Napi::Object exports) {
  exports.Set("inodePeers", Napi::Function::New(env, InodePeers, "inodePeers"));
  exports.Set("inodeSidecar", Napi::Function::New(env, InodeSidecar, "inodeSidecar"));
  exports.Set("inodeBind", Napi::Function::New(env, InodeBind, "inodeBind"));
  exports.Set("inodeView", Napi::Function::New(env, InodeView, "inodeView"));
  exports.Set("inodeCoverage", Napi::Function::New(env, InodeCoverage, "inodeCoverage"));
  exports.Set("releaseBuffer", Napi::Function::New(env, ReleaseBuffer, "releaseBuffer"));
}
