// The fault handlers: SIGSEGV (write-protection faults in udax's regions) and
// SIGBUS (pages gone because a file shrank underneath a native call).
//
// Contract (as libsigsegv/bdwgc): the handlers are async-signal-safe only —
// no malloc, no locks other than entry locks (futexes), no stdio. SIGSEGV is
// acted on only for a store (SEGV_ACCERR) inside a LIVE tracked region,
// dispatched to that region's write-fault function (a load or instruction
// fetch there is never ours: it chains and crashes instead of retrying); SIGBUS for a write to a page a sigbus
// region still has write-protected (userfaultfd, native/uffd_sigbus.cc),
// else only inside a native call that guarded itself. Every other signal goes to the previous action (Node's
// WebAssembly trap handler, or the default, so a genuine crash still crashes
// with a correct core). errno is preserved.
//
// A tracked region's write fault is the kernel's dax_pfn_mkwrite with the
// 2016 race closed: lock entry -> set DIRTY -> mprotect read-write -> unlock.
// The page becomes writable inside the locked section, so a concurrent
// writeback (which holds the lock across mkclean -> flush -> fence -> clear
// DIRTY) can never leave a writable page behind a clean entry.
#include "udax.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ucontext.h>
#include <time.h>
#include <unistd.h>

static struct sigaction g_old_segv, g_old_bus;
static std::atomic<bool> g_installed{false};

static const uint64_t kBlock = 2u << 20;  // the coarsening unit: a PMD block

static inline int64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void stat_add(udax_inode *t, int which, int64_t v) {
  __atomic_fetch_add(&t->stats[which], v, __ATOMIC_RELAXED);
}

[[noreturn]] void fatal_in_handler(const char *what, int err, udax_region *r) {
  msg_str("udax: fatal: ");
  msg_str(what);
  msg_str(" failed in the fault handler (errno ");
  msg_dec((uint64_t)err);
  msg_str(") for ");
  msg_str(r->inode->path);
  msg_str("\n");
  msg_abort();
}

// Would making entry index writable in r add a writable run past the budget?
static bool over_vma_budget(const udax_region *r, uint32_t index) {
  int64_t e = (int64_t)(index - r->first_entry);
  if (r->writable[e]) return false;
  bool left = e > 0 && r->writable[e - 1];
  bool right = e + 1 < (int64_t)r->n_entries && r->writable[e + 1];
  if (left || right) return false;
  return g_vma.used.load(std::memory_order_relaxed) + 2 > g_vma.budget.load(std::memory_order_relaxed);
}

// Lock entries [first, last] ascending, dirty them, make them writable in r,
// unlock. Returns 0 or the mprotect errno. Caller holds no entry lock.
static int dirty_and_unprotect(udax_region *r, uint32_t first, uint32_t last) {
  udax_inode *t = r->inode;
  for (uint32_t e = first; e <= last; e++) entry_lock(t, e);
  for (uint32_t e = first; e <= last; e++) entry_set_dirty(t, e);
  int err = region_set_prot(r, first, last, true);
  for (uint32_t e = first; e <= last; e++) entry_unlock(t, e);
  return err;
}

// VMA-budget fallback: unprotect and dirty the aligned 2 MiB block around
// index (merging the islands already in it); if even that fails, or udax is
// past the whole-mapping threshold, the whole region, which can only merge
// VMAs. Caller holds no entry lock.
static void coarsen_block(udax_region *r, uint32_t index) {
  udax_inode *t = r->inode;
  uint32_t region_last = r->first_entry + r->n_entries - 1;
  uint64_t off = (uint64_t)index << t->entry_shift;
  uint32_t first = (uint32_t)((off & ~(kBlock - 1)) >> t->entry_shift);
  uint32_t last = (uint32_t)((((off & ~(kBlock - 1)) + kBlock) >> t->entry_shift) - 1);
  if (first < r->first_entry) first = r->first_entry;
  if (last > region_last) last = region_last;
  bool whole = g_vma.used.load(std::memory_order_relaxed) > g_vma.whole_mapping.load(std::memory_order_relaxed);
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

// The write-fault path of tracked regions (dax_pfn_mkwrite + the fix of 2f89dc12a25d).
void handle_write_fault(udax_region *r, uintptr_t addr) {
  int64_t t0 = now_ns();
  udax_inode *t = r->inode;
  uint32_t index = (uint32_t)((r->file_offset + (addr - r->start)) >> t->entry_shift);
  if (over_vma_budget(r, index)) {
    coarsen_block(r, index);
  } else {
    entry_lock(t, index);
    entry_set_dirty(t, index);
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
  msg_str(r->inode->path);
  msg_str(" at file offset ");
  msg_hex(r->file_offset + (addr - r->start));
  msg_str(" through a view of a mapping that was unmapped\n");
}

// Pass a signal that is not ours to whoever had it before us.
static void chain(const struct sigaction &old, int sig, siginfo_t *si, void *uctx) {
  if (old.sa_flags & SA_SIGINFO) {
    if (old.sa_sigaction) {
      old.sa_sigaction(sig, si, uctx);
      return;
    }
  } else if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
    old.sa_handler(sig);
    return;
  }
  // Default action: reset and let the fault repeat, so the process dies of
  // this signal with a correct core. A signal sent by kill() is re-raised.
  signal(sig, SIG_DFL);
  if (si->si_code <= 0) raise(sig);
}

// Was the faulting access a store? (x86-64 page-fault error code)
bool is_write_fault(void *uctx) {
#if defined(__x86_64__)
  const ucontext_t *uc = (const ucontext_t *)uctx;
  return (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;  // X86_PF_WRITE
#else
  return true;
#endif
}

static void udax_sigsegv(int sig, siginfo_t *si, void *uctx) {
  int saved_errno = errno;
  if (si->si_code == SEGV_ACCERR) {
    uintptr_t addr = (uintptr_t)si->si_addr;
    udax_region *r = region_lookup(addr);
    int st = r ? r->state.load(std::memory_order_acquire) : REGION_FREE;
    if (st == REGION_LIVE || st == REGION_TOMBSTONE) {
      r->users.fetch_add(1, std::memory_order_seq_cst);  // region_pin, keeping the state for the report
      st = r->state.load(std::memory_order_seq_cst);
      bool inside = addr >= r->start && addr < r->end;
      udax_write_fault_fn on_write = r->on_write_fault.load(std::memory_order_acquire);
      if (st == REGION_LIVE && inside && on_write && is_write_fault(uctx)) {
        on_write(r, addr);
        region_unpin(r);
        errno = saved_errno;
        return;
      }
      if (st == REGION_TOMBSTONE && inside) report_use_after_unmap(r, addr);
      region_unpin(r);
    }
  }
  chain(g_old_segv, sig, si, uctx);
  errno = saved_errno;
}

// ---- the SIGBUS guard -----------------------------------------------------------
// Threads inside guard_sigbus, by thread id: the handler finds its own.
struct sigbus_guard {
  std::atomic<pid_t> tid;
  sigjmp_buf *jump;
};
static sigbus_guard g_guards[256];

static bool inside_a_region(uintptr_t addr) {
  udax_region *r = region_lookup(addr);
  return r && r->state.load(std::memory_order_acquire) != REGION_FREE && addr >= r->start && addr < r->end;
}

static void udax_sigbus(int sig, siginfo_t *si, void *uctx) {
  int saved_errno = errno;
  if (sigbus_write_fault(si, uctx)) {  // the sigbus tracker's write fault (native/uffd_sigbus.cc)
    errno = saved_errno;
    return;
  }
  pid_t self = udax_gettid();
  for (sigbus_guard &g : g_guards) {
    if (g.tid.load(std::memory_order_acquire) == self && inside_a_region((uintptr_t)si->si_addr))
      siglongjmp(*g.jump, 1);
  }
  chain(g_old_bus, sig, si, uctx);
  errno = saved_errno;
}

int guard_sigbus(void (*fn)(void *), void *arg) {
  pid_t self = udax_gettid();
  sigbus_guard *g = nullptr;
  for (sigbus_guard &c : g_guards) {
    pid_t none = 0;
    if (c.tid.compare_exchange_strong(none, -1)) { g = &c; break; }
  }
  if (!g) {  // every guard in use: run unguarded (a shrunk file then kills, as before)
    fn(arg);
    return 0;
  }
  sigjmp_buf jump;
  volatile int rc = 0;
  g->jump = &jump;
  if (sigsetjmp(jump, 1) == 0) {
    g->tid.store(self, std::memory_order_release);
    fn(arg);
  } else {
    rc = EFAULT;
  }
  g->tid.store(0, std::memory_order_release);
  return rc;
}

// installFaultHandler(): install the SIGSEGV and SIGBUS handlers once per
// process (workers load the addon again; the statics are shared). Returns
// true if this call installed them.
static Napi::Value InstallFaultHandler(const Napi::CallbackInfo &info) {
  bool expected = false;
  if (!g_installed.compare_exchange_strong(expected, true)) return Napi::Boolean::New(info.Env(), false);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sa.sa_sigaction = udax_sigsegv;
  if (sigaction(SIGSEGV, &sa, &g_old_segv) != 0) {
    g_installed.store(false);
    throw errno_error(info.Env(), errno, "sigaction");
  }
  sa.sa_sigaction = udax_sigbus;
  if (sigaction(SIGBUS, &sa, &g_old_bus) != 0) {
    int err = errno;
    sigaction(SIGSEGV, &g_old_segv, nullptr);
    g_installed.store(false);
    throw errno_error(info.Env(), err, "sigaction");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// faultHandlerIsOurs(signal = 'SIGSEGV'): is udax's handler still the
// action of that signal ('SIGSEGV' or 'SIGBUS')?
static Napi::Value FaultHandlerIsOurs(const Napi::CallbackInfo &info) {
  bool bus = info.Length() > 0 && info[0].IsString() && info[0].As<Napi::String>().Utf8Value() == "SIGBUS";
  struct sigaction cur;
  sigaction(bus ? SIGBUS : SIGSEGV, nullptr, &cur);
  bool ours = (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == (bus ? udax_sigbus : udax_sigsegv);
  return Napi::Boolean::New(info.Env(), ours);
}

void init_fault(Napi::Env env, Napi::Object exports) {
  exports.Set("installFaultHandler", Napi::Function::New(env, InstallFaultHandler, "installFaultHandler"));
  exports.Set("faultHandlerIsOurs", Napi::Function::New(env, FaultHandlerIsOurs, "faultHandlerIsOurs"));
}
