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
// Caller (src/file.ts) holds no entry lock; the file's resize lock
// (native/resize_lock.cc, shared by every process) serialises resizes and
// the size changes of fsync (inodeSyncSize), whichever process makes them.
//
// Other processes' mappings: a shrink's ftruncate unmaps their pages past
// the end (the kernel's truncate does it for every process: a store there
// dies of SIGBUS in that process). A grow write-protects again, through each
// sigbus peer's userfaultfd (sidecar_mkclean_peers), the pages of the
// entries it makes live again, as it does here: a page written before the
// shrink lost its write-protect marker with it, and a store after the grow
// would fault nowhere; each sigsegv peer's helper write-protects them
// (shootdown_peers: its VMA kept its write permission over the cut pages).
// An async peer needs nothing: such a page, not
// write-protected, reads as written to the next PAGEMAP_SCAN of its page
// tables (one needless writeback). A mapping of a peer that
// starts past the new size is not refused (only this process's are seen).
// A process killed holding the resize lock: see reconcile().
#include "udax.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
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

// udax/testing only: a sleep inside each resize, holding the resize lock,
// where a death leaves the most to reconcile (a grow: the files grown, the
// sizes not; a shrink: the size published, the file not cut).
static std::atomic<int64_t> g_resize_delay_ns{0};
static void testing_resize_delay() {
  int64_t ns = g_resize_delay_ns.load(std::memory_order_relaxed);
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (ns > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
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

// Shrink t (file fd) to size. Caller holds t's resize lock.
static resize_failure shrink(udax_inode *t, int fd, uint64_t old_size, uint64_t size) {
  const uint32_t shift = t->entry_shift, self = entry_owner_tag(t);
  const uint32_t first = (uint32_t)(size >> shift);                       // holds the new end
  const uint32_t n_new = (uint32_t)((size + (1ull << shift) - 1) >> shift);
  const uint32_t n_old = (uint32_t)((old_size + (1ull << shift) - 1) >> shift);
  for (uint32_t e = first; e < n_old; e++) entry_lock_as(t, e, (int32_t)self);
  publish_size(t, size);
  testing_resize_delay();
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
// stale). Caller holds t's resize lock and no entry lock.
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
    if (!err && (err = sidecar_mkclean_peers(t, n_old, ever - 1)) != 0) fail.call = "ioctl";
    if (err) fail.err = err;
    // A sigsegv peer's VMA kept its write permission over the cut pages:
    // its helper takes it away; one that does not answer in time may
    // store untracked there, so those entries start DIRTY instead.
    if (!err && !shootdown_peers(t, n_old, ever - 1))
      for (uint32_t e = n_old; e < ever; e++) entry_set_dirty(t, e);
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
  if (!fail.err) testing_resize_delay();
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

// A resize-lock holder died (resize_lock said so): make the files' lengths
// and the table agree with the size words again, which are the truth (a
// resize publishes its size only once its file has it):
//   data file   cut or grown back to the live size (a dead grow had grown
//               it; a dead shrink had published the size, not cut it yet);
//   entries     past the live size lose their tags, as a shrink's would
//               (their locks, if the dead holder had them, are taken over);
//   media       longer than its size word: a dead grow's, cut back; shorter
//               and equal to the live size: a dead fsync's size step had
//               cut it, so the step is finished (media size, durable size).
// Caller holds t's resize lock. Returns 0 or the failed call's errno.
static resize_failure reconcile(udax_inode *t, int fd, udax_inode *media, int media_fd) {
  const uint64_t size = inode_size(t);
  struct stat st;
  if (fstat(fd, &st) != 0) return {errno, "fstat"};
  if ((uint64_t)st.st_size != size)
    if (int err = ftruncate_retry(fd, size)) return {err, "ftruncate"};
  const int32_t self = entry_owner_tag(t);
  uint32_t high = inode_high_water(t);
  if (high > t->capacity) high = t->capacity;
  for (uint32_t e = inode_entries(t); e < high; e++) {
    entry_lock_as(t, e, self);
    drop_tags_locked(t, e);
    entry_unlock(t, e);
  }
  if (!media) return {0, nullptr};
  if (fstat(media_fd, &st) != 0) return {errno, "fstat"};
  const uint64_t media_size = inode_size(media), on_disk = (uint64_t)st.st_size;
  if (on_disk > media_size) {
    if (int err = ftruncate_retry(media_fd, media_size)) return {err, "ftruncate"};
  } else if (on_disk < media_size && on_disk == size) {
    publish_size(media, size);
    set_size_word(t, UDAX_SIZE_DURABLE, (int64_t)size);
  }
  return {0, nullptr};
}

// The file's resize lock for the rest of a native call, reconciled first
// when a holder died with it; a reconcile that fails is left to the next
// holder (and this call throws its error).
class ResizeLocked {
 public:
  ResizeLocked(Napi::Env env, udax_inode *t, int fd, udax_inode *media, int media_fd) : t_(t), pending_(resize_lock(t)) {
    if (!pending_) return;
    resize_failure f = fd >= 0 ? reconcile(t, fd, media, media_fd) : resize_failure{EBADF, "fstat"};
    if (f.err) {
      resize_unlock(t_, true);  // (no destructor runs for a constructor that throws)
      throw errno_error(env, f.err, f.call, t->path);
    }
    pending_ = false;
  }
  ~ResizeLocked() { resize_unlock(t_, pending_); }
  ResizeLocked(const ResizeLocked &) = delete;
  ResizeLocked &operator=(const ResizeLocked &) = delete;

 private:
  udax_inode *t_;
  bool pending_;
};

// The media inode named by argument i when the media file (fd) is given,
// referenced for the native call; EBADF for a stale id.
struct MediaArg {
  udax_inode *m = nullptr;
  MediaArg(const Napi::CallbackInfo &info, int i, int media_fd, const char *syscall, const char *path) {
    if (media_fd < 0) return;
    m = inode_get(arg_id(info, i));
    if (!m) throw errno_error(info.Env(), EBADF, syscall, path);
  }
  ~MediaArg() {
    if (m) inode_unref(m);
  }
  MediaArg(const MediaArg &) = delete;
  MediaArg &operator=(const MediaArg &) = delete;
};

// inodeResize(fileId, inodeId, size, mediaFileId, mediaInodeId, ifSize) ->
// resized: resize the file to size bytes (a multiple of 4096, checked by the
// caller), its entry table in place and its media file (ids -1: none) with
// it: a grow grows the media first; a shrink leaves the media (and the
// durable size) alone until fsync. With ifSize >= 0, only if the live size
// is ifSize when the resize lock is held (false otherwise: another process
// or thread resized first). Errors, nothing changed: EFBIG past the table's
// reservation, EBUSY when a live mapping of the file in this process starts
// past size, ftruncate's errno.
static Napi::Value InodeResize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  FileFd file(info, 0, "ftruncate", true);
  const int fd = file.get();
  InodeArg t(info, 1, "ftruncate");
  uint64_t size = (uint64_t)info[2].As<Napi::Number>().Int64Value();
  FileFd media_file(info, 3, "ftruncate", true);
  const int media_fd = media_file.get();
  MediaArg media_arg(info, 4, media_fd, "ftruncate", t->path);
  udax_inode *media = media_arg.m;
  const int64_t if_size = info[5].IsNumber() ? info[5].As<Napi::Number>().Int64Value() : -1;
  if (fd < 0) throw errno_error(env, EBADF, "ftruncate", t->path);
  ResizeLocked lock(env, t.get(), fd, media, media_fd);
  uint64_t old_size = inode_size(t.get());
  if (if_size >= 0 && old_size != (uint64_t)if_size) return Napi::Boolean::New(env, false);
  if (size == old_size) return Napi::Boolean::New(env, true);
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
  return Napi::Boolean::New(env, true);
}

// inodeSyncSize(fileId, inodeId, mediaFileId, mediaInodeId) -> the durable
// size: the size step of fsync, after its writeback: the live size becomes
// durable, and a media file longer than it is cut to it (a shrink's old
// bytes are gone).
static Napi::Value InodeSyncSize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  FileFd file(info, 0, "fsync", true);
  InodeArg t(info, 1, "fsync");
  FileFd media_file(info, 2, "fsync", true);
  const int media_fd = media_file.get();
  MediaArg media_arg(info, 3, media_fd, "fsync", t->path);
  udax_inode *media = media_arg.m;
  ResizeLocked lock(env, t.get(), file.get(), media, media_fd);
  uint64_t size = inode_size(t.get());
  if (media && inode_size(media) > size) {
    if (int err = ftruncate_retry(media_fd, size)) throw errno_error(env, err, "ftruncate", media->path);
    publish_size(media, size);
  }
  set_size_word(t.get(), UDAX_SIZE_DURABLE, (int64_t)size);
  return Napi::Number::New(env, (double)size);
}

// testingSetResizeDelay(ns): sleep ns inside every resize of this process,
// holding the resize lock (0: none).
static Napi::Value TestingSetResizeDelay(const Napi::CallbackInfo &info) {
  g_resize_delay_ns.store(info[0].As<Napi::Number>().Int64Value());
  return info.Env().Undefined();
}

void init_resize(Napi::Env env, Napi::Object exports) {
  exports.Set("inodeResize", Napi::Function::New(env, InodeResize, "inodeResize"));
  exports.Set("inodeSyncSize", Napi::Function::New(env, InodeSyncSize, "inodeSyncSize"));
  exports.Set("testingSetResizeDelay", Napi::Function::New(env, TestingSetResizeDelay, "testingSetResizeDelay"));
}
