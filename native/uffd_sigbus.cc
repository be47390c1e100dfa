// The sigbus tracker's mechanisms: a second userfaultfd per process, in sync
// write-protect mode with UFFD_FEATURE_SIGBUS (WP_ASYNC is per fd, so it
// cannot share the async tracker's). A store to a write-protected page
// raises SIGBUS in the storing thread; the handler runs the same fault
// protocol as the sigsegv tracker (lock -> DIRTY -> un-protect -> unlock)
// with UFFDIO_WRITEPROTECT instead of mprotect: per PTE, so no VMA is split.
// Mappings are armed at map time (holes too: tmpfs keeps a PTE marker).
// tmpfs only (ext4 refuses UFFDIO_REGISTER with WP: EINVAL).
//
// Telling our SIGBUS from a genuine one (a store past the end of a shrunk
// file, a full tmpfs, a read of a truncated page): ours is a *write* fault
// (the page-fault error code in the signal frame), inside a LIVE sigbus
// region, on a page /proc/self/pagemap still shows write-protected. A
// write fault on a present page that is no longer write-protected was
// resolved by another thread between the kernel's fault and our look: the
// store just retries. A page neither present nor protected is a hole
// another thread's fault un-protected after this store faulted on its
// marker, before its own retry faulted it in (so pagemap cannot tell it from
// a store past EOF): populate it for writing; if that works the store
// retries, if it fails the kernel's fault would fail too (past EOF, tmpfs
// full) unless a sync re-protected it meanwhile. Anything else is not ours.
// A store past EOF therefore faults at most twice here: once on the
// write-protected marker (we dirty and un-protect), then on a page that
// cannot be populated, which goes to the previous handler, so the process
// dies of SIGBUS as it would without udax.
#include "udax.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ucontext.h>
#include <time.h>

static uffd_once g_sigbus;  // sync mode, UFFD_FEATURE_SIGBUS

// The self-test's page: its faults are handled here, with no region.
static std::atomic<uintptr_t> g_selftest_page{0};
static std::atomic<int> g_selftest_faults{0};

static inline int64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Open the sync-mode userfaultfd and /proc/self/pagemap once. Returns 0 or
// the errno of the call named in *call (the same answer every time).
static int sigbus_open(const char **call) {
  return uffd_once_open(&g_sigbus, UFFD_FEATURE_SIGBUS, call);
}

int sigbus_arm(uintptr_t start, size_t len, const char **call) {
  int err = sigbus_open(call);
  if (err) return err;
  // Keep PTEs: write-protecting part of a PMD-mapped folio splits it.
  if (madvise((void *)start, len, MADV_NOHUGEPAGE) != 0) {
    *call = "madvise";
    return errno;
  }
  *call = "ioctl";
  if ((err = uffd_register_wp(g_sigbus.uffd, start, len)) != 0) return err;
  return uffd_set_wp(g_sigbus.uffd, start, len, true);
}

int sigbus_uffd_fd() { return g_sigbus.uffd; }

int sigbus_set_wp(uintptr_t start, size_t len, bool wp) {
  int err;
  // EAGAIN: the address space is changing (only with non-cooperative
  // events, which udax does not ask for); try again.
  for (int i = 0; (err = uffd_set_wp(g_sigbus.uffd, start, len, wp)) == EAGAIN && i < 1000; i++) {}
  return err;
}

// The pagemap word of the page holding addr, 0 when it cannot be read (then
// the fault is not taken for ours: a crash, never a store looping forever).
static uint64_t pagemap_word(uintptr_t addr) {
  uint64_t word = 0;
  if (pread(g_sigbus.pagemap, &word, sizeof word, (off_t)((addr / 4096) * sizeof word)) != (ssize_t)sizeof word) return 0;
  return word;
}

void handle_uffd_write_fault(udax_region *r, uintptr_t addr) {
  int64_t t0 = now_ns();
  udax_inode *t = r->inode;
  uint32_t index = (uint32_t)((r->file_offset + (addr - r->start)) >> t->entry_shift);
  entry_lock(t, index);
  entry_set_dirty(t, index);
  int err = region_set_prot(r, index, index, true);
  entry_unlock(t, index);
  if (err) fatal_in_handler("UFFDIO_WRITEPROTECT", err, r);
  __atomic_fetch_add(&t->stats[UDAX_STAT_WRITE_FAULTS], 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&t->stats[UDAX_STAT_FAULT_NS], now_ns() - t0, __ATOMIC_RELAXED);
}

// A store faulted on a hole's write-protect marker that another thread's
// fault has removed since: true when the store can retry (the page is now
// present, or protected again by a sync and the retry faults here again).
static bool populate_unprotected_hole(uintptr_t addr) {
  void *page = (void *)(addr & ~(uintptr_t)4095);
  if (madvise(page, 4096, MADV_POPULATE_WRITE) == 0) return true;
  return (pagemap_word(addr) & UDAX_PM_UFFD_WP) != 0;
}

bool sigbus_write_fault(siginfo_t *si, void *uctx) {
  if (si->si_code != BUS_ADRERR || g_sigbus.uffd < 0 || !is_write_fault(uctx)) return false;
  uintptr_t addr = (uintptr_t)si->si_addr;
  uintptr_t page = addr & ~(uintptr_t)4095;
  uintptr_t selftest = g_selftest_page.load(std::memory_order_acquire);
  if (selftest && page == selftest) {
    if (!(pagemap_word(addr) & UDAX_PM_UFFD_WP)) return false;
    g_selftest_faults.fetch_add(1);
    return sigbus_set_wp(page, 4096, false) == 0;
  }
  udax_region *r = region_lookup(addr);
  if (r && r->state.load(std::memory_order_acquire) == REGION_LIVE && addr >= r->start && addr < r->end) {
    if (!region_pin(r)) return false;
    udax_write_fault_fn on_write = r->on_write_fault.load(std::memory_order_acquire);
    bool ours = false;
    if (r->sigbus && on_write && addr >= r->start && addr < r->end) {
      uint64_t word = pagemap_word(addr);
      if (word & UDAX_PM_UFFD_WP) {
        on_write(r, addr);
        ours = true;
      } else if (word & UDAX_PM_PRESENT) {
        ours = true;  // resolved meanwhile: retry
      } else {
        ours = populate_unprotected_hole(addr);
      }
    }
    region_unpin(r);
    return ours;
  }
  return false;
}

// sigbusSelfTest() -> { ok, syscall?, errno?, detail? }: can this process
// use the sigbus tracker? On a memfd page: register and write-protect it,
// check pagemap shows it protected, store (SIGBUS -> the handler
// un-protects), check the store landed, the handler ran once and the page is
// no longer protected. Needs udax's SIGBUS handler installed.
static Napi::Value SigbusSelfTest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  auto fail = [&](const char *call, int err, const char *detail) {
    o.Set("ok", false);
    o.Set("syscall", call);
    o.Set("errno", err);
    o.Set("detail", detail);
    return o;
  };
  const char *call = nullptr;
  int err = sigbus_open(&call);
  if (err) return fail(call, err, "no userfaultfd with UFFD_FEATURE_SIGBUS");
  int fd = (int)syscall(SYS_memfd_create, "udax-selftest", MFD_CLOEXEC);
  if (fd < 0) return fail("memfd_create", errno, "no memfd for the self-test");
  if (ftruncate(fd, 4096) != 0) {
    err = errno;
    close(fd);
    return fail("ftruncate", err, "no memfd page for the self-test");
  }
  void *p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return fail("mmap", errno, "no mapping for the self-test");
  uintptr_t a = (uintptr_t)p;
  const char *what = nullptr;
  err = sigbus_arm(a, 4096, &call);
  if (err) what = "registering a memfd page for write-protect failed";
  if (!err && !(pagemap_word(a) & UDAX_PM_UFFD_WP)) call = "pread", err = EIO, what = "/proc/self/pagemap does not show the write-protected page";
  if (!err) {
    g_selftest_faults.store(0);
    g_selftest_page.store(a, std::memory_order_release);
    *(volatile char *)p = 7;
    g_selftest_page.store(0, std::memory_order_release);
    if (*(volatile char *)p != 7 || g_selftest_faults.load() != 1) call = "ioctl", err = EIO, what = "the store did not fault exactly once through udax's SIGBUS handler";
    else if (pagemap_word(a) & UDAX_PM_UFFD_WP) call = "ioctl", err = EIO, what = "UFFDIO_WRITEPROTECT did not un-protect the page";
  }
  munmap(p, 4096);
  if (err) return fail(call, err, what);
  o.Set("ok", true);
  return o;
}

void init_uffd_sigbus(Napi::Env env, Napi::Object exports) {
  exports.Set("sigbusSelfTest", Napi::Function::New(env, SigbusSelfTest, "sigbusSelfTest"));
}
