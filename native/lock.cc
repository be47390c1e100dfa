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

#include <algorithm>
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

// ---- owner-tag locks: the harvest lock, the resize lock -----------------------
// A tracker word holding its holder's owner tag, with UDAX_TAG_LOCK_WAITERS
// set while someone sleeps on it; its other bits below the owner field are
// the lock's own (free while the owner field is 0). A waiter re-checks every
// kOwnerCheckNs and takes the lock over from a holder that died.

int32_t tag_lock(udax_inode *t, int word, int32_t self) {
  std::atomic<int32_t> *w = reinterpret_cast<std::atomic<int32_t> *>(&t->tracker[word]);
  for (;;) {
    int32_t c = w->load(std::memory_order_acquire);
    if (!(c & (int32_t)UDAX_ENTRY_OWNER_MASK)) {
      if (w->compare_exchange_weak(c, self, std::memory_order_acquire)) return c;
      continue;
    }
    if (!(c & UDAX_TAG_LOCK_WAITERS)) {
      if (!w->compare_exchange_weak(c, c | UDAX_TAG_LOCK_WAITERS, std::memory_order_relaxed)) continue;
      c |= UDAX_TAG_LOCK_WAITERS;
    }
    struct timespec ts = {0, kOwnerCheckNs};
    syscall(SYS_futex, &t->tracker[word], FUTEX_WAIT, c, &ts, nullptr, 0);
    if (w->load(std::memory_order_acquire) != c || owner_alive(t, c & (int32_t)UDAX_ENTRY_OWNER_MASK)) continue;
    if (!w->compare_exchange_strong(c, self, std::memory_order_acquire)) continue;
    __atomic_fetch_add(&t->stats[UDAX_STAT_LOCKS_RECOVERED], 1, __ATOMIC_RELAXED);
    if (c & UDAX_TAG_LOCK_WAITERS) tag_lock_wake(t, word);  // the others wait for us now, not for the dead
    return c;
  }
}

void tag_lock_wake(udax_inode *t, int word) {
  syscall(SYS_futex, &t->tracker[word], FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

void tag_unlock(udax_inode *t, int word, int32_t free_value) {
  if (__atomic_exchange_n(&t->tracker[word], free_value, __ATOMIC_RELEASE) & UDAX_TAG_LOCK_WAITERS) tag_lock_wake(t, word);
}

// ---- deadlock detection ------------------------------------------------------
// Locks taken ascending (the kernel's order: faults take one, writebacks a
// run from low to high) cannot form a cycle; one appears only when a thread
// holding entry locks of its own (withEntriesLocked) waits for another
// entry. The wait-for graph spans the processes of one sidecar directory
// (native/proc_registry.cc): each waiter publishes, by (its process's
// registry record, its thread index), the word link_of(owner's key,
// can-fail) of the owner it sleeps on (0: not waiting), can-fail set when
// it can give up (a JS caller). Set before each sleep, cleared when the
// wait ends. A thread's key: record << UDAX_OWNER_THREAD_BITS | index.
static const uint32_t kCanFail = 1;
static const int64_t kNoKey = -1;

static inline uint32_t tag_index(int32_t tag) { return ((uint32_t)tag >> UDAX_ENTRY_OWNER_SHIFT) & ((1u << UDAX_OWNER_THREAD_BITS) - 1); }
static inline int tag_slot(int32_t tag) { return (int)(((uint32_t)tag >> UDAX_ENTRY_OWNER_SHIFT) >> UDAX_OWNER_THREAD_BITS) - 1; }

// The thread id behind owner tag `owner` of file t (for messages), 0 unknown.
static pid_t tag_tid(udax_inode *t, int32_t owner) {
  int k = tag_slot(owner);
  if (k < 0 || k >= UDAX_SLOTS) return 0;
  return (pid_t)__atomic_load_n(&t->tids[(size_t)k * (1u << UDAX_OWNER_THREAD_BITS) + tag_index(owner)], __ATOMIC_ACQUIRE);
}

// The key of the thread behind owner tag `owner` of file t (kNoKey: a free slot).
static int64_t tag_key(udax_inode *t, int32_t owner) {
  int k = tag_slot(owner);
  if (k < 0 || k >= UDAX_SLOTS) return kNoKey;
  uint32_t proc = __atomic_load_n(&t->slots[k].proc, __ATOMIC_ACQUIRE);
  return proc ? (int64_t)(proc - 1) << UDAX_OWNER_THREAD_BITS | tag_index(owner) : kNoKey;
}
static inline int64_t self_key(udax_inode *t, int32_t self) {
  return (int64_t)t->registry->self << UDAX_OWNER_THREAD_BITS | tag_index(self);
}
static inline std::atomic<uint32_t> *key_word(udax_inode *t, int64_t key) {
  return proc_wait_word(t->registry, (uint32_t)(key >> UDAX_OWNER_THREAD_BITS), (uint32_t)key & ((1u << UDAX_OWNER_THREAD_BITS) - 1));
}
static inline uint32_t link_of(int64_t key, bool can_fail) { return (uint32_t)(key + 1) << 1 | (can_fail ? kCanFail : 0); }
static inline int64_t key_of(uint32_t link) { return (int64_t)(link >> 1) - 1; }

static inline void set_waiting(udax_inode *t, int32_t self, int32_t owner, bool can_fail) {
  std::atomic<uint32_t> *w = key_word(t, self_key(t, self));
  if (!w) return;
  int64_t key = owner ? tag_key(t, owner) : kNoKey;
  w->store(key != kNoKey ? link_of(key, can_fail) : 0, std::memory_order_seq_cst);
}

// Does the chain of waits starting at owner (of file t) lead back to self,
// and must self act? Of the members that can give up, the one with the
// highest key does (every member computes the same answer, so one fails,
// not all); if none can, each (a fault handler) does, and the first to
// report aborts. A stale link can only end a chain early: a thread that
// stopped waiting cleared it (a killed process's are cleared by the next
// owner of its record).
static bool deadlock_victim(udax_inode *t, int32_t self, bool self_can_fail, int32_t owner) {
  const int64_t me = self_key(t, self);
  int64_t victim = self_can_fail ? me : kNoKey;
  int64_t next = tag_key(t, owner);
  for (int hops = 0; hops < 64 && next != kNoKey; hops++) {
    if (next == me) return victim == (self_can_fail ? me : kNoKey);
    std::atomic<uint32_t> *w = key_word(t, next);
    uint32_t link = w ? w->load(std::memory_order_seq_cst) : 0;
    if (link == 0) return false;
    if ((link & kCanFail) && next > victim) victim = next;
    next = key_of(link);
  }
  return false;
}

// A thread in a fault handler is in a cycle no caller broke: say who, abort.
[[noreturn]] static void deadlock_in_handler(udax_inode *t, uint32_t index, int32_t owner) {
  // Every thread of the cycle may get here at once: one reports and aborts,
  // the others wait for the process to end (their messages would interleave).
  static std::atomic<bool> reported{false};
  if (reported.exchange(true)) for (;;) pause();
  msg_str("udax: deadlock: thread ");
  msg_dec((uint64_t)udax_gettid());
  msg_str(" waits for the lock of ");
  msg_str(t->path);
  msg_str(" at offset ");
  msg_dec((uint64_t)index << t->entry_shift);
  msg_str(" held by thread ");
  msg_dec((uint64_t)tag_tid(t, owner));
  msg_str(", which waits, directly or not, for a lock this thread holds (withEntriesLocked in both?)\n");
  msg_abort();
}

// Sleep checks (kOwnerCheckNs each) a cycle must survive before a JS caller
// fails, or before a fault handler aborts (later, so a JS thread in the same
// cycle fails first and breaks it).
static const int kDeadlockChecksFail = 2;
static const int kDeadlockChecksAbort = 10;

// Take the lock of entry index, sleeping while another thread holds it and
// taking it over if that thread has died. On a wait-for cycle: with
// LOCK_FAIL_ON_DEADLOCK return LOCK_DEADLOCK (nothing taken, *blocker = the
// owner's tag), with LOCK_ABORT_ON_DEADLOCK abort, with LOCK_WAIT keep
// waiting (a caller that holds no lock out of order is never in a cycle
// alone).
lock_result entry_lock_wait(udax_inode *t, uint32_t index, int32_t self, deadlock_policy policy, int32_t *blocker) {
  std::atomic<int32_t> *w = word_of(t, index);
  int suspect = 0;
  bool waited = false;  // this thread's wait-for slot was set: clear it when done
  for (;;) {
    int32_t v = w->load(std::memory_order_relaxed);
    if (!(v & UDAX_ENTRY_LOCKED)) {
      int32_t locked = (int32_t)((v & UDAX_ENTRY_FLAGS_MASK) | UDAX_ENTRY_LOCKED) | self;
      if (w->compare_exchange_weak(v, locked, std::memory_order_acquire)) {
        if (waited) set_waiting(t, self, 0, false);
        return LOCK_TAKEN;
      }
      continue;
    }
    int32_t owner = v & (int32_t)UDAX_ENTRY_OWNER_MASK;
    if (owner == self) self_deadlock(t, index);
    if (!(v & UDAX_ENTRY_WAITERS)) {
      if (!w->compare_exchange_weak(v, v | (int32_t)UDAX_ENTRY_WAITERS, std::memory_order_relaxed)) continue;
      v |= UDAX_ENTRY_WAITERS;
    }
    set_waiting(t, self, owner, policy == LOCK_FAIL_ON_DEADLOCK);
    waited = true;
    futex_wait_word(&t->entries[index], v, kOwnerCheckNs);
    if (w->load(std::memory_order_relaxed) != v) continue;
    if (owner_alive(t, owner)) {
      if (policy == LOCK_WAIT || !deadlock_victim(t, self, policy == LOCK_FAIL_ON_DEADLOCK, owner)) {
        suspect = 0;
        continue;
      }
      if (++suspect < (policy == LOCK_FAIL_ON_DEADLOCK ? kDeadlockChecksFail : kDeadlockChecksAbort)) continue;
      if (policy == LOCK_ABORT_ON_DEADLOCK) deadlock_in_handler(t, index, owner);
      set_waiting(t, self, 0, false);
      if (blocker) *blocker = owner;
      return LOCK_DEADLOCK;
    }
    // The owner is gone and the word unchanged since: take it over, DIRTY
    // (a REDIRTY meant for the dead owner's clean is this DIRTY now).
    int32_t taken = (int32_t)((v & UDAX_ENTRY_FLAGS_MASK & ~UDAX_ENTRY_REDIRTY) | UDAX_ENTRY_LOCKED | UDAX_ENTRY_DIRTY) | self;
    if (!w->compare_exchange_strong(v, taken, std::memory_order_acquire)) continue;
    set_waiting(t, self, 0, false);
    if (!(v & UDAX_ENTRY_DIRTY)) count_dirty(t, index);
    __atomic_fetch_add(&t->stats[UDAX_STAT_LOCKS_RECOVERED], 1, __ATOMIC_RELAXED);
    return LOCK_RECOVERED;
  }
}

bool entry_lock_as(udax_inode *t, uint32_t index, int32_t self) {
  return entry_lock_wait(t, index, self, LOCK_WAIT, nullptr) == LOCK_RECOVERED;
}

void entry_lock(udax_inode *t, uint32_t index) {
  entry_lock_wait(t, index, entry_owner_tag(t), LOCK_ABORT_ON_DEADLOCK, nullptr);
}

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
      int32_t freed = (int32_t)((v & UDAX_ENTRY_FLAGS_MASK & ~(UDAX_ENTRY_LOCKED | UDAX_ENTRY_WAITERS | UDAX_ENTRY_REDIRTY)) | UDAX_ENTRY_DIRTY);
      if (!w->compare_exchange_weak(v, freed, std::memory_order_acq_rel)) continue;
      if (!(v & UDAX_ENTRY_DIRTY)) count_dirty(t, i);
      if (v & UDAX_ENTRY_WAITERS) futex_wake_word(&t->entries[i]);
      __atomic_fetch_add(&t->stats[UDAX_STAT_LOCKS_RECOVERED], 1, __ATOMIC_RELAXED);
      break;
    }
  }
  // The harvest lock, the freeze word and the resize lock: their takers
  // recover them (a dead owner), but an owner tag of this slot would look
  // like ours from now on.
  for (int word : {UDAX_TRACKER_HARVEST_LOCK, UDAX_TRACKER_FREEZE}) {
    int32_t v = __atomic_load_n(&t->tracker[word], __ATOMIC_ACQUIRE);
    if (v > 0 && theirs(v)) tracker_word_release_dead(t, word, v);
  }
  int32_t v = __atomic_load_n(&t->tracker[UDAX_TRACKER_RESIZE_LOCK], __ATOMIC_ACQUIRE);
  if (v > 0 && theirs(v)) resize_lock_release_dead(t, v);  // its next holder reconciles the sizes
}

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

// entryLockWait(inodeId, index, ownerTag, failOnDeadlock) -> 0 taken, 1
// recovered from a dead thread, or (failOnDeadlock: the caller holds entry
// locks) the negated thread id of the owner when waiting would deadlock:
// the slow path of src/entry.ts EntryTable.lock, which found the entry
// locked by another thread.
static Napi::Value EntryLockWait(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "futex");
  uint32_t index = info[1].As<Napi::Number>().Uint32Value();
  if (index >= t->capacity) throw errno_error(info.Env(), EINVAL, "futex", t->path);
  deadlock_policy policy = info[3].ToBoolean().Value() ? LOCK_FAIL_ON_DEADLOCK : LOCK_WAIT;
  int32_t blocker = 0;
  lock_result r = entry_lock_wait(t.get(), index, info[2].As<Napi::Number>().Int32Value(), policy, &blocker);
  return Napi::Number::New(info.Env(), r == LOCK_DEADLOCK ? -(double)std::max(tag_tid(t.get(), blocker), (pid_t)1) : r == LOCK_RECOVERED ? 1 : 0);
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
