// Write-fault paths that are not udax's, registered per region for the
// benchmark baseline and the tests (udax/testing, src/testing.ts). The
// production handler never branches on them: a region simply carries another
// write-fault function.
//   bare     mprotect the page writable; no entry lock, no tag (the floor of
//            a SIGSEGV tracker)
//   delayed  udax's ordering with a sleep between DIRTY and mprotect RW, so a
//            test can run a sync inside the window
//   2016     the 2016 patch's ordering: DIRTY, unlock, sleep, then mprotect
//            RW — the race the design must not have
// and a fork probe: what a forked child finds where a mapping is.
#include "udax.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <stddef.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static std::atomic<int64_t> g_delay_ns{0};

static void sleep_window() {
  int64_t ns = g_delay_ns.load(std::memory_order_relaxed);
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (ns > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static uint32_t entry_of(udax_region *r, uintptr_t addr) {
  return (uint32_t)((r->file_offset + (addr - r->start)) >> r->inode->entry_shift);
}

static void bare_write_fault(udax_region *, uintptr_t addr) {
  mprotect((void *)(addr & ~(uintptr_t)4095), 4096, PROT_READ | PROT_WRITE);
}

static void bare_uffd_write_fault(udax_region *, uintptr_t addr) {
  sigbus_set_wp(addr & ~(uintptr_t)4095, 4096, false);
}

static void delayed_write_fault(udax_region *r, uintptr_t addr) {
  uint32_t index = entry_of(r, addr);
  entry_lock(r->inode, index);
  entry_set_dirty(r->inode, index);
  sleep_window();
  region_set_prot(r, index, index, true);
  entry_unlock(r->inode, index);
  __atomic_fetch_add(&r->inode->stats[UDAX_STAT_WRITE_FAULTS], 1, __ATOMIC_RELAXED);
}

static void write_fault_2016(udax_region *r, uintptr_t addr) {
  uint32_t index = entry_of(r, addr);
  entry_lock(r->inode, index);
  entry_set_dirty(r->inode, index);
  entry_unlock(r->inode, index);
  sleep_window();
  region_set_prot(r, index, index, true);
  __atomic_fetch_add(&r->inode->stats[UDAX_STAT_WRITE_FAULTS], 1, __ATOMIC_RELAXED);
}

// testingSetWriteFault(region, kind, delayNs): make region's write faults run
// kind ('dax' restores udax's own). The region must be tracked.
static Napi::Value TestingSetWriteFault(const Napi::CallbackInfo &info) {
  PinnedRegion r(info, 0);
  std::string kind = info[1].As<Napi::String>().Utf8Value();
  g_delay_ns.store(info[2].As<Napi::Number>().Int64Value());
  udax_write_fault_fn fn = kind == "dax" ? (r->sigbus ? handle_uffd_write_fault : handle_write_fault)
                           : kind == "bare" ? (r->sigbus ? bare_uffd_write_fault : bare_write_fault)
                           : kind == "delayed" ? delayed_write_fault
                           : kind == "2016" ? write_fault_2016
                           : nullptr;
  if (!fn || !r->tracked || r->async) throw errno_error(info.Env(), EINVAL, "sigaction");
  r->on_write_fault.store(fn, std::memory_order_release);
  return info.Env().Undefined();
}

// testingMadvise(region, offset, length, advice): madvise part of a mapping
// ('pageout' or 'dontneed': the kernel zaps the pages, as reclaim does).
static Napi::Value TestingMadvise(const Napi::CallbackInfo &info) {
  PinnedRegion r(info, 0);
  size_t offset = (size_t)info[1].As<Napi::Number>().Int64Value();
  size_t length = (size_t)info[2].As<Napi::Number>().Int64Value();
  std::string advice = info[3].As<Napi::String>().Utf8Value();
  int adv = advice == "pageout" ? 21 /* MADV_PAGEOUT */ : advice == "dontneed" ? MADV_DONTNEED : -1;
  if (adv < 0 || offset > r->end - r->start || length > r->end - r->start - offset)
    throw errno_error(info.Env(), EINVAL, "madvise", r->inode->path);
  if (madvise((void *)(r->start + offset), length, adv) != 0) throw errno_error(info.Env(), errno, "madvise", r->inode->path);
  return info.Env().Undefined();
}

// Install a seccomp filter on every thread of the process (irreversible).
static void install_seccomp(Napi::Env env, struct sock_filter *filter, size_t n) {
  struct sock_fprog prog = {(unsigned short)n, filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw errno_error(env, errno, "prctl");
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
    throw errno_error(env, errno, "seccomp");
}

// testingRefuseUserfaultfd(): from now on userfaultfd() fails with EPERM in
// this process, as under Docker's default seccomp profile (a seccomp filter:
// irreversible; for a child process only).
static Napi::Value TestingRefuseUserfaultfd(const Napi::CallbackInfo &info) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_userfaultfd, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  install_seccomp(info.Env(), filter, sizeof filter / sizeof filter[0]);
  return info.Env().Undefined();
}

// testingRefusePagemapScan(): from now on the PAGEMAP_SCAN ioctl fails with
// ENOTTY in this process, as on a kernel before 6.7 (where the sigbus
// tracker runs and the async one cannot). Matched by its type 'f' and
// number 0x10 (the low 16 bits of the request). Irreversible: child
// processes only.
static Napi::Value TestingRefusePagemapScan(const Napi::CallbackInfo &info) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),  // low word (x86-64)
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xffff),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ('f' << 8) | 0x10, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOTTY),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  install_seccomp(info.Env(), filter, sizeof filter / sizeof filter[0]);
  return info.Env().Undefined();
}

// testingForkProbe(region) -> 'unmapped' | 'mapped' | 'partly': what a
// forked child finds at the region's addresses. The child asks msync of each
// page (ENOMEM: nothing mapped there) and _exits with the answer: system
// calls only, nothing that takes a lock another thread may have held at the
// fork. The parent waits for it.
static Napi::Value TestingForkProbe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  PinnedRegion r(info, 0);
  const uintptr_t start = r->start;
  const size_t pages = (r->end - r->start) / 4096;
  pid_t pid = fork();
  if (pid < 0) throw errno_error(env, errno, "fork", r->inode->path);
  if (pid == 0) {
    size_t mapped = 0;
    for (size_t i = 0; i < pages; i++) {
      if (msync((void *)(start + i * 4096), 4096, MS_ASYNC) == 0) mapped++;
      else if (errno != ENOMEM) _exit(3);
    }
    _exit(mapped == 0 ? 0 : mapped == pages ? 1 : 2);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw errno_error(env, errno, "waitpid", r->inode->path);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) > 2) throw errno_error(env, EIO, "msync", r->inode->path);
  static const char *const seen[] = {"unmapped", "mapped", "partly"};
  return Napi::String::New(env, seen[WEXITSTATUS(status)]);
}

void init_testing(Napi::Env env, Napi::Object exports) {
  exports.Set("testingRefusePagemapScan", Napi::Function::New(env, TestingRefusePagemapScan, "testingRefusePagemapScan"));
  exports.Set("testingForkProbe", Napi::Function::New(env, TestingForkProbe, "testingForkProbe"));
  exports.Set("testingMadvise", Napi::Function::New(env, TestingMadvise, "testingMadvise"));
  exports.Set("testingRefuseUserfaultfd", Napi::Function::New(env, TestingRefuseUserfaultfd, "testingRefuseUserfaultfd"));
  exports.Set("testingSetWriteFault", Napi::Function::New(env, TestingSetWriteFault, "testingSetWriteFault"));
}
