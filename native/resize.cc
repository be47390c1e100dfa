// Resizing a file (the kernel's truncate_setsize + the DAX entry cleanup of
// truncate_inode_pages): grow and shrink the entry table in place, the data
// file, and the media file with it; make the size durable at fsync.
//
// The table never moves (udax.h: the reservation), so every thread's view of
// it stays valid; what changes is the live size word, published under the
// locks of the entries whose meaning it changes:
//   shrink  lock the entries from the one holding the new end to the old
//           last -> publish the new size -> ftruncate -> drop DIRTY/TOWRITE of
//           the entries past the end (their data is gone, never written
//           back) and write-protect them -> unlock. A writeback or fault
//           that held one of those locks finished before the ftruncate; one
//           that takes it afterwards finds the entry clean (writeback skips
//           it) or past EOF (a store there dies of SIGBUS, as without udax).
//   grow    lock the entries that were ever live past the old end ->
//           [harvest lock] -> clear stray tags (stores past EOF since the shrink) and
//           write-protect them again in every tracked mapping (sigsegv:
//           mprotect; async: userfaultfd, so exactly the stores from now on
//           are found) -> grow the media, then the file -> tag DIRTY the new
//           entries whose media bytes are stale (a shrink not yet fsynced
//           left old bytes there; the new bytes are zeros) -> publish ->
//           unlock. Entries never live (past high_water) are zero already.
// A resize that fails changes nothing: sizes, file and media as they were.
// Caller (src/file.ts) holds no entry lock; resize_mutex serialises resizes
// and the size changes of fsync (inodeSyncSize).
#include "udax.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

static inline int64_t size_word(udax_inode *t, int which) {
  return __atomic_load_n(&t->sizes[which], __ATOMIC_ACQUIRE);
}
static inline void set_size_word(udax_inode *t, int which, int64_t v) {
  __atomic_store_n(&t->sizes[which], v, __ATOMIC_RELEASE);
}
static void publish_size(udax_inode *t, uint64_t size) {
  set_size_word(t, UDAX_SIZE_LIVE, (int64_t)size);
  __atomic_fetch_add(&t->sizes[UDAX_SIZE_RESIZES], 1, __ATOMIC_ACQ_REL);
}

static int ftruncate_retry(int fd, uint64_t size) {
  int rc;
  do rc = ftruncate(fd, (off_t)size); while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : errno;
}

// Clear DIRTY, TOWRITE and REDIRTY of entry e, keeping its lock (caller
// holds it), and keep the summary exact.
static void drop_tags_locked(udax_inode *t, uint32_t e) {
  int32_t old = __atomic_fetch_and(&t->entries[e], ~(int32_t)(UDAX_ENTRY_DIRTY | UDAX_ENTRY_TOWRITE | UDAX_ENTRY_REDIRTY), __ATOMIC_SEQ_CST);
  if (!(old & UDAX_ENTRY_DIRTY)) return;
  uint32_t group = e >> UDAX_SUMMARY_SHIFT;
  __atomic_fetch_sub(&t->summary[group], 1, __ATOMIC_SEQ_CST);
  __atomic_fetch_sub(&t->summary[t->groups + (group >> UDAX_SUMMARY2_SHIFT)], 1, __ATOMIC_SEQ_CST);
}

// Calls fn(r) for each live tracked region of t, pinned.
template <typename Fn>
static void for_each_tracked_region(udax_inode *t, Fn fn) {
  for_each_region_of(t, [&](udax_region *r) {
    if (r->state.load(std::memory_order_acquire) != REGION_LIVE || r->inode != t) return true;
    if (!region_pin(r)) return true;
    if (r->inode == t && r->tracked) fn(r);
    region_unpin(r);
    return true;
  });
}

// Write-protect file bytes [from, to) (entries [first, last], locked by the
// caller) in every tracked mapping of t. Returns 0 or the first errno.
static int protect_tracked(udax_inode *t, uint32_t first, uint32_t last, uint64_t from, uint64_t to, const char **call) {
  int err = 0;
  for_each_tracked_region(t, [&](udax_region *r) {
    if (err) return;
    if (!r->async) {
      if (int e = region_set_prot(r, first, last, false)) { err = e; *call = r->sigbus ? "ioctl" : "mprotect"; }
      return;
    }
    uint64_t r_from = r->file_offset, r_to = r->file_offset + (r->end - r->start);
    uint64_t a = from > r_from ? from : r_from, b = to < r_to ? to : r_to;
    if (a < b) err = uffd_arm(r->start + (a - r_from), b - a, uffd_scan_policy(t), call);
  });
  return err;
}

// The errno of a mapping that would lie wholly past the new end: EBUSY.
static bool mapped_past(udax_inode *t, uint64_t size) {
  bool found = false;
  for_each_region_of(t, [&](udax_region *r) {
    if (r->state.load(std::memory_order_acquire) != REGION_LIVE || r->inode != t) return true;
    if (!region_pin(r)) return true;
    found = r->inode == t && r->file_offset > size;
    region_unpin(r);
    return !found;
  });
  return found;
}

struct resize_failure {
  int err;
  const char *call;
};

// Shrink t (file fd) to size. Caller holds t->resize_mutex.
static resize_failure shrink(udax_inode *t, int fd, uint64_t old_size, uint64_t size) {
  const uint32_t shift = t->entry_shift, self = entry_owner_tag(t);
  const uint32_t first = (uint32_t)(size >> shift);                       // holds the new end
  const uint32_t n_new = (uint32_t)((size + (1ull << shift) - 1) >> shift);
  const uint32_t n_old = (uint32_t)((old_size + (1ull << shift) - 1) >> shift);
  for (uint32_t e = first; e < n_old; e++) entry_lock_as(t, e, (int32_t)self);
  publish_size(t, size);
  if (int err = ftruncate_retry(fd, size)) {
    publish_size(t, old_size);
    for (uint32_t e = first; e < n_old; e++) entry_unlock(t, e);
    return {err, "ftruncate"};
  }
  for (uint32_t e = n_new; e < n_old; e++) drop_tags_locked(t, e);
  // Tidy only (the VMA estimate): a grow write-protects them again anyway.
  const char *ignored;
  if (n_new < n_old) protect_tracked(t, n_new, n_old - 1, (uint64_t)n_new << shift, old_size, &ignored);
  for (uint32_t e = first; e < n_old; e++) entry_unlock(t, e);
  return {0, nullptr};
}

// Grow t (file fd) to size; entries [n_old, stale_n) get DIRTY (media bytes
// stale). Caller holds t->resize_mutex and, for an async file, nothing else.
static resize_failure grow(udax_inode *t, int fd, uint64_t old_size, uint64_t size, uint32_t stale_n,
                           udax_inode *media, int media_fd) {
  const uint32_t shift = t->entry_shift;
  const int32_t self = entry_owner_tag(t);
  const uint32_t first = (uint32_t)(old_size >> shift);  // holds the old end (a partial PMD entry)
  const uint32_t n_old = (uint32_t)((old_size + (1ull << shift) - 1) >> shift);
  const uint32_t n_new = (uint32_t)((size + (1ull << shift) - 1) >> shift);
  const uint32_t ever = n_new < inode_high_water(t) ? n_new : inode_high_water(t);  // lock [first, ever)
  const uint32_t locked_to = ever > first ? ever : first;
  resize_failure fail{0, nullptr};
  for (uint32_t e = first; e < locked_to; e++) entry_lock_as(t, e, self);
  // No harvest may consume a written bit of a page it cannot yet dirty. The
  // harvest lock is innermost (a harvest never waits for an entry lock), so
  // it is taken after the entry locks.
  harvest_lock(t);
  for (uint32_t e = n_old; e < locked_to; e++) drop_tags_locked(t, e);
  if (old_size < ((uint64_t)ever << shift)) {  // region_set_prot skips an empty [n_old, ever-1]
    int err = protect_tracked(t, n_old, ever - 1, old_size, (uint64_t)ever << shift, &fail.call);
    if (err) fail.err = err;
  }
  uint64_t media_old = media ? inode_size(media) : 0;
  bool media_grown = false;
  if (!fail.err && media && media_old < size) {
    if (int err = ftruncate_retry(media_fd, size)) fail = {err, "ftruncate"};
    else media_grown = true;
  }
  if (!fail.err) {
    if (int err = ftruncate_retry(fd, size)) {
      fail = {err, "ftruncate"};
      if (media_grown) ftruncate_retry(media_fd, media_old);
      media_grown = false;
    }
  }
  if (!fail.err) {
    if (media_grown) {
      uint32_t mn = (uint32_t)((size + 4095) >> 12);
      inode_raise_high_water(media, mn);
      publish_size(media, size);
    }
    for (uint32_t e = n_old; e < stale_n && e < locked_to; e++) entry_set_dirty(t, e);
    inode_raise_high_water(t, n_new);
    publish_size(t, size);
  }
  harvest_unlock(t);
  for (uint32_t e = first; e < locked_to; e++) entry_unlock(t, e);
  return fail;
}

// inodeResize(fileId, inodeId, size, mediaFileId, mediaInodeId): resize the
// file to size bytes (a multiple of 4096, checked by the caller), its entry
// table in place and its media file (ids -1: none) with it: a grow grows the
// media first; a shrink leaves the media (and the durable size) alone until
// fsync. Errors, nothing changed: EFBIG past the table's reservation, EBUSY
// when a live mapping of the file starts past size, ftruncate's errno.
static Napi::Value InodeResize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  FileFd file(info, 0, "ftruncate", true);
  const int fd = file.get();
  InodeArg t(info, 1, "ftruncate");
  uint64_t size = (uint64_t)info[2].As<Napi::Number>().Int64Value();
  FileFd media_file(info, 3, "ftruncate", true);
  const int media_fd = media_file.get();
  udax_inode *media = nullptr;
  if (media_fd >= 0) media = inode_get(arg_id(info, 4));
  if (media_fd >= 0 && !media) throw errno_error(env, EBADF, "ftruncate", t->path);
  struct media_ref {
    udax_inode *m;
    ~media_ref() { if (m) inode_unref(m); }
  } media_hold{media};
  if (fd < 0) throw errno_error(env, EBADF, "ftruncate", t->path);
  std::lock_guard<std::mutex> lock(t->resize_mutex);
  uint64_t old_size = inode_size(t.get());
  if (size == old_size) return env.Undefined();
  uint64_t n_new = (size + (1ull << t->entry_shift) - 1) >> t->entry_shift;
  if (n_new > t->capacity) throw errno_error(env, EFBIG, "ftruncate", t->path);
  if (mapped_past(t.get(), size)) throw errno_error(env, EBUSY, "ftruncate", t->path);
  resize_failure f;
  if (size < old_size) {
    f = shrink(t.get(), fd, old_size, size);
  } else {
    // Media bytes past the old end are stale where the media is still longer
    // (a shrink not yet made durable): those new entries start DIRTY.
    uint64_t stale_to = media ? inode_size(media) : 0;
    if (stale_to > size) stale_to = size;
    uint32_t stale_n = stale_to > old_size ? (uint32_t)((stale_to + (1ull << t->entry_shift) - 1) >> t->entry_shift) : 0;
    f = grow(t.get(), fd, old_size, size, stale_n, media, media_fd);
  }
  if (f.err) throw errno_error(env, f.err, f.call, t->path);
  return env.Undefined();
}

// inodeSyncSize(inodeId, mediaFileId, mediaInodeId) -> the durable size: the
// size step of fsync, after its writeback: the live size becomes durable, and
// a media file longer than it is cut to it (a shrink's old bytes are gone).
static Napi::Value InodeSyncSize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  InodeArg t(info, 0, "fsync");
  FileFd media_file(info, 1, "fsync", true);
  const int media_fd = media_file.get();
  std::lock_guard<std::mutex> lock(t->resize_mutex);
  uint64_t size = inode_size(t.get());
  if (media_fd >= 0) {
    InodeArg media(info, 2, "fsync");
    if (inode_size(media.get()) > size) {
      if (int err = ftruncate_retry(media_fd, size)) throw errno_error(env, err, "ftruncate", media->path);
      publish_size(media.get(), size);
    }
  }
  set_size_word(t.get(), UDAX_SIZE_DURABLE, (int64_t)size);
  return Napi::Number::New(env, (double)size);
}

void init_resize(Napi::Env env, Napi::Object exports) {
  exports.Set("inodeResize", Napi::Function::New(env, InodeResize, "inodeResize"));
  exports.Set("inodeSyncSize", Napi::Function::New(env, InodeSyncSize, "inodeSyncSize"));
}
