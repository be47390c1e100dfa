// Entry locks: the kernel's DAX_LOCKED and its wait queue, as a bit in the
// entry word and a futex on it. src/entry.ts takes an uncontended lock with
// Atomics and comes here to wait, so waiters in the fault handler and in JS
// wake each other. Everything here is async-signal-safe.
//
// A lock's owner is its owner tag (entry.h, native/sidecar.cc): registry
// slot and thread index, unique across the processes sharing the file. A
// thread that dies holding entry locks (a worker terminated inside sync or
// withEntriesLocked, a process killed) leaves them set: a waiter that finds
// the owner gone takes the lock over, and sets DIRTY, the only thing
// recovery ever does — whatever the dead thread was doing, the next
// writeback flushes the entry again. The words are shared memory: the
// futexes are the shared (not _PRIVATE) ones.
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

// Sleep while *word == expected, until woken or timeout_ns pass.
static void futex_wait_word(int32_t *word, int32_t expected, long timeout_ns) {
  struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
  syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

// Wake every thread sleeping on word.
static void futex_wake_word(int32_t *word) {
  syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
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
    if (w->load(std::memory_order_relaxed) != v || owner_alive(t, owner)) continue;
    // The owner is gone and the word unchanged since: take it over, DIRTY.
    int32_t taken = (int32_t)((v & UDAX_ENTRY_FLAGS_MASK) | UDAX_ENTRY_LOCKED | UDAX_ENTRY_DIRTY) | self;
    if (!w->compare_exchange_strong(v, taken, std::memory_order_acquire)) continue;
    if (!(v & UDAX_ENTRY_DIRTY)) count_dirty(t, index);
    __atomic_fetch_add(&t->stats[UDAX_STAT_LOCKS_RECOVERED], 1, __ATOMIC_RELAXED);
    return true;
  }
}

void entry_lock(udax_inode *t, uint32_t index) { entry_lock_as(t, index, entry_owner_tag(t)); }

// Release the lock of entry index and wake its waiters. Caller holds it.
void entry_unlock(udax_inode *t, uint32_t index) {
  int32_t old = word_of(t, index)->fetch_and(
      (int32_t)(UDAX_ENTRY_FLAGS_MASK & ~(UDAX_ENTRY_LOCKED | UDAX_ENTRY_WAITERS)), std::memory_order_release);
  if (old & UDAX_ENTRY_WAITERS) futex_wake_word(&t->entries[index]);
}

// Clear DIRTY and TOWRITE and release the lock of entry index (the end of
// dax_writeback_one); the summary count drops after the unlock (an
// overcount only costs a concurrent sync a scan). Caller holds the lock.
void entry_clean_and_unlock(udax_inode *t, uint32_t index) {
  int32_t old = word_of(t, index)->fetch_and(
      (int32_t)(UDAX_ENTRY_FLAGS_MASK & ~(UDAX_ENTRY_LOCKED | UDAX_ENTRY_WAITERS | UDAX_ENTRY_DIRTY | UDAX_ENTRY_TOWRITE)),
      std::memory_order_release);
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

void entry_release_dead_slot(udax_inode *t, int k) {
  uint32_t n = inode_high_water(t);
  if (n > t->capacity) n = t->capacity;
  const uint32_t lo = (uint32_t)(k + 1) << (UDAX_OWNER_THREAD_BITS + UDAX_ENTRY_OWNER_SHIFT);
  const uint32_t hi = (uint32_t)(k + 2) << (UDAX_OWNER_THREAD_BITS + UDAX_ENTRY_OWNER_SHIFT);
  auto theirs = [&](int32_t v) { return (uint32_t)(v & (int32_t)UDAX_ENTRY_OWNER_MASK) >= lo && (uint32_t)(v & (int32_t)UDAX_ENTRY_OWNER_MASK) < hi; };
  for (uint32_t i = 0; i < n; i++) {
    std::atomic<int32_t> *w = word_of(t, i);
    int32_t v = w->load(std::memory_order_relaxed);
    while ((v & UDAX_ENTRY_LOCKED) && theirs(v)) {
      int32_t freed = (int32_t)((v & UDAX_ENTRY_FLAGS_MASK & ~(UDAX_ENTRY_LOCKED | UDAX_ENTRY_WAITERS)) | UDAX_ENTRY_DIRTY);
      if (!w->compare_exchange_weak(v, freed, std::memory_order_acq_rel)) continue;
      if (!(v & UDAX_ENTRY_DIRTY)) count_dirty(t, i);
      if (v & UDAX_ENTRY_WAITERS) futex_wake_word(&t->entries[i]);
      __atomic_fetch_add(&t->stats[UDAX_STAT_LOCKS_RECOVERED], 1, __ATOMIC_RELAXED);
      break;
    }
  }
  // The harvest lock and the freeze word: their takers recover them (a dead
  // owner), but an owner tag of this slot would look like ours from now on.
  for (int word : {UDAX_TRACKER_HARVEST_LOCK, UDAX_TRACKER_FREEZE}) {
    int32_t v = __atomic_load_n(&t->tracker[word], __ATOMIC_ACQUIRE);
    if (v > 0 && theirs(v)) tracker_word_release_dead(t, word, v);
  }
}

void entry_dirty_as(udax_inode *t, uint32_t index, int32_t self) {
  int32_t v = word_of(t, index)->load(std::memory_order_acquire);
  if ((v & UDAX_ENTRY_LOCKED) && (v & (int32_t)UDAX_ENTRY_OWNER_MASK) == self) {
    entry_set_dirty(t, index);
    return;
  }
  entry_lock_as(t, index, self);
  entry_set_dirty(t, index);
  entry_unlock(t, index);
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

// inodeOwnerTag(inodeId): this thread's entry-lock owner tag for the file
// (entry.h: registry slot and thread index), published for peers.
static Napi::Value InodeOwnerTag(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "open");
  return Napi::Number::New(info.Env(), entry_owner_tag(t.get()));
}

// gettid(): this thread's Linux thread id.
static Napi::Value GetTid(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), udax_gettid());
}

void init_lock(Napi::Env env, Napi::Object exports) {
  exports.Set("entryLockWait", Napi::Function::New(env, EntryLockWait, "entryLockWait"));
  exports.Set("entryWake", Napi::Function::New(env, EntryWake, "entryWake"));
  exports.Set("gettid", Napi::Function::New(env, GetTid, "gettid"));
  exports.Set("inodeOwnerTag", Napi::Function::New(env, InodeOwnerTag, "inodeOwnerTag"));
}
