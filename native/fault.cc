// The SIGSEGV write-fault handler and the lock-free region table it reads.
//
// Contract (as libsigsegv/bdwgc): the handler is async-signal-safe only — no
// malloc, no locks other than entry locks (futexes), no stdio. It acts only on
// SEGV_ACCERR inside a LIVE tracked region; every other SIGSEGV goes to the
// previous action (Node's WebAssembly trap handler, or the default, so a
// genuine crash still crashes with a correct core). errno is preserved.
//
// For ours it is the kernel's dax_pfn_mkwrite with the 2016 race closed:
// lock entry -> set DIRTY -> mprotect read-write -> unlock. The page becomes
// writable inside the locked section, so a concurrent writeback (which holds
// the lock across mkclean -> flush -> fence -> clear DIRTY) can never leave a
// writable page behind a clean entry.
#include "udax.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

udax_region g_regions[UDAX_MAX_REGIONS];
std::atomic<int> g_regions_high{0};
std::atomic<int64_t> g_vma_used{0};
std::atomic<int64_t> g_vma_budget{32000};

static struct sigaction g_old_action;

// Test hooks (setFaultTestHooks): widen the window between tagging DIRTY and
// making the page writable, and optionally run the 2016 ordering (unlock
// before mprotect), so a test can force the race the design must not have.
static std::atomic<int64_t> g_test_delay_ns{0};
static std::atomic<bool> g_test_order_2016{false};

static void test_delay() {
  int64_t ns = g_test_delay_ns.load(std::memory_order_relaxed);
  if (!ns) return;
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}
static std::atomic<bool> g_installed{false};

static const uint64_t kBlock = 2u << 20;  // the coarsening unit: a PMD block

static inline int64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void stat_add(udax_table *t, int which, int64_t v) {
  __atomic_fetch_add(&t->stats[which], v, __ATOMIC_RELAXED);
}

[[noreturn]] static void fatal_in_handler(const char *what, int err, udax_region *r) {
  msg_str("udax: fatal: ");
  msg_str(what);
  msg_str(" failed in the fault handler (errno ");
  msg_dec((uint64_t)err);
  msg_str(") for ");
  msg_str(r->table->path);
  msg_str("\n");
  msg_abort();
}

// Runs of writable entries in [lo, hi] (relative indices, clipped).
static int32_t count_runs(const udax_region *r, int64_t lo, int64_t hi) {
  if (lo < 0) lo = 0;
  if (hi >= (int64_t)r->n_entries) hi = (int64_t)r->n_entries - 1;
  int32_t runs = 0;
  for (int64_t e = lo; e <= hi; e++)
    if (r->writable[e] && (e == lo || !r->writable[e - 1])) runs++;
  return runs;
}

// Keep r's writable flags and VMA estimate for entries [lo, hi] (relative).
static void set_writable_flags(udax_region *r, int64_t lo, int64_t hi, bool writable) {
  int32_t before = count_runs(r, lo - 1, hi + 1);
  memset(r->writable + lo, writable ? 1 : 0, (size_t)(hi - lo + 1));
  int32_t delta = count_runs(r, lo - 1, hi + 1) - before;
  if (delta) {
    r->rw_runs.fetch_add(delta, std::memory_order_relaxed);
    g_vma_used.fetch_add(2 * delta, std::memory_order_relaxed);
  }
}

// The flags are a superset of what is writable: set before mprotect RW,
// cleared after mprotect RO succeeds. mprotect can fail with ENOMEM after
// changing part of the range; a flag left clear would let writeback skip a
// writable page (found by the model check, model/README.md).
int region_set_prot(udax_region *r, uint32_t first, uint32_t last, bool writable) {
  udax_table *t = r->table;
  uint32_t region_last = r->first_entry + r->n_entries - 1;
  if (first < r->first_entry) first = r->first_entry;
  if (last > region_last) last = region_last;
  if (first > last) return 0;
  uint64_t from = (uint64_t)first << t->entry_shift, to = ((uint64_t)last + 1) << t->entry_shift;
  uint64_t region_to = r->file_offset + (r->end - r->start);
  if (from < r->file_offset) from = r->file_offset;
  if (to > region_to) to = region_to;
  uintptr_t addr = r->start + (from - r->file_offset);
  int64_t lo = (int64_t)(first - r->first_entry), hi = (int64_t)(last - r->first_entry);
  if (writable) set_writable_flags(r, lo, hi, true);
  if (mprotect((void *)addr, to - from, writable ? PROT_READ | PROT_WRITE : PROT_READ) != 0) return errno;
  if (!writable) set_writable_flags(r, lo, hi, false);
  return 0;
}

// Would making entry index writable in r add a writable run past the budget?
static bool over_vma_budget(const udax_region *r, uint32_t index) {
  int64_t e = (int64_t)(index - r->first_entry);
  if (r->writable[e]) return false;
  bool left = e > 0 && r->writable[e - 1];
  bool right = e + 1 < (int64_t)r->n_entries && r->writable[e + 1];
  if (left || right) return false;
  return g_vma_used.load(std::memory_order_relaxed) + 2 > g_vma_budget.load(std::memory_order_relaxed);
}

// Lock entries [first, last] ascending, dirty them, make them writable in r,
// unlock. Returns 0 or the mprotect errno. Caller holds no entry lock.
static int dirty_and_unprotect(udax_region *r, uint32_t first, uint32_t last) {
  udax_table *t = r->table;
  for (uint32_t e = first; e <= last; e++) entry_lock(t, e);
  for (uint32_t e = first; e <= last; e++) entry_set_dirty(t, e);
  int err = region_set_prot(r, first, last, true);
  for (uint32_t e = first; e <= last; e++) entry_unlock(t, e);
  return err;
}

// VMA-budget fallback: unprotect and dirty the aligned 2 MiB block around
// index (merging the islands already in it); if even that fails, the whole
// region, which can only merge VMAs. Caller holds no entry lock.
static void coarsen_block(udax_region *r, uint32_t index) {
  udax_table *t = r->table;
  uint32_t region_last = r->first_entry + r->n_entries - 1;
  uint64_t off = (uint64_t)index << t->entry_shift;
  uint32_t first = (uint32_t)((off & ~(kBlock - 1)) >> t->entry_shift);
  uint32_t last = (uint32_t)((((off & ~(kBlock - 1)) + kBlock) >> t->entry_shift) - 1);
  if (first < r->first_entry) first = r->first_entry;
  if (last > region_last) last = region_last;
  bool whole = g_vma_used.load(std::memory_order_relaxed) > g_vma_budget.load(std::memory_order_relaxed) * 5 / 4;
  int err = whole ? ENOMEM : dirty_and_unprotect(r, first, last);
  if (err == 0) {
    stat_add(t, UDAX_STAT_COARSEN_BLOCK, 1);
    return;
  }
  if (err != ENOMEM) fatal_in_handler("mprotect", err, r);
  err = dirty_and_unprotect(r, r->first_entry, region_last);
  if (err) fatal_in_handler("mprotect (whole mapping)", err, r);
  stat_add(t, UDAX_STAT_COARSEN_MAPPING, 1);
}

// The write-fault path (dax_pfn_mkwrite + the fix of 2f89dc12a25d).
static void handle_write_fault(udax_region *r, uintptr_t addr) {
  int64_t t0 = now_ns();
  udax_table *t = r->table;
  uint32_t index = (uint32_t)((r->file_offset + (addr - r->start)) >> t->entry_shift);
  if (over_vma_budget(r, index)) {
    coarsen_block(r, index);
  } else if (g_test_order_2016.load(std::memory_order_relaxed)) {
    // The 2016 bug, for tests only: DIRTY, unlock, then make writable.
    entry_lock(t, index);
    entry_set_dirty(t, index);
    entry_unlock(t, index);
    test_delay();
    int err = region_set_prot(r, index, index, true);
    if (err) fatal_in_handler("mprotect", err, r);
  } else {
    entry_lock(t, index);
    entry_set_dirty(t, index);
    test_delay();
    int err = region_set_prot(r, index, index, true);
    entry_unlock(t, index);
    if (err == ENOMEM) coarsen_block(r, index);  // the store retries either way
    else if (err) fatal_in_handler("mprotect", err, r);
  }
  stat_add(t, UDAX_STAT_WRITE_FAULTS, 1);
  stat_add(t, UDAX_STAT_FAULT_NS, now_ns() - t0);
}

// A store or load through a view of a mapping that was unmapped: the range is
// reserved PROT_NONE so it cannot reach another file. Say so, then crash.
static void report_use_after_unmap(udax_region *r, uintptr_t addr) {
  msg_str("udax: access to ");
  msg_str(r->table->path);
  msg_str(" at file offset ");
  msg_hex(r->file_offset + (addr - r->start));
  msg_str(" through a view of a mapping that was unmapped\n");
}

// Pass a fault that is not ours to whoever had SIGSEGV before us.
static void chain(int sig, siginfo_t *si, void *uctx) {
  if (g_old_action.sa_flags & SA_SIGINFO) {
    if (g_old_action.sa_sigaction) {
      g_old_action.sa_sigaction(sig, si, uctx);
      return;
    }
  } else if (g_old_action.sa_handler != SIG_DFL && g_old_action.sa_handler != SIG_IGN) {
    g_old_action.sa_handler(sig);
    return;
  }
  // Default action: reset and let the fault repeat, so the process dies of
  // this SIGSEGV with a correct core. A signal sent by kill() is re-raised.
  signal(sig, SIG_DFL);
  if (si->si_code <= 0) raise(sig);
}

static void udax_sigsegv(int sig, siginfo_t *si, void *uctx) {
  int saved_errno = errno;
  if (si->si_code == SEGV_ACCERR) {
    uintptr_t addr = (uintptr_t)si->si_addr;
    int high = g_regions_high.load(std::memory_order_acquire);
    for (int i = 0; i < high; i++) {
      udax_region *r = &g_regions[i];
      int st = r->state.load(std::memory_order_acquire);
      if ((st != REGION_LIVE && st != REGION_TOMBSTONE) || addr < r->start || addr >= r->end) continue;
      r->users.fetch_add(1, std::memory_order_seq_cst);  // region_pin, keeping the state for the report
      st = r->state.load(std::memory_order_seq_cst);
      bool inside = addr >= r->start && addr < r->end;
      if (st == REGION_LIVE && inside && r->mode != REGION_UNTRACKED) {
        if (r->mode == REGION_TRACKED) handle_write_fault(r, addr);
        else mprotect((void *)(addr & ~(uintptr_t)4095), 4096, PROT_READ | PROT_WRITE);
        region_unpin(r);
        errno = saved_errno;
        return;
      }
      if (st == REGION_TOMBSTONE && inside) report_use_after_unmap(r, addr);
      region_unpin(r);
      break;
    }
  }
  chain(sig, si, uctx);
  errno = saved_errno;
}

// installFaultHandler(): install the SIGSEGV handler once per process
// (workers load the addon again; the statics are shared). Returns true if
// this call installed it.
static Napi::Value InstallFaultHandler(const Napi::CallbackInfo &info) {
  bool expected = false;
  if (!g_installed.compare_exchange_strong(expected, true)) return Napi::Boolean::New(info.Env(), false);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = udax_sigsegv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSEGV, &sa, &g_old_action) != 0) {
    g_installed.store(false);
    throw errno_error(info.Env(), errno, "sigaction");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// faultHandlerIsOurs(): is udax's handler still the SIGSEGV action?
static Napi::Value FaultHandlerIsOurs(const Napi::CallbackInfo &info) {
  struct sigaction cur;
  sigaction(SIGSEGV, nullptr, &cur);
  bool ours = (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == udax_sigsegv;
  return Napi::Boolean::New(info.Env(), ours);
}

// setVmaBudget(n): coarsen faults once udax's estimated VMAs would pass n.
static Napi::Value SetVmaBudget(const Napi::CallbackInfo &info) {
  g_vma_budget.store((int64_t)info[0].As<Napi::Number>().Int64Value());
  return info.Env().Undefined();
}

// vmaUsage(): { used, budget } — estimated VMAs udax's islands add.
static Napi::Value VmaUsage(const Napi::CallbackInfo &info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("used", Napi::Number::New(info.Env(), (double)g_vma_used.load()));
  o.Set("budget", Napi::Number::New(info.Env(), (double)g_vma_budget.load()));
  return o;
}

// setFaultTestHooks(delayAfterDirtyNs, order2016): for tests only (see above).
static Napi::Value SetFaultTestHooks(const Napi::CallbackInfo &info) {
  g_test_delay_ns.store(info[0].As<Napi::Number>().Int64Value());
  g_test_order_2016.store(info[1].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

void init_fault(Napi::Env env, Napi::Object exports) {
  exports.Set("setFaultTestHooks", Napi::Function::New(env, SetFaultTestHooks, "setFaultTestHooks"));
  exports.Set("installFaultHandler", Napi::Function::New(env, InstallFaultHandler, "installFaultHandler"));
  exports.Set("faultHandlerIsOurs", Napi::Function::New(env, FaultHandlerIsOurs, "faultHandlerIsOurs"));
  exports.Set("setVmaBudget", Napi::Function::New(env, SetVmaBudget, "setVmaBudget"));
  exports.Set("vmaUsage", Napi::Function::New(env, VmaUsage, "vmaUsage"));
}
