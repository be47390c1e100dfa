// The file's resize lock: one futex word in the shared table
// (UDAX_TRACKER_RESIZE_LOCK), so a resize and fsync's size step in any
// process exclude each other in every process (the kernel's i_rwsem, which
// truncate and fsync's size update both hold). Outermost of the file's
// locks: its holder then takes entry locks, then the harvest lock.
//
// 0 free, else the holder's owner tag (entry.h), with UDAX_TAG_LOCK_WAITERS
// set while someone sleeps on it (tag_lock, native/lock.cc). A holder that
// died (a process killed mid-resize) may leave the size words and the
// files' lengths disagreeing: a
// waiter that finds it dead takes it over, and a claimer of the dead
// holder's registry slot sets it to kResizeRecover; either way the next
// holder is told to reconcile (native/resize.cc) before anything else.
#include "udax.h"


static const int32_t kResizeRecover = 2;  // free, and its last holder died holding it

bool resize_lock(udax_inode *t) {
  int32_t was = tag_lock(t, UDAX_TRACKER_RESIZE_LOCK, entry_owner_tag(t));
  return (was & (int32_t)UDAX_ENTRY_OWNER_MASK) || (was & kResizeRecover);
}

void resize_unlock(udax_inode *t, bool recover_pending) {
  tag_unlock(t, UDAX_TRACKER_RESIZE_LOCK, recover_pending ? kResizeRecover : 0);
}

void resize_lock_release_dead(udax_inode *t, int32_t v) {
  if (__atomic_compare_exchange_n(&t->tracker[UDAX_TRACKER_RESIZE_LOCK], &v, kResizeRecover, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
    tag_lock_wake(t, UDAX_TRACKER_RESIZE_LOCK);
}
