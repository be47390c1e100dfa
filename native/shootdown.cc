// The sigsegv shootdown: no process can mprotect another's memory, so a sync
// in one process asks each peer to write-protect its own mappings (the
// kernel's TLB shootdown, by request).
//
// Each process with tracked sigsegv mappings runs one helper thread (started
// by its first such mapping), which blocks every signal and waits in
// sigwaitinfo for kShootdownSignal sent to it alone (tgkill): a dedicated
// thread, not a handler, so the work is ordinary code (mprotect, a region
// list copy) and no user thread's system call is interrupted.
//
// Protocol, per file, in the peer's slot record (udax.h udax_shootdown):
//   syncer   (holding the locks of entries [first, last]) merges the range
//            into first/last, then req++ (its seq), then wakes the helper,
//            then sleeps on ack until ack >= seq, bounded.
//   helper   reads req (S), takes the merged range (first/last reset),
//            write-protects its mappings of it, stores ack = S, wakes.
// A range is merged before its req++, so an ack >= seq covers it. The helper
// takes no entry lock and only ever removes write permission, which is safe
// whoever holds the locks: a syncer that got its ack while holding them knows
// no page of those entries is writable in that process until it unlocks (a
// store faults and waits for the lock). A syncer that waited in vain (the
// peer is stopped, or busy past the bound) flushes anyway and keeps the
// entries DIRTY: flush now, clean later — the helper serves the request when
// it runs again, and a later sync cleans them. A dead peer needs nothing: a
// page of it became writable only after its entry was DIRTY.
#include "udax.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <system_error>
#include <thread>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// The helper's wake-up: a realtime signal neither Node nor glibc uses,
// sent to the helper thread only (it blocks it; no handler is installed).
static int shootdown_signal() { return SIGRTMIN + 9; }
// How long a syncer waits for a running peer's ack, and how often it asks
// whether the peer is stopped (then it waits no more). An ack takes tens of
// microseconds on an idle machine; a loaded one delays the helper's wake-up
// by scheduling, often past 20 ms (seen at load 7-9), and a sync that gives
// up on a running peer cleans nothing there.
static const int64_t kAckWaitNs = 250 * 1000 * 1000;
static const int64_t kStoppedCheckNs = 1 * 1000 * 1000;

static inline int64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline bool seq_done(uint32_t ack, uint32_t seq) { return (int32_t)(ack - seq) >= 0; }

static void atomic_min(uint32_t *w, uint32_t v) {
  uint32_t cur = __atomic_load_n(w, __ATOMIC_SEQ_CST);
  while (v < cur && !__atomic_compare_exchange_n(w, &cur, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
}
static void atomic_max(uint32_t *w, uint32_t v) {
  uint32_t cur = __atomic_load_n(w, __ATOMIC_SEQ_CST);
  while (v > cur && !__atomic_compare_exchange_n(w, &cur, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
}

// ---- the helper (in the process whose mappings are protected) -------------------

static inline bool is_sigsegv_tracked(const udax_region *r) { return r->tracked && !r->async && !r->sigbus; }

// Serve t's pending requests in this process's slot: write-protect every
// tracked sigsegv mapping of t over the merged range, then ack. A mapping
// that cannot be protected leaves the request unacked (its syncer keeps the
// entries DIRTY).
static void serve_inode(udax_inode *t) {
  udax_shootdown *s = &t->slots[t->slot].shoot;
  for (;;) {
    uint32_t seq = __atomic_load_n(&s->req, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->ack, __ATOMIC_SEQ_CST) == seq) return;
    uint32_t first = __atomic_exchange_n(&s->first, UINT32_MAX, __ATOMIC_SEQ_CST);
    uint32_t last = __atomic_exchange_n(&s->last, 0, __ATOMIC_SEQ_CST);
    int err = 0;
    if (first <= last) {
      for_each_region_of(t, [&](udax_region *r) {
        if (!region_pin(r)) return true;
        if (r->inode == t && is_sigsegv_tracked(r) && !err) err = region_write_protect_runs(r, first, last);
        region_unpin(r);
        return true;
      });
    }
    if (err) {
      // Put the range back for the next request: its syncer keeps DIRTY.
      atomic_min(&s->first, first);
      atomic_max(&s->last, last);
      return;
    }
    __atomic_store_n(&s->ack, seq, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &s->ack, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
  }
}

// Every file with tracked sigsegv mappings here, found through the regions
// (a pinned region holds its inode). In a forked child the parent's regions
// are still listed, over tables not mapped here: skipped.
static void serve_all() {
  const pid_t self = getpid();
  for (int i = 0, high = g_regions_high.load(std::memory_order_acquire); i < high; i++) {
    udax_region *r = &g_regions[i];
    if (!region_pin(r)) continue;
    if (is_sigsegv_tracked(r) && r->inode->shootdown_pid.load(std::memory_order_acquire) == self) serve_inode(r->inode);
    region_unpin(r);
  }
}

static void *helper_main(void *) {
  sigset_t wake;
  sigemptyset(&wake);
  sigaddset(&wake, shootdown_signal());
  for (;;) {
    siginfo_t si;
    if (sigwaitinfo(&wake, &si) == shootdown_signal()) serve_all();
  }
  return nullptr;
}

static std::mutex g_helper_mutex;
static pid_t g_helper_tid = 0;
static pid_t g_helper_pid = 0;  // the process it was started in (a forked child has none)
static std::atomic<pid_t> g_started_tid{0};

static void helper_start() {
  g_started_tid.store(udax_gettid(), std::memory_order_release);
  syscall(SYS_futex, &g_started_tid, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
  helper_main(nullptr);
}

// The helper's thread id, started on first use. 0 with *err on failure.
// (std::thread, not pthread_create: that symbol is GLIBC_2.34, and the
// prebuilt binary loads with glibc 2.33.)
static pid_t helper_tid(int *err) {
  std::lock_guard<std::mutex> lock(g_helper_mutex);
  if (g_helper_tid && g_helper_pid == getpid()) return g_helper_tid;
  // Started with every signal blocked: it takes its wake-up in sigwaitinfo
  // and never runs another handler (Node's, or udax's for a store).
  // (sigprocmask sets the calling thread's mask on Linux, as
  // pthread_sigmask, which is GLIBC_2.32.)
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  g_started_tid.store(0);
  try {
    std::thread(helper_start).detach();
  } catch (const std::system_error &e) {
    sigprocmask(SIG_SETMASK, &old, nullptr);
    *err = e.code().value() ? e.code().value() : EAGAIN;
    return 0;
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  while (g_started_tid.load(std::memory_order_acquire) == 0)
    syscall(SYS_futex, &g_started_tid, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
  g_helper_tid = g_started_tid.load();
  g_helper_pid = getpid();
  return g_helper_tid;
}

int shootdown_map_added(udax_region *r) {
  udax_inode *t = r->inode;
  int err = 0;
  pid_t tid = helper_tid(&err);
  if (!tid) return err;
  udax_shootdown *s = &t->slots[t->slot].shoot;
  __atomic_store_n(&s->signo, shootdown_signal(), __ATOMIC_RELEASE);
  __atomic_store_n(&s->tid, tid, __ATOMIC_RELEASE);
  t->shootdown_pid.store(getpid(), std::memory_order_release);
  return 0;
}

void shootdown_count_runs(udax_region *r, int32_t delta) {
  udax_inode *t = r->inode;
  __atomic_fetch_add(&t->slots[t->slot].shoot.writable_runs, delta, __ATOMIC_SEQ_CST);
}

// Might peer slot k hold pages of t writable under sigsegv? Its count is
// raised before a fault makes a page writable, under that entry's lock: a
// caller holding the locks of its run who reads 0 knows none of the run is.
static bool may_hold_writable(udax_inode *t, int k) {
  return k != t->slot && __atomic_load_n(&t->slots[k].shoot.writable_runs, __ATOMIC_SEQ_CST) > 0 && slot_alive(t, k);
}

int shootdown_peer_count(udax_inode *t) {
  int n = 0;
  for (int k = 0, high = sidecar_slots_high(t); k < high; k++) n += may_hold_writable(t, k);
  return n;
}

void shootdown_slot_reset(udax_sidecar_slot *s) {
  memset(&s->shoot, 0, sizeof s->shoot);
  s->shoot.first = UINT32_MAX;
}

// ---- the syncer --------------------------------------------------------------------

// Is thread tid of process pid stopped (SIGSTOP, a tracer)? /proc/PID/task/TID/stat.
static bool thread_stopped(pid_t pid, pid_t tid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
  FILE *f = fopen(path, "re");
  if (!f) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')');  // the command name may hold spaces and parentheses
  return p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't');
}

bool shootdown_peers(udax_inode *t, uint32_t first, uint32_t last) {
  struct posted { int k; pid_t pid, tid; uint32_t seq; };
  posted waiting[UDAX_SLOTS];
  int n = 0;
  bool all = true;
  for (int k = 0, high = sidecar_slots_high(t); k < high; k++) {
    // Not ready: dead (nothing of it writable any more), or attaching (no mapping yet).
    if (!may_hold_writable(t, k)) continue;
    udax_shootdown *s = &t->slots[k].shoot;
    pid_t tid = __atomic_load_n(&s->tid, __ATOMIC_ACQUIRE);
    pid_t pid = __atomic_load_n(&t->slots[k].pid, __ATOMIC_ACQUIRE);
    if (!tid || !pid) continue;
    atomic_min(&s->first, first);
    atomic_max(&s->last, last);
    uint32_t seq = __atomic_add_fetch(&s->req, 1, __ATOMIC_SEQ_CST);
    // ESRCH: gone (its slot says so next); EAGAIN: its signal queue is full,
    // so a wake-up is pending already.
    syscall(SYS_tgkill, pid, tid, __atomic_load_n(&s->signo, __ATOMIC_ACQUIRE));
    // A request someone gave up on is still not served: stopped or stuck,
    // so do not wait (the entries stay DIRTY). Served, it waits again.
    uint32_t stalled = __atomic_load_n(&s->stalled, __ATOMIC_SEQ_CST);
    if (stalled && !seq_done(__atomic_load_n(&s->ack, __ATOMIC_SEQ_CST), stalled)) {
      all = false;
      __atomic_fetch_add(&t->stats[UDAX_STAT_SHOOTDOWNS_UNACKED], 1, __ATOMIC_RELAXED);
      __atomic_fetch_add(&t->stats[UDAX_STAT_SHOOTDOWNS], 1, __ATOMIC_RELAXED);
      continue;
    }
    waiting[n++] = {k, pid, tid, seq};
  }
  const int64_t start = now_ns();
  int unacked = 0;
  for (int i = 0; i < n; i++) {
    udax_shootdown *s = &t->slots[waiting[i].k].shoot;
    int64_t next_check = kStoppedCheckNs;
    for (;;) {
      uint32_t ack = __atomic_load_n(&s->ack, __ATOMIC_SEQ_CST);
      if (seq_done(ack, waiting[i].seq)) break;
      // Nothing writable there any more (unmapped, synced itself), or died.
      if (!may_hold_writable(t, waiting[i].k)) break;
      int64_t waited = now_ns() - start;
      bool give_up = waited >= kAckWaitNs;
      if (!give_up && waited >= next_check) {
        next_check = waited + 5 * kStoppedCheckNs;
        give_up = thread_stopped(waiting[i].pid, waiting[i].tid);
      }
      if (give_up) {
        __atomic_store_n(&s->stalled, waiting[i].seq ? waiting[i].seq : 1, __ATOMIC_SEQ_CST);
        all = false;
        unacked++;
        break;
      }
      int64_t until = next_check < kAckWaitNs ? next_check : kAckWaitNs;
      int64_t sleep = until > waited ? until - waited : 1000;
      struct timespec ts = {0, (long)sleep};
      syscall(SYS_futex, &s->ack, FUTEX_WAIT, ack, &ts, nullptr, 0);
    }
  }
  if (n) {
    __atomic_fetch_add(&t->stats[UDAX_STAT_SHOOTDOWNS], n, __ATOMIC_RELAXED);
    __atomic_fetch_add(&t->stats[UDAX_STAT_SHOOTDOWNS_UNACKED], unacked, __ATOMIC_RELAXED);
    __atomic_fetch_add(&t->stats[UDAX_STAT_SHOOTDOWN_NS], now_ns() - start, __ATOMIC_RELAXED);
  }
  return all;
}

// inodeShootdownPeers(inodeId) -> live peers that may hold pages of the file
// writable under sigsegv (each writeback run costs a round trip to each).
static Napi::Value InodeShootdownPeers(const Napi::CallbackInfo &info) {
  InodeArg t(info, 0, "msync");
  return Napi::Number::New(info.Env(), shootdown_peer_count(t.get()));
}

void init_shootdown(Napi::Env env, Napi::Object exports) {
  exports.Set("inodeShootdownPeers", Napi::Function::New(env, InodeShootdownPeers, "inodeShootdownPeers"));
}
