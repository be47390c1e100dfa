// The async tracker's freeze: hold stores from other threads back while a
// volume snapshot reads (src/volume-crash.ts). The async tracker has no
// write fault of its own (WP_ASYNC resolves it in the kernel), so a freeze
// makes every live async mapping of the file PROT_READ, whole (one VMA each:
// nothing splits), and the region's write-fault hook, handle_frozen_write_fault,
// waits in the SIGSEGV handler until the thaw, then returns so the store
// retries.
//
// The freeze word (UDAX_TRACKER_FREEZE) is 0 or the freezer's owner tag; -1
// while a waiter thaws for a freezer that died. Order, which the handler's
// contract rests on:
//   freeze  take the word (0 -> tid), then mprotect PROT_READ
//   thaw    mprotect PROT_READ|PROT_WRITE, then clear the word, FUTEX_WAKE all
// So a write fault seen with the word 0 was taken before the thaw's mprotect
// (or the freeze's): the page is writable again and the retried store
// succeeds — returning cannot loop. Async regions are otherwise mapped
// read-write and nothing else in udax makes them read-only, so no other
// write fault reaches the hook; read and exec faults are never dispatched
// (native/fault.cc) and crash as they would without udax.
//
// A mapping made while the file is frozen (map_wait_thawed): mapRegion
// publishes the region LIVE, then reads the word (a seq_cst fence between,
// as between the freeze's taking the word and its scan of the regions), so
// either the freeze's scan sees the region and makes it read-only, or the
// map sees the word and does not return — nobody has the mapping's address
// yet — until the thaw. So no store through any mapping gets past a freeze.
//
// mprotect keeps userfaultfd write-protection: a PTE with the uffd-wp bit
// is never made writable by mprotect (mm/mprotect.c can_change_pte_writable),
// so a page that was clean at the freeze is still reported by the next
// harvest after a store (test/38).
#include "udax.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <time.h>

static const int32_t kThawing = -1;
static const long kPollNs = 2000000;  // a waiter rechecks its region and the freezer this often

static std::atomic<int32_t> *freeze_word(udax_inode *t) {
  return reinterpret_cast<std::atomic<int32_t> *>(&t->tracker[UDAX_TRACKER_FREEZE]);
}

static void freeze_wait(udax_inode *t, int32_t seen) {
  struct timespec ts = {0, kPollNs};
  syscall(SYS_futex, &t->tracker[UDAX_TRACKER_FREEZE], FUTEX_WAIT, seen, &ts, nullptr, 0);
}

static void freeze_release(udax_inode *t) {
  freeze_word(t)->store(0, std::memory_order_release);
  syscall(SYS_futex, &t->tracker[UDAX_TRACKER_FREEZE], FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// mprotect every live async region of t whole; *count gets how many.
// Returns 0 or the first errno (every region is still tried). Async-signal-safe.
struct async_prot {
  udax_inode *t;
  bool writable;
  int err, n;
};

static bool set_region_async_prot(udax_region *r, void *arg) {
  async_prot *a = (async_prot *)arg;
  if (r->state.load(std::memory_order_acquire) != REGION_LIVE || !region_pin(r)) return true;
  if (r->inode == a->t && r->async) {
    if (mprotect((void *)r->start, r->end - r->start, a->writable ? PROT_READ | PROT_WRITE : PROT_READ) != 0 && !a->err) a->err = errno;
    a->n++;
  }
  region_unpin(r);
  return true;
}

static int set_async_prot(udax_inode *t, bool writable, int *count) {
  async_prot a = {t, writable, 0, 0};
  std::atomic_thread_fence(std::memory_order_seq_cst);  // the word taken before the scan (map_wait_thawed)
  regions_of_each(t, set_region_async_prot, &a);
  if (count) *count = a.n;
  return a.err;
}

// A thaw that fails would leave writers faulting forever: say so and stop.
// (Making a whole VMA read-write again needs no new VMA, so it does not fail.)
[[noreturn]] static void thaw_failed(udax_inode *t, int err) {
  msg_str("udax: fatal: mprotect (thaw) failed (errno ");
  msg_dec((uint64_t)err);
  msg_str(") for ");
  msg_str(t->path);
  msg_str("\n");
  msg_abort();
}

static void thaw(udax_inode *t) {
  int err = set_async_prot(t, true, nullptr);
  if (err) thaw_failed(t, err);
  freeze_release(t);
}

// Wait until r's file is not frozen by another thread, or r is no longer
// live (being unmapped: waiting would only hold up the unmap), thawing for
// a freezer that died. Returns this thread's owner tag when it holds the
// freeze itself, else 0. Async-signal-safe.
static int32_t wait_thawed(udax_region *r) {
  udax_inode *t = r->inode;
  std::atomic<int32_t> *w = freeze_word(t);
  int32_t self = 0;
  for (;;) {
    int32_t c = w->load(std::memory_order_acquire);
    if (c == 0 || r->state.load(std::memory_order_acquire) != REGION_LIVE) return 0;
    if (!self) self = entry_owner_tag(t);
    if (c == self) return self;
    if (c > 0 && !owner_alive(t, c)) {
      if (w->compare_exchange_strong(c, kThawing, std::memory_order_acq_rel)) thaw(t);
      continue;
    }
    freeze_wait(t, c);
  }
}

// The hook, in the SIGSEGV handler with r pinned (async-signal-safe only).
// Returns when the file is not frozen (the store retries), when r is being
// unmapped (unmap waits for the pin; the retry then reaches the tombstone),
// or after thawing for a freezer that died.
void handle_frozen_write_fault(udax_region *r, uintptr_t addr) {
  if (wait_thawed(r)) {
    msg_str("udax: self-deadlock: thread ");
    msg_dec((uint64_t)udax_gettid());
    msg_str(" stored into ");
    msg_str(r->inode->path);
    msg_str(" while it holds the file frozen\n");
    msg_abort();
  }
}

// Called by mapRegion after it published async region r LIVE, before it
// returns the mapping: wait until r's file is not frozen by another thread
// (thawing for a dead freezer, as the fault handler does). A mapping made
// by the freezing thread itself, inside its snapshot, is not waited for.
void map_wait_thawed(udax_region *r) {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // LIVE published before the word is read
  wait_thawed(r);
}

// freezeAsync(inodeId) -> async regions frozen: take the file's freeze word
// (waiting for another freezer; taken over from a dead one), then make its
// async mappings read-only. On failure nothing stays frozen.
static Napi::Value FreezeAsync(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "mprotect");
  std::atomic<int32_t> *w = freeze_word(t.get());
  int32_t self = entry_owner_tag(t.get());
  for (;;) {
    int32_t c = w->load(std::memory_order_acquire);
    if (c == self) throw errno_error(info.Env(), EDEADLK, "mprotect", t->path);
    if ((c == 0 || (c > 0 && !owner_alive(t.get(), c))) && w->compare_exchange_strong(c, self, std::memory_order_acq_rel)) break;
    if (c != 0) freeze_wait(t.get(), c);
  }
  int n = 0;
  if (int err = set_async_prot(t.get(), false, &n)) {
    thaw(t.get());
    throw errno_error(info.Env(), err, "mprotect", t->path);
  }
  return Napi::Number::New(info.Env(), n);
}

// thawAsync(inodeId): make the file's async mappings read-write again, then
// wake every store waiting in the fault handler. The caller froze it.
static Napi::Value ThawAsync(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "mprotect");
  if (freeze_word(t.get())->load(std::memory_order_acquire) != entry_owner_tag(t.get()))
    throw errno_error(info.Env(), EPERM, "mprotect", t->path);
  thaw(t.get());
  return info.Env().Undefined();
}

void init_freeze(Napi::Env env, Napi::Object exports) {
  exports.Set("freezeAsync", Napi::Function::New(env, FreezeAsync, "freezeAsync"));
  exports.Set("thawAsync", Napi::Function::New(env, ThawAsync, "thawAsync"));
}
