// The file's resize lock: one futex word in the shared table
// (UDAX_TRACKER_RESIZE_LOCK), so a resize and fsync's size step in any
// process exclude each other in every process (the kernel's i_rwsem, which
// truncate and fsync's size update both hold). Outermost of the file's
// locks: its holder then takes entry locks, then the harvest lock.
//
// 0 free, else the holder's owner tag (entry.h), with kResizeWaiters set
// while someone sleeps on it. A holder that died (a process killed mid-
// resize) may leave the size words and the files' lengths disagreeing: a
// waiter that finds it dead takes it over, and a claimer of the dead
// holder's registry slot sets it to kResizeRecover; either way the next
// holder is told to reconcile (native/resize.cc) before anything else.
#include "udax.h"

#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const int32_t kResizeWaiters = 1;
static const int32_t kResizeRecover = 2;  // free, and its last holder died holding it
static const long kHolderCheckNs = 20 * 1000 * 1000;

static std::atomic<int32_t> *resize_word(udax_inode *t) {
  return reinterpret_cast<std::atomic<int32_t> *>(&t->tracker[UDAX_TRACKER_RESIZE_LOCK]);
}

static void resize_wake(udax_inode *t) {
  syscall(SYS_futex, &t->tracker[UDAX_TRACKER_RESIZE_LOCK], FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

bool resize_lock(udax_inode *t) {
  std::atomic<int32_t> *w = resize_word(t);
  const int32_t self = entry_owner_tag(t);
  for (;;) {
    int32_t c = w->load(std::memory_order_acquire);
    if (!(c & (int32_t)UDAX_ENTRY_OWNER_MASK)) {
      if (w->compare_exchange_weak(c, self, std::memory_order_acquire)) return c & kResizeRecover;
      continue;
    }
    if (!(c & kResizeWaiters)) {
      if (!w->compare_exchange_weak(c, c | kResizeWaiters, std::memory_order_relaxed)) continue;
      c |= kResizeWaiters;
    }
    struct timespec ts = {0, kHolderCheckNs};
    syscall(SYS_futex, &t->tracker[UDAX_TRACKER_RESIZE_LOCK], FUTEX_WAIT, c, &ts, nullptr, 0);
    if (w->load(std::memory_order_acquire) != c || owner_alive(t, c & (int32_t)UDAX_ENTRY_OWNER_MASK)) continue;
    if (!w->compare_exchange_strong(c, self, std::memory_order_acquire)) continue;
    __atomic_fetch_add(&t->stats[UDAX_STAT_LOCKS_RECOVERED], 1, __ATOMIC_RELAXED);
    if (c & kResizeWaiters) resize_wake(t);  // the others wait for us now, not for the dead
    return true;
  }
}

void resize_unlock(udax_inode *t, bool recover_pending) {
  if (resize_word(t)->exchange(recover_pending ? kResizeRecover : 0, std::memory_order_release) & kResizeWaiters) resize_wake(t);
}

void resize_lock_release_dead(udax_inode *t, int32_t v) {
  if (resize_word(t)->compare_exchange_strong(v, kResizeRecover, std::memory_order_acq_rel)) resize_wake(t);
}
