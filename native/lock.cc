// Entry locks: the kernel's DAX_LOCKED and its wait queue, as a bit in the
// entry word and a futex on it. src/entry.ts takes an uncontended lock with
// Atomics and comes here to wait, so waiters in the fault handler and in JS
// wake each other. Everything here is async-signal-safe.
//
// A lock's owner is its thread id. A thread that dies holding entry locks (a
// worker terminated inside sync or withEntriesLocked) leaves them set: a
// waiter that finds the owner gone takes the lock over, and sets DIRTY, the
// only thing recovery ever does — whatever the dead thread was doing, the
// next writeback flushes the entry again.
#include "udax.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// How long a waiter sleeps before it checks that the owner is alive.
static const long kOwnerCheckNs = 20 * 1000 * 1000;

static inline std::atomic<int32_t> *word_of(udax_inode *t, uint32_t index) {
  return reinterpret_cast<std::atomic<int32_t> *>(&t->entries[index]);
}

pid_t udax_gettid() { return (pid_t)syscall(SYS_gettid); }

static inline int32_t owner_tag(pid_t tid) {
  return (int32_t)(((uint32_t)tid << UDAX_ENTRY_OWNER_SHIFT) & UDAX_ENTRY_OWNER_MASK);
}

// Is thread tid of this process alive? (tgkill with signal 0 sends nothing.)
bool thread_alive(pid_t tid) {
  return syscall(SYS_tgkill, getpid(), tid, 0) == 0 || errno != ESRCH;
}

// Sleep while *word == expected, until woken or timeout_ns pass.
static void futex_wait_word(int32_t *word, int32_t expected, long timeout_ns) {
  struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
}

// Wake every thread sleeping on word.
static void futex_wake_word(int32_t *word) {
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

static void count_dirty(udax_inode *t, uint32_t index) {
  uint32_t group = index >> UDAX_SUMMARY_SHIFT;
  __atomic_fetch_add(&t->summary[group], 1, __ATOMIC_SEQ_CST);
  __atomic_fetch_add(&t->summary[t->groups + (group >> UDAX_SUMMARY2_SHIFT)], 1, __ATOMIC_SEQ_CST);
}

// A thread faulted on an entry whose lock it holds: it would wait forever.
// Say which file and offset, then abort.
[[noreturn]] static void self_deadlock(udax_inode *t, uint32_t index) {
  msg_str("udax: self-deadlock: thread ");
  msg_dec((uint64_t)udax_gettid());
  msg_str(" stored into ");
  msg_str(t->path);
  msg_str(" at offset ");
  msg_dec((uint64_t)index << t->entry_shift);
  msg_str(" while holding that entry's lock\n");
  msg_abort();
}

// Take the lock of entry index, sleeping while another thread holds it and
// taking it over if that thread has died. Caller holds no entry lock at a
// higher index. Returns true when the lock was recovered from a dead owner.
bool entry_lock_as(udax_inode *t, uint32_t index, int32_t self) {
  std::atomic<int32_t> *w = word_of(t, index);
  for (;;) {
    int32_t v = w->load(std::memory_order_relaxed);
    if (!(v & UDAX_ENTRY_LOCKED)) {
      int32_t locked = (int32_t)((v & UDAX_ENTRY_FLAGS_MASK) | UDAX_ENTRY_LOCKED) | self;
      if (w->compare_exchange_weak(v, locked, std::memory_order_acquire)) return false;
      continue;
    }
    int32_t owner = v & (int32_t)UDAX_ENTRY_OWNER_MASK;
    if (owner == self) self_deadlock(t, index);
    if (!(v & UDAX_ENTRY_WAITERS)) {
      if (!w->compare_exchange_weak(v, v | (int32_t)UDAX_ENTRY_WAITERS, std::memory_order_relaxed)) continue;
      v |= UDAX_ENTRY_WAITERS;
    }
    futex_wait_word(&t->entries[index], v, kOwnerCheckNs);
    if (w->load(std::memory_order_relaxed) != v || thread_alive((pid_t)((uint32_t)owner >> UDAX_ENTRY_OWNER_SHIFT))) continue;
    // The owner is gone and the word unchanged since: take it over, DIRTY.
    int32_t taken = (int32_t)((v & UDAX_ENTRY_FLAGS_MASK) | UDAX_ENTRY_LOCKED | UDAX_ENTRY_DIRTY) | self;
    if (!w->compare_exchange_strong(v, taken, std::memory_order_acquire)) continue;
    if (!(v & UDAX_ENTRY_DIRTY)) count_dirty(t, index);
    __atomic_fetch_add(&t->stats[UDAX_STAT_LOCKS_RECOVERED], 1, __ATOMIC_RELAXED);
    return true;
  }
}

void entry_lock(udax_inode *t, uint32_t index) { entry_lock_as(t, index, owner_tag(udax_gettid())); }

// Release the lock of entry index and wake its waiters. Caller holds it.
void entry_unlock(udax_inode *t, uint32_t index) {
  int32_t old = word_of(t, index)->fetch_and(
      (int32_t)(UDAX_ENTRY_FLAGS_MASK & ~(UDAX_ENTRY_LOCKED | UDAX_ENTRY_WAITERS | UDAX_ENTRY_REDIRTY)),
      std::memory_order_release);
  if (old & UDAX_ENTRY_WAITERS) futex_wake_word(&t->entries[index]);
}

// Clear DIRTY and TOWRITE and release the lock of entry index (the end of
// dax_writeback_one); the summary count drops after the unlock (an
// overcount only costs a concurrent sync a scan). Caller holds the lock.
// A harvest that re-dirtied the entry meanwhile (REDIRTY) found a store this
// writeback may have missed: then only unlock.
void entry_clean_and_unlock(udax_inode *t, uint32_t index) {
  std::atomic<int32_t> *w = word_of(t, index);
  const int32_t clean = (int32_t)(UDAX_ENTRY_FLAGS_MASK & ~(UDAX_ENTRY_LOCKED | UDAX_ENTRY_WAITERS |
                                                            UDAX_ENTRY_DIRTY | UDAX_ENTRY_TOWRITE));
  int32_t old = w->load(std::memory_order_relaxed);
  do {
    if (old & UDAX_ENTRY_REDIRTY) return entry_unlock(t, index);
  } while (!w->compare_exchange_weak(old, old & clean, std::memory_order_release, std::memory_order_relaxed));
  if (old & UDAX_ENTRY_WAITERS) futex_wake_word(&t->entries[index]);
  if (!(old & UDAX_ENTRY_DIRTY)) return;
  uint32_t group = index >> UDAX_SUMMARY_SHIFT;
  __atomic_fetch_sub(&t->summary[group], 1, __ATOMIC_SEQ_CST);
  __atomic_fetch_sub(&t->summary[t->groups + (group >> UDAX_SUMMARY2_SHIFT)], 1, __ATOMIC_SEQ_CST);
}

// Tag entry index DIRTY; on a clean -> DIRTY transition count it in the
// summary (entry.h). Caller holds the entry lock, and makes the page
// writable only after this returns.
void entry_set_dirty(udax_inode *t, uint32_t index) {
  if (word_of(t, index)->fetch_or((int32_t)UDAX_ENTRY_DIRTY, std::memory_order_seq_cst) & UDAX_ENTRY_DIRTY) return;
  count_dirty(t, index);
}

int32_t entry_owner_tag() { return owner_tag(udax_gettid()); }

void entry_dirty_nowait(udax_inode *t, uint32_t index, int32_t self) {
  std::atomic<int32_t> *w = word_of(t, index);
  for (;;) {
    int32_t v = w->load(std::memory_order_acquire);
    if (!(v & UDAX_ENTRY_LOCKED)) {
      int32_t locked = (int32_t)((v & UDAX_ENTRY_FLAGS_MASK) | UDAX_ENTRY_LOCKED) | self;
      if (!w->compare_exchange_weak(v, locked, std::memory_order_acquire)) continue;
      entry_set_dirty(t, index);
      entry_unlock(t, index);
      return;
    }
    if ((v & (int32_t)UDAX_ENTRY_OWNER_MASK) == self) {
      entry_set_dirty(t, index);
      return;
    }
    if (!w->compare_exchange_weak(v, v | (int32_t)(UDAX_ENTRY_DIRTY | UDAX_ENTRY_REDIRTY), std::memory_order_seq_cst)) continue;
    if (!(v & UDAX_ENTRY_DIRTY)) count_dirty(t, index);
    return;
  }
}

// entryLockWait(inodeId, index, ownerTag) -> whether the lock was recovered
// from a dead thread: the slow path of src/entry.ts EntryTable.lock, which
// found the entry locked by another thread.
static Napi::Value EntryLockWait(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "futex");
  uint32_t index = info[1].As<Napi::Number>().Uint32Value();
  if (index >= t->capacity) throw errno_error(info.Env(), EINVAL, "futex", t->path);
  return Napi::Boolean::New(info.Env(), entry_lock_as(t.get(), index, info[2].As<Napi::Number>().Int32Value()));
}

// entryWake(inodeId, index): wake every thread sleeping on the entry word.
static Napi::Value EntryWake(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "futex");
  uint32_t index = info[1].As<Napi::Number>().Uint32Value();
  if (index >= t->capacity) throw errno_error(info.Env(), EINVAL, "futex", t->path);
  futex_wake_word(&t->entries[index]);
  return info.Env().Undefined();
}

// gettid(): this thread's Linux thread id (the entry-lock owner).
static Napi::Value GetTid(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), udax_gettid());
}

void init_lock(Napi::Env env, Napi::Object exports) {
  exports.Set("entryLockWait", Napi::Function::New(env, EntryLockWait, "entryLockWait"));
  exports.Set("entryWake", Napi::Function::New(env, EntryWake, "entryWake"));
  exports.Set("gettid", Napi::Function::New(env, GetTid, "gettid"));
}
