// futex wait/wake on entry words, and the entry lock used by native code.
// The lock protocol (see entry.h) is the same one src/entry.ts runs with
// Atomics, so waiters in the signal handler and in JS wake each other.
#include "udax.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline std::atomic<int32_t> *word_of(udax_table *t, uint32_t index) {
  return reinterpret_cast<std::atomic<int32_t> *>(&t->entries[index]);
}

pid_t udax_gettid() { return (pid_t)syscall(SYS_gettid); }

// Sleep while *word == expected (or until woken). Async-signal-safe.
void futex_wait_word(int32_t *word, int32_t expected) {
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

// Wake every thread sleeping on word. Async-signal-safe.
void futex_wake_word(int32_t *word) {
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// A thread faulted on an entry whose lock it holds: it would wait forever.
// Say which file and offset, then abort (async-signal-safe).
[[noreturn]] static void self_deadlock(udax_table *t, uint32_t index) {
  msg_str("udax: self-deadlock: thread ");
  msg_dec((uint64_t)udax_gettid());
  msg_str(" stored into ");
  msg_str(t->path);
  msg_str(" at offset ");
  msg_dec((uint64_t)index << t->entry_shift);
  msg_str(" while holding that entry's lock\n");
  msg_abort();
}

// Take the lock of entry index; sleeps on the entry word while another thread
// holds it. Caller holds no entry lock at a higher index. Async-signal-safe.
void entry_lock(udax_table *t, uint32_t index) {
  std::atomic<int32_t> *w = word_of(t, index);
  const int32_t self = (int32_t)(((uint32_t)udax_gettid() << UDAX_ENTRY_OWNER_SHIFT) & UDAX_ENTRY_OWNER_MASK);
  for (;;) {
    int32_t v = w->load(std::memory_order_relaxed);
    if (!(v & UDAX_ENTRY_LOCKED)) {
      int32_t locked = (int32_t)((v & UDAX_ENTRY_FLAGS_MASK) | UDAX_ENTRY_LOCKED) | self;
      if (w->compare_exchange_weak(v, locked, std::memory_order_acquire)) return;
      continue;
    }
    if ((v & (int32_t)UDAX_ENTRY_OWNER_MASK) == self) self_deadlock(t, index);
    if (!(v & UDAX_ENTRY_WAITERS)) {
      if (!w->compare_exchange_weak(v, v | (int32_t)UDAX_ENTRY_WAITERS, std::memory_order_relaxed)) continue;
      v |= UDAX_ENTRY_WAITERS;
    }
    futex_wait_word(&t->entries[index], v);
  }
}

// Release the lock of entry index and wake its waiters. Caller holds it.
void entry_unlock(udax_table *t, uint32_t index) {
  int32_t old = word_of(t, index)->fetch_and(
      (int32_t)(UDAX_ENTRY_FLAGS_MASK & ~(UDAX_ENTRY_LOCKED | UDAX_ENTRY_WAITERS)), std::memory_order_release);
  if (old & UDAX_ENTRY_WAITERS) futex_wake_word(&t->entries[index]);
}

// Tag entry index DIRTY; on a clean -> DIRTY transition count it in the
// summary (entry.h). Caller holds the entry lock, and makes the page
// writable only after this returns.
void entry_set_dirty(udax_table *t, uint32_t index) {
  if (word_of(t, index)->fetch_or((int32_t)UDAX_ENTRY_DIRTY, std::memory_order_seq_cst) & UDAX_ENTRY_DIRTY) return;
  uint32_t group = index >> UDAX_SUMMARY_SHIFT;
  __atomic_fetch_add(&t->summary[group], 1, __ATOMIC_SEQ_CST);
  __atomic_fetch_add(&t->summary[t->groups + (group >> UDAX_SUMMARY2_SHIFT)], 1, __ATOMIC_SEQ_CST);
}

// futexWait(tableId, index, expected): sleep while the entry word equals expected.
static Napi::Value FutexWait(const Napi::CallbackInfo &info) {
  udax_table *t = table_get(info[0].As<Napi::Number>().Int32Value());
  uint32_t index = info[1].As<Napi::Number>().Uint32Value();
  if (!t || index >= t->n_entries) throw Napi::RangeError::New(info.Env(), "futexWait: bad table or index");
  futex_wait_word(&t->entries[index], info[2].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// futexWake(tableId, index): wake every thread sleeping on the entry word.
static Napi::Value FutexWake(const Napi::CallbackInfo &info) {
  udax_table *t = table_get(info[0].As<Napi::Number>().Int32Value());
  uint32_t index = info[1].As<Napi::Number>().Uint32Value();
  if (!t || index >= t->n_entries) throw Napi::RangeError::New(info.Env(), "futexWake: bad table or index");
  futex_wake_word(&t->entries[index]);
  return info.Env().Undefined();
}

// gettid(): this thread's Linux thread id (the entry-lock owner id).
static Napi::Value GetTid(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), udax_gettid());
}

void init_futex(Napi::Env env, Napi::Object exports) {
  exports.Set("futexWait", Napi::Function::New(env, FutexWait, "futexWait"));
  exports.Set("futexWake", Napi::Function::New(env, FutexWake, "futexWake"));
  exports.Set("gettid", Napi::Function::New(env, GetTid, "gettid"));
}
