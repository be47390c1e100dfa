// Writeback mechanisms: dax_entry_mkclean + dax_flush for a run of entries,
// and the copies the persistence model makes. Each runs under a SIGBUS guard:
// a file truncated underneath (by another process) turns its pages past the
// new end into SIGBUS, which here becomes an error instead of a dead process.
#include "udax.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <memory>
#include <time.h>
#include <vector>

static const uint64_t kPage = 4096;

// Flush [addr, addr+len) of a file with entries of 2^shift bytes. With PTE
// entries a large piece comes from a coarsened 2 MiB block (VMA budget) that
// may hold only a few written pages: skip pages not resident in the page
// cache (holes: no cache line to write back; touching them would allocate
// them). PMD entries are flushed whole, as the kernel does. Returns the bytes
// flushed.
static uint64_t flush_resident(void *addr, uint64_t len, uint32_t shift, std::vector<unsigned char> &resident) {
  const uint64_t kMincoreMin = 16 * kPage;
  if (len < kMincoreMin || shift != 12) {
    flush_range(addr, len);
    return len;
  }
  uint64_t pages = (len + kPage - 1) / kPage, flushed = 0;
  if (resident.size() < pages) resident.resize(pages);
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

// Everything mkclean_flush allocates or pins lives here, outside the guarded
// call, so a SIGBUS that jumps out of it leaks nothing and leaves no pin.
struct mkclean_job {
  udax_inode *t;
  udax_region *fallback;
  uint32_t first, last;
  uint64_t flushed;
  int err;                  // mprotect errno
  udax_region *pinned;      // the region being worked on
  std::vector<uint8_t> done;
  std::vector<unsigned char> resident;
  std::vector<udax_region *> regions;  // regions_of(t), taken before the guarded call
};

// The end of entry e in the file now (the last entry may be partial). A
// resize changes the size only while it holds the entry locks of the entries
// whose end it moves, so a caller holding e's lock reads a stable value.
static uint64_t entry_end(const udax_inode *t, uint32_t e) {
  uint64_t end = ((uint64_t)e + 1) << t->entry_shift, size = inode_size(t);
  return end < size ? end : size;
}

// Flush the job's entries in [lo, hi] that region r covers whole and no
// other region flushed yet, in contiguous pieces. Caller pinned r.
static void flush_covered(mkclean_job *j, udax_region *r, uint32_t lo, uint32_t hi) {
  const uint32_t first = j->first, shift = j->t->entry_shift;
  std::vector<uint8_t> &done = j->done;
  uint64_t region_to = r->file_offset + (r->end - r->start);
  for (uint32_t k = lo; k <= hi;) {
    uint64_t from = (uint64_t)k << shift;
    if (done[k - first] || from < r->file_offset || entry_end(j->t, k) > region_to) { k++; continue; }
    uint32_t piece_end = k;
    while (piece_end < hi && !done[piece_end + 1 - first] && entry_end(j->t, piece_end + 1) <= region_to) piece_end++;
    uint64_t to = entry_end(j->t, piece_end);
    j->flushed += flush_resident((void *)(r->start + (from - r->file_offset)), to - from, shift, j->resident);
    memset(&done[k - first], 1, piece_end - k + 1);
    k = piece_end + 1;
  }
}

// Write-protect the job's entries that region r holds writable, and flush
// those it covers whole. An async region was write-protected by the harvest
// already; its 4 KiB entries flush through it, where the written pages are
// mapped (the fallback would read-fault each one in). Its 2 MiB entries go
// through the fallback: flushing a block through r would read-fault its
// unwritten pages in, and populated scans would report them (trap 7).
// Caller pinned r.
static void mkclean_region(mkclean_job *j, udax_region *r) {
  uint32_t region_last = r->first_entry + r->n_entries - 1;
  uint32_t lo = j->first > r->first_entry ? j->first : r->first_entry;
  uint32_t hi = j->last < region_last ? j->last : region_last;
  if (lo > hi) return;
  if (r->async) {
    if (j->t->entry_shift == 12) flush_covered(j, r, lo, hi);
    return;
  }
  for (uint32_t e = lo; e <= hi;) {
    if (!r->writable[e - r->first_entry]) { e++; continue; }
    uint32_t run_end = e;
    while (run_end < hi && r->writable[run_end + 1 - r->first_entry]) run_end++;
    int err = region_set_prot(r, e, run_end, false);
    if (err) { j->err = err; return; }
    flush_covered(j, r, e, run_end);
    e = run_end + 1;
  }
}

static void mkclean_flush(void *arg) {
  mkclean_job *j = (mkclean_job *)arg;
  udax_inode *t = j->t;
  const uint32_t first = j->first, last = j->last, shift = t->entry_shift;
  const uint64_t file_size = inode_size(t);
  std::vector<uint8_t> &done = j->done;
  // Every process's mappings are write-protected before anything is flushed:
  // sigbus peers' here, through their userfaultfds (only they publish one);
  // sigsegv peers' by the caller's shootdown, before this.
  j->err = sidecar_mkclean_peers(t, first, last);
  for (size_t i = 0; i < j->regions.size() && !j->err; i++) {
    udax_region *r = j->regions[i];
    if (r->state.load(std::memory_order_acquire) != REGION_LIVE || !r->tracked || r->inode != t) continue;
    if (!region_pin(r)) continue;  // being unmapped: its pages are going away
    j->pinned = r;
    if (r->inode == t) mkclean_region(j, r);
    j->pinned = nullptr;
    region_unpin(r);
  }
  // Entries no tracked mapping held whole and writable (dirtied through a
  // mapping since unmapped, or partly covered PMD entries): the fallback.
  udax_region *fb = j->fallback;
  for (uint32_t e = first; e <= last && !j->err; e++) {
    uint64_t from = (uint64_t)e << shift;
    if (done[e - first] || from >= file_size) continue;  // dropped by a shrink
    j->flushed += flush_resident((void *)(fb->start + from), entry_end(t, e) - from, shift, j->resident);
  }
}

// mkclean + flush entries [first, last] of t (fallback: its read-only
// mapping of the whole file) under the SIGBUS guard. Returns 0, EFAULT (the
// file shrank underneath) or the mprotect errno; adds the bytes flushed.
// Sigsegv peers are the caller's (shootdown_peers, before this).
static int mkclean_guarded(udax_inode *t, udax_region *fallback, uint32_t first, uint32_t last, uint64_t *flushed) {
  mkclean_job j{t, fallback, first, last, 0, 0, nullptr, std::vector<uint8_t>(last - first + 1, 0), {}, {}};
  // After the caller locked the entries: a region mapped later starts
  // protected. A copy, not the list in place: a SIGBUS jumps out of the guard.
  if (!regions_of(t, &j.regions)) return ENOMEM;
  if (guard_sigbus(mkclean_flush, &j) != 0) {
    if (j.pinned) region_unpin(j.pinned);
    return EFAULT;
  }
  *flushed += j.flushed;
  return j.err;
}

// The errno of a failed mkclean_guarded as the DaxError's system call.
static Napi::Error mkclean_error(Napi::Env env, int err, udax_inode *t) {
  return errno_error(env, err, err == EFAULT ? "msync" : "mprotect", t->path);
}

// A run [first, last] of t's entries, and fallback t's whole-file mapping
// (of the file as this caller knows it, in whole entries: past the run). The
// run may end past the live size when another thread shrank the file since
// the caller looked: those entries are clean (the shrink dropped them under
// their locks) and are skipped.
static void check_run(Napi::Env env, udax_inode *t, uint32_t first, uint32_t last, udax_region *fallback) {
  if (first > last || last >= t->capacity || fallback->inode != t ||
      fallback->end - fallback->start < (((uint64_t)last + 1) << t->entry_shift))
    throw errno_error(env, EINVAL, "msync", t->path);
}

// mkcleanFlush(inodeId, firstEntry, lastEntry, fallbackRegion, out?) -> bytes flushed.
// dax_entry_mkclean + dax_flush for a run of entries: write-protect them in
// every tracked mapping of the file that holds them writable, in every
// process, and flush each entry's cache lines exactly once — through a
// mapping that holds the whole entry writable (its pages are present there),
// else through fallbackRegion, a read-only mapping of the whole file. No
// fence: the caller fences once per batch. Caller holds the entry locks.
// out (a Float64Array of 1, optional) <- 1 when a sigsegv peer did not ack
// its shootdown in time: the bytes are flushed, but the entries must stay
// DIRTY (flush now, clean later). Throws EFAULT when the file shrank
// underneath (SIGBUS) and the mprotect errno when write-protecting failed.
static Napi::Value MkcleanFlush(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  InodeArg t(info, 0, "msync");
  uint32_t first = info[1].As<Napi::Number>().Uint32Value();
  uint32_t last = info[2].As<Napi::Number>().Uint32Value();
  PinnedRegion fallback(info, 3);
  double *out = nullptr;
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    Napi::TypedArray a = info[4].As<Napi::TypedArray>();
    if (a.TypedArrayType() != napi_float64_array || a.ElementLength() < 1)
      throw Napi::TypeError::New(env, "mkcleanFlush: out must be a Float64Array of 1");
    size_t len;
    out = reinterpret_cast<double *>(typed_bytes(info, 4, &len));
  }
  check_run(env, t.get(), first, last, fallback.get());
  bool peers_acked = shootdown_peers(t.get(), first, last);
  uint64_t flushed = 0;
  if (int err = mkclean_guarded(t.get(), fallback.get(), first, last, &flushed)) throw mkclean_error(env, err, t.get());
  if (out) out[0] = peers_acked ? 0 : 1;
  return Napi::Number::New(env, (double)flushed);
}

struct copy_job {
  void *dst;
  const void *src;
  size_t len;
};
static void copy_bytes(void *arg) {
  copy_job *j = (copy_job *)arg;
  memcpy(j->dst, j->src, j->len);
}

// memcpy under the SIGBUS guard: 0, or EFAULT when a file shrank underneath.
static int copy_guarded(void *dst, const void *src, size_t len) {
  copy_job j{dst, src, len};
  return guard_sigbus(copy_bytes, &j);
}

// writebackRun(inodeId, firstEntry, lastEntry, fallbackRegion, ownerTag,
// mediaRegion, out): out (a Float64Array of 5) <- [entries cleaned, bytes
// flushed, bytes copied to the media, ns copying, entries flushed but kept
// DIRTY]: dax_writeback_one for a run of tagged entries in one call: lock
// those still due, ascending; one shootdown of sigsegv peers over the due entries; mkclean +
// flush each contiguous piece still DIRTY|TOWRITE and copy it to the media
// (mediaRegion, or -1 for none); one fence; clean exactly the entries flushed
// here — unless a peer did not ack the shootdown in time, which keeps them
// DIRTY (flush now, clean later) — and unlock the rest. A piece found not due
// was cleaned by a concurrent sync after the caller's snapshot. On an error
// every entry is unlocked still DIRTY: nothing is lost. src/writeback.ts runs
// the same steps in JS when the persistence model needs more (injected
// errors, timing).
static Napi::Value WritebackRun(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  InodeArg t(info, 0, "msync");
  uint32_t first = info[1].As<Napi::Number>().Uint32Value();
  uint32_t last = info[2].As<Napi::Number>().Uint32Value();
  PinnedRegion fallback(info, 3);
  int32_t self = info[4].As<Napi::Number>().Int32Value();
  std::unique_ptr<PinnedRegion> media_pin;
  if (info[5].As<Napi::Number>().Int32Value() >= 0) media_pin.reset(new PinnedRegion(info, 5));
  udax_region *media = media_pin ? media_pin->get() : nullptr;
  Napi::TypedArray out_array = info[6].As<Napi::TypedArray>();
  if (out_array.TypedArrayType() != napi_float64_array || out_array.ElementLength() < 5)
    throw Napi::TypeError::New(env, "writebackRun: out must be a Float64Array of 5");
  check_run(env, t.get(), first, last, fallback.get());
  const int32_t due_mask = (int32_t)(UDAX_ENTRY_DIRTY | UDAX_ENTRY_TOWRITE);
  auto due_word = [&](uint32_t i) { return (__atomic_load_n(&t->entries[i], __ATOMIC_SEQ_CST) & due_mask) == due_mask; };
  // Only entries due when we come to them are locked: a run may span clean
  // gaps (one shootdown for scattered entries), whose stores must not wait
  // for it. One that becomes due after we passed was tagged by a concurrent
  // sync, which writes it back itself.
  std::vector<uint8_t> held(last - first + 1, 0);
  for (uint32_t i = first; i <= last; i++) {
    if (!due_word(i)) continue;
    entry_lock_as(t.get(), i, self);
    held[i - first] = 1;
  }
  auto due = [&](uint32_t i) { return held[i - first] && due_word(i); };
  uint32_t first_due = first, last_due = last;
  while (first_due <= last && !due(first_due)) first_due++;
  while (last_due > first_due && !due(last_due)) last_due--;
  // One shootdown for the run (a round trip to each sigsegv peer's helper).
  const bool peers_acked = first_due > last || shootdown_peers(t.get(), first_due, last_due);
  std::vector<uint8_t> flushed(last - first + 1, 0);
  uint64_t bytes = 0, media_bytes = 0;
  int64_t media_ns = 0;
  int err = 0;
  for (uint32_t i = first; i <= last && !err;) {
    if (!due(i)) { i++; continue; }
    uint32_t end = i;
    while (end < last && due(end + 1)) end++;
    err = mkclean_guarded(t.get(), fallback.get(), i, end, &bytes);
    if (!err) {
      memset(&flushed[i - first], 1, end - i + 1);
      if (media) {
        // The entries are write-protected and flushed: the media receives
        // exactly the flushed bytes (src/media.ts).
        uint64_t from = (uint64_t)i << t->entry_shift, to = entry_end(t.get(), end);
        if (to > media->end - media->start || to > fallback->end - fallback->start) {
          err = EINVAL;  // the media or fallback mapping of a caller that missed a grow
          break;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        err = copy_guarded((void *)(media->start + from), (const void *)(fallback->start + from), (size_t)(to - from));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        media_ns += (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
        media_bytes += to - from;
      }
    }
    i = end + 1;
  }
  if (!err) flush_fence();
  uint32_t cleaned = 0, kept = 0;
  for (uint32_t i = first; i <= last; i++) {
    if (!held[i - first]) continue;
    if (!err && flushed[i - first] && peers_acked) {
      entry_clean_and_unlock(t.get(), i);
      cleaned++;
    } else {
      if (!err && flushed[i - first]) kept++;
      entry_unlock(t.get(), i);
    }
  }
  if (err) throw mkclean_error(env, err, t.get());
  // Results through a caller's array: no object to build per run.
  size_t out_len;
  double *out = reinterpret_cast<double *>(typed_bytes(info, 6, &out_len));
  out[0] = cleaned;
  out[1] = (double)bytes;
  out[2] = (double)media_bytes;
  out[3] = (double)media_ns;
  out[4] = kept;
  return env.Undefined();
}


// regionCopy(dstRegion, srcRegion, offset, length): copy bytes [offset,
// offset+length) of one mapping into the same offsets of another (the media
// copy of writeback). Throws EFAULT when either file shrank underneath.
static Napi::Value RegionCopy(const Napi::CallbackInfo &info) {
  PinnedRegion dst(info, 0);
  PinnedRegion src(info, 1);
  size_t length;
  uintptr_t from = region_range(info, src.get(), 2, "write", &length);
  uintptr_t to = region_range(info, dst.get(), 2, "write", &length);
  if (copy_guarded((void *)to, (const void *)from, length)) throw errno_error(info.Env(), EFAULT, "write", src->inode->path);
  return info.Env().Undefined();
}

// regionRead(region, offset, target): copy bytes of a mapping from offset
// into the typed array target. Throws EFAULT when the file shrank underneath.
static Napi::Value RegionRead(const Napi::CallbackInfo &info) {
  PinnedRegion r(info, 0);
  size_t length;
  uint8_t *target = typed_bytes(info, 2, &length);
  size_t offset = (size_t)info[1].As<Napi::Number>().Int64Value();
  size_t limit = r->end - r->start;
  if (offset > limit || length > limit - offset) throw errno_error(info.Env(), EINVAL, "read", r->inode->path);
  if (copy_guarded(target, (const void *)(r->start + offset), length)) throw errno_error(info.Env(), EFAULT, "read", r->inode->path);
  return info.Env().Undefined();
}

struct flush_job {
  const void *addr;
  size_t len;
};
static void flush_and_fence(void *arg) {
  flush_job *j = (flush_job *)arg;
  flush_range(j->addr, j->len);
  flush_fence();
}

// regionFlush(region, offset, length): flush the cache lines of part of a
// mapping and fence (the end of a DAX write: data durable on return).
// Throws EFAULT when the file shrank underneath.
static Napi::Value RegionFlush(const Napi::CallbackInfo &info) {
  PinnedRegion r(info, 0);
  size_t length;
  uintptr_t addr = region_range(info, r.get(), 1, "pwrite", &length);
  flush_job j{(const void *)addr, length};
  if (guard_sigbus(flush_and_fence, &j) != 0) throw errno_error(info.Env(), EFAULT, "pwrite", r->inode->path);
  return info.Env().Undefined();
}

void init_writeback(Napi::Env env, Napi::Object exports) {
  exports.Set("regionFlush", Napi::Function::New(env, RegionFlush, "regionFlush"));
  exports.Set("mkcleanFlush", Napi::Function::New(env, MkcleanFlush, "mkcleanFlush"));
  exports.Set("writebackRun", Napi::Function::New(env, WritebackRun, "writebackRun"));
  exports.Set("regionCopy", Napi::Function::New(env, RegionCopy, "regionCopy"));
  exports.Set("regionRead", Napi::Function::New(env, RegionRead, "regionRead"));
}
