// The sidecar: one file's entry table shared by every process that opens the
// file, in a file on /dev/shm mapped MAP_SHARED (layout in udax.h).
//
// Lifetime (flock(LOCK_EX) on the sidecar serialises every step below; no
// descriptor of it is kept open in between, so a file costs its process one
// descriptor, its own):
//   attach  open or create the sidecar; if no slot names a live process, the
//           table is stale (its processes are gone, or its data file was
//           deleted and the inode number reused): truncate it to zero and lay
//           it out fresh, as a first open does. Otherwise check it names
//           this very file (dev, ino, birth time) and join it. Then claim a
//           slot whose process is gone: write this process's record, its
//           registry record last.
//   detach  reopen it by name (the same inode, else leave it), clear the
//           slot; if no live process is left, unlink the sidecar (a later
//           opener that opened it meanwhile sees the name gone under its
//           flock and starts again).
// Liveness: slot k's process is alive while the process-registry record it
// names (native/proc_registry.cc) is: an OFD lock the kernel drops only
// after that process's address space is gone.
//
// Owner tags (entry.h): ((slot + 1) << UDAX_OWNER_THREAD_BITS | thread index)
// << UDAX_ENTRY_OWNER_SHIFT. A thread's index is process-wide (a lock-free
// table keyed by thread id); each slot publishes the thread id behind each
// index, so a peer in the same pid namespace can tell a dead thread of a live
// process (a terminated worker) too.
#include "udax.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const uint64_t kMagic = 0x7564617873696465ull;  // "udaxside"
static const uint32_t kVersion = UDAX_SHARED_LAYOUT;
static const size_t kPage = 4096;
static const uint32_t kThreads = 1u << UDAX_OWNER_THREAD_BITS;

static size_t page_up(size_t n) { return (n + kPage - 1) & ~(kPage - 1); }

// ---- thread indices ------------------------------------------------------------

// Thread id per index, open addressing by tid. A dead thread's index is
// reused only when every index is taken (as late as possible).
static pid_t g_thread_tids[kThreads];

static uint32_t thread_index(pid_t tid) {
  uint32_t h = ((uint32_t)tid * 2654435761u) & (kThreads - 1);
  for (uint32_t k = 0; k < kThreads; k++) {
    uint32_t i = (h + k) & (kThreads - 1);
    pid_t v = __atomic_load_n(&g_thread_tids[i], __ATOMIC_ACQUIRE);
    if (v == tid) return i;
    if (v == 0) {
      pid_t none = 0;
      if (__atomic_compare_exchange_n(&g_thread_tids[i], &none, tid, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return i;
      if (none == tid) return i;
    }
  }
  for (uint32_t k = 0; k < kThreads; k++) {  // full: take over a dead thread's index
    uint32_t i = (h + k) & (kThreads - 1);
    pid_t v = __atomic_load_n(&g_thread_tids[i], __ATOMIC_ACQUIRE);
    if (!thread_alive(getpid(), v) &&
        __atomic_compare_exchange_n(&g_thread_tids[i], &v, tid, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
      return i;
  }
  return h;  // unreachable in practice: more live threads than indices
}

bool thread_alive(pid_t pid, pid_t tid) {
  return syscall(SYS_tgkill, pid, tid, 0) == 0 || errno != ESRCH;
}

int32_t entry_owner_tag(udax_inode *t) {
  pid_t tid = udax_gettid();
  uint32_t i = thread_index(tid);
  int32_t *published = &t->tids[(size_t)t->slot * kThreads + i];
  if (__atomic_load_n(published, __ATOMIC_RELAXED) != tid) __atomic_store_n(published, tid, __ATOMIC_RELEASE);
  return (int32_t)((((uint32_t)(t->slot + 1) << UDAX_OWNER_THREAD_BITS) | i) << UDAX_ENTRY_OWNER_SHIFT);
}

// ---- liveness ------------------------------------------------------------------

static bool slot_record_alive(const udax_proc_registry *reg, const udax_sidecar_slot *s) {
  uint32_t proc = __atomic_load_n(&s->proc, __ATOMIC_ACQUIRE);
  return proc != 0 && proc_alive(reg, proc - 1, __atomic_load_n(&s->proc_gen, __ATOMIC_ACQUIRE));
}

bool slot_alive(udax_inode *t, int k) {
  if (k == t->slot) return true;
  return slot_record_alive(t->registry, &t->slots[k]);
}

int sidecar_peers(udax_inode *t) {
  int n = 0;
  for (int k = 0, high = sidecar_slots_high(t); k < high; k++)
    if (k != t->slot && slot_alive(t, k)) n++;
  return n;
}

bool owner_alive(udax_inode *t, int32_t owner) {
  uint32_t v = (uint32_t)owner >> UDAX_ENTRY_OWNER_SHIFT;
  int k = (int)(v >> UDAX_OWNER_THREAD_BITS) - 1;
  uint32_t i = v & (kThreads - 1);
  if (k < 0 || k >= UDAX_SLOTS) return false;  // never a real owner
  if (!slot_alive(t, k)) return false;
  pid_t tid = __atomic_load_n(&t->tids[(size_t)k * kThreads + i], __ATOMIC_ACQUIRE);
  udax_sidecar_slot *s = &t->slots[k];
  // Ours: an index we never published is a dead predecessor's in this slot.
  if (k == t->slot) return tid != 0 && thread_alive(getpid(), tid);
  // Another process: its thread ids mean something only in our pid namespace.
  if (tid == 0 || __atomic_load_n(&s->pidns, __ATOMIC_ACQUIRE) != t->pidns) return true;
  return thread_alive(__atomic_load_n(&s->pid, __ATOMIC_ACQUIRE), tid);
}

// ---- mapped ranges -----------------------------------------------------------

// Take a free record for this process: one it freed itself first, then a
// never-used one, then any free one. -1 when all are in use.
static int64_t claim_range_record(udax_inode *t, uint64_t busy) {
  auto take = [&](uint32_t i) {
    uint64_t none = 0;
    return __atomic_compare_exchange_n(&t->ranges[i].owner, &none, busy, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
  };
  while (!t->freed_ranges.empty()) {
    uint32_t i = t->freed_ranges.back();
    t->freed_ranges.pop_back();
    if (take(i)) return i;  // (else a dead-peer cleanup freed it and another process took it)
  }
  for (;;) {
    uint32_t high = __atomic_load_n(&t->hdr->ranges_high, __ATOMIC_ACQUIRE);
    if (high >= UDAX_SIDECAR_RANGES) break;
    if (__atomic_compare_exchange_n(&t->hdr->ranges_high, &high, high + 1, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED) && take(high))
      return high;
  }
  for (uint32_t i = 0; i < UDAX_SIDECAR_RANGES; i++)
    if (take(i)) return i;
  return -1;
}

int sidecar_publish_range(udax_inode *t, uintptr_t start, uintptr_t end, uint64_t file_offset) {
  std::lock_guard<std::mutex> lock(t->ranges_mutex);
  udax_sidecar_slot *s = &t->slots[t->slot];
  const uint64_t owner = sidecar_range_owner(t->slot, s->gen);
  int64_t i;
  try {
    i = claim_range_record(t, owner | UDAX_RANGE_BUSY);
  } catch (const std::bad_alloc &) {
    return -1;
  }
  if (i < 0) return -1;
  udax_sidecar_range *r = &t->ranges[i];
  r->start = start;
  r->end = end;
  r->file_offset = file_offset;
  __atomic_store_n(&r->owner, owner, __ATOMIC_RELEASE);
  __atomic_fetch_add(&s->live_ranges, 1u, __ATOMIC_ACQ_REL);
  return (int)i;
}

int sidecar_peer_attach_access(udax_inode *t, int k) {
  int32_t pid = __atomic_load_n(&t->slots[k].pid, __ATOMIC_ACQUIRE);
  if (pid <= 0) return 0;  // detaching: nothing of it to reach
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return errno == ESRCH ? 0 : errno;
  // The ptrace check comes before the descriptor lookup: EBADF means allowed.
  int fd = (int)syscall(SYS_pidfd_getfd, pidfd, INT_MAX, 0);
  int err = fd >= 0 ? 0 : errno == EBADF || errno == ESRCH ? 0 : errno;
  if (fd >= 0) close(fd);
  close(pidfd);
  return err;
}

// Peer k's sigbus userfaultfd, taken once per process holding slot k (and
// kept while it does). -1 with *err 0: nothing to write-protect there (dead,
// attaching, no sigbus mapping). Caller holds t->peer_mutex.
static int peer_uffd(udax_inode *t, int k, int *err) {
  udax_sidecar_slot *s = &t->slots[k];
  auto &c = t->peer_uffd[k];
  *err = 0;
  int32_t fdnum = __atomic_load_n(&s->sigbus_uffd, __ATOMIC_ACQUIRE) - 1;
  // Not ready: dead (nothing of it is writable any more), still attaching
  // (no mapping yet), or detaching (its pid cleared just after its registry
  // record: pidfd_open(0) would fail the sync with EINVAL).
  int32_t pid = __atomic_load_n(&s->pid, __ATOMIC_ACQUIRE);
  bool ready = fdnum >= 0 && pid > 0 && slot_alive(t, k);
  uint32_t gen = __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
  if (c.fd >= 0 && (!ready || c.pid != pid || c.gen != gen)) {
    close(c.fd);
    c.fd = -1;
  }
  if (!ready || c.fd >= 0) return c.fd;
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    if (errno != ESRCH) *err = errno;
    return -1;
  }
  // Still that process's slot once the pidfd pins it: the pid was its pid.
  if (!slot_alive(t, k) || __atomic_load_n(&s->pid, __ATOMIC_ACQUIRE) != pid || __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) != gen) {
    close(pidfd);
    return -1;
  }
  int uffd = (int)syscall(SYS_pidfd_getfd, pidfd, fdnum, 0);
  if (uffd < 0 && errno != ESRCH) *err = errno;  // EPERM: ptrace rules (checked at open too)
  close(pidfd);
  if (uffd >= 0) c = {uffd, pid, gen};
  return uffd;
}

int sidecar_mkclean_peers(udax_inode *t, uint32_t first, uint32_t last) {
  const uint64_t from = (uint64_t)first << t->entry_shift, to = ((uint64_t)last + 1) << t->entry_shift;
  std::lock_guard<std::mutex> lock(t->peer_mutex);
  for (int k = 0, high = sidecar_slots_high(t); k < high; k++) {
    if (k == t->slot) continue;
    udax_sidecar_slot *s = &t->slots[k];
    if (__atomic_load_n(&s->live_ranges, __ATOMIC_ACQUIRE) == 0 && t->peer_uffd[k].fd < 0) continue;
    int err = 0;
    int uffd = peer_uffd(t, k, &err);
    if (err) return err;
    if (uffd < 0) continue;
    sidecar_for_each_range(t, sidecar_range_owner(k, __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE)),
                           [&](uintptr_t start, uintptr_t end, uint64_t fo) {
                             if (err) return;
                             uint64_t len = end - start;
                             uint64_t a = from > fo ? from : fo, b = to < fo + len ? to : fo + len;
                             if (a >= b) return;
                             int e;
                             for (int tries = 0; (e = uffd_set_wp(uffd, start + (a - fo), b - a, true)) == EAGAIN && tries < 1000; tries++) {}
                             if (e && e != ENOENT && e != ESRCH) err = e;  // ENOENT: unmapped meanwhile; ESRCH: it died
                           });
    if (err) return err;
  }
  return 0;
}

void sidecar_unpublish_range(udax_inode *t, int index) {
  if (index < 0) return;
  std::lock_guard<std::mutex> lock(t->ranges_mutex);
  __atomic_store_n(&t->ranges[index].owner, (uint64_t)0, __ATOMIC_RELEASE);
  __atomic_fetch_sub(&t->slots[t->slot].live_ranges, 1u, __ATOMIC_ACQ_REL);
  try {
    t->freed_ranges.push_back((uint32_t)index);
  } catch (const std::bad_alloc &) {}  // found again by the scan of free records
}

// ---- attach and detach ---------------------------------------------------------

// The layout version is in the name: processes of another udax version
// never join, judge or sweep it (nor this one theirs).
void sidecar_name(const char *dir, dev_t dev, ino_t ino, char *out, size_t len) {
  snprintf(out, len, "%s/udax-table-v%u.%llx.%llx", dir, kVersion, (unsigned long long)dev, (unsigned long long)ino);
}

static const size_t kSlotsAt = kPage;  // the slots' offset in every layout

// Does a slot of the sidecar open on fd, other than `except`, name a live
// process? (Another version's sidecar, or none: no.)
static bool any_slot_alive(int fd, const udax_proc_registry *reg, int except) {
  udax_sidecar_hdr hdr;
  if (pread(fd, &hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr || hdr.magic != kMagic || hdr.version != kVersion) return false;
  udax_sidecar_slot slots[UDAX_SLOTS];
  size_t n = hdr.slots_high < UDAX_SLOTS ? hdr.slots_high : UDAX_SLOTS;
  if (pread(fd, slots, n * sizeof slots[0], (off_t)kSlotsAt) != (ssize_t)(n * sizeof slots[0])) return false;
  for (size_t k = 0; k < n; k++)
    if ((int)k != except && slot_record_alive(reg, &slots[k])) return true;
  return false;
}

// Remove the sidecars in dir that no live process holds (left by processes
// killed with files open): each is flocked, checked for a live slot and for
// being a sidecar (magic, or still empty), then unlinked. An opener that
// opened one meanwhile finds the name gone under its flock and starts again
// (open_locked), so this never pulls a table from under a process.
static void sweep(const char *dir, const udax_proc_registry *reg) {
  DIR *d = opendir(dir);
  if (!d) return;
  while (struct dirent *e = readdir(d)) {
    unsigned long long a, b;
    char tail;
    unsigned version;
    if (sscanf(e->d_name, "udax-table-v%u.%llx.%llx%c", &version, &a, &b, &tail) != 3 || version != kVersion) continue;
    int fd = openat(dirfd(d), e->d_name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;  // another user's: not ours to judge
    struct stat st, now;
    uint64_t magic = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
        (st.st_size == 0 || (pread(fd, &magic, sizeof magic, 0) == (ssize_t)sizeof magic && magic == kMagic)) &&
        !any_slot_alive(fd, reg, -1) &&
        fstatat(dirfd(d), e->d_name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev)
      unlinkat(dirfd(d), e->d_name, 0);
    close(fd);
  }
  closedir(d);
}

static std::atomic<bool> g_swept{false};  // (not std::call_once: pthread_once is GLIBC_2.34)

struct layout {
  size_t slots, ranges, tids, table, entries, summary, len;
  uint32_t groups;
};

static layout layout_of(uint32_t capacity) {
  layout l;
  l.slots = kSlotsAt;
  l.ranges = page_up(l.slots + UDAX_SLOTS * sizeof(udax_sidecar_slot));
  l.tids = page_up(l.ranges + (size_t)UDAX_SIDECAR_RANGES * sizeof(udax_sidecar_range));
  l.table = page_up(l.tids + (size_t)UDAX_SLOTS * kThreads * sizeof(int32_t));
  size_t header = UDAX_STAT_COUNT * 8 + UDAX_PERSIST_BYTES + UDAX_TRACKER_WORDS * 4 + UDAX_SIZE_WORDS * 8;
  l.entries = page_up(l.table + header);
  size_t entries_bytes = ((size_t)capacity * 4 + 7) & ~(size_t)7;
  size_t groups = ((size_t)capacity + (1u << UDAX_SUMMARY_SHIFT) - 1) >> UDAX_SUMMARY_SHIFT;
  size_t groups2 = (groups + (1u << UDAX_SUMMARY2_SHIFT) - 1) >> UDAX_SUMMARY2_SHIFT;
  l.groups = (uint32_t)groups;
  l.summary = l.entries + entries_bytes;
  l.len = page_up(l.summary + (groups + groups2) * 4);
  return l;
}

// This process's pid namespace (fixed for its life: setns only moves children).
static uint64_t pid_namespace() {
  static std::atomic<uint64_t> ns{0};
  uint64_t v = ns.load(std::memory_order_relaxed);
  struct stat st;
  if (!v && stat("/proc/self/ns/pid", &st) == 0) ns.store(v = (uint64_t)st.st_ino, std::memory_order_relaxed);
  return v;
}

static void flock_retry(int fd, int op) {
  while (flock(fd, op) != 0 && errno == EINTR) {}
}

// Open the sidecar at path under flock(LOCK_EX), the name still naming it.
static int open_locked(const char *path, int *err, const char **call) {
  for (;;) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return *err = errno, *call = "open", -1;
    flock_retry(fd, LOCK_EX);
    struct stat a, b;
    if (fstat(fd, &a) != 0) {
      *err = errno, *call = "fstat";
      close(fd);
      return -1;
    }
    if (lstat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
      if (a.st_uid != geteuid()) {  // another user's: never trust or join it
        *err = EACCES, *call = "open";
        close(fd);
        return -1;
      }
      return fd;
    }
    close(fd);  // removed (or replaced) by a last closer meanwhile: again
  }
}

// Reopen t's sidecar under flock(LOCK_EX) (nonblocking: with LOCK_NB), if
// its name still names the table t maps; else -1 (removed, replaced, or no
// descriptor to be had: the caller leaves the name alone).
static int reopen_locked(udax_inode *t, int op) {
  int fd = open(t->sidecar_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  struct stat a, b;
  if (flock(fd, op) != 0 || fstat(fd, &a) != 0 || a.st_dev != t->sidecar_dev || a.st_ino != t->sidecar_ino ||
      lstat(t->sidecar_path, &b) != 0 || b.st_dev != a.st_dev || b.st_ino != a.st_ino) {
    close(fd);
    return -1;
  }
  return fd;
}

// The data file's birth time (0, 0 where the file system records none).
static void birth_time(int fd, int64_t *sec, uint32_t *nsec) {
  struct statx sx = {};
  *sec = 0, *nsec = 0;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &sx) == 0 && (sx.stx_mask & STATX_BTIME))
    *sec = sx.stx_btime.tv_sec, *nsec = sx.stx_btime.tv_nsec;
}

void sidecar_dirty_dead_ranges(udax_inode *t, int k, uint32_t gen, int32_t self) {
  const uint64_t owner = sidecar_range_owner(k, gen);
  uint32_t high = __atomic_load_n(&t->hdr->ranges_high, __ATOMIC_ACQUIRE);
  if (high > UDAX_SIDECAR_RANGES) high = UDAX_SIDECAR_RANGES;
  for (uint32_t i = 0; i < high; i++) {
    udax_sidecar_range *r = &t->ranges[i];
    uint64_t o = __atomic_load_n(&r->owner, __ATOMIC_ACQUIRE);
    if ((o & ~UDAX_RANGE_BUSY) != owner) continue;
    if (!(o & UDAX_RANGE_BUSY) && r->end > r->start) dirty_file_range(t, r->file_offset, r->file_offset + (r->end - r->start), self);
    __atomic_compare_exchange_n(&r->owner, &o, (uint64_t)0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
  }
}

udax_inode *sidecar_attach(const char *dir, int data_fd, uint64_t size, uint32_t shift, dev_t dev, ino_t ino,
                           const char *path, bool *created, int *err, const char **call) {
  uint64_t n = (size + (1ull << shift) - 1) >> shift;
  if (n > UDAX_MAX_ENTRIES) return *err = EFBIG, *call = "open", nullptr;
  udax_proc_registry *reg = proc_registry_join(dir, err, call);
  if (!reg) return nullptr;
  char sidecar[256];
  sidecar_name(dir, dev, ino, sidecar, sizeof sidecar);
  if (!g_swept.exchange(true)) sweep(dir, reg);  // once per process: what killed processes left
  int fd = open_locked(sidecar, err, call);
  if (fd < 0) return nullptr;
  auto fail = [&](int e, const char *c) -> udax_inode * {
    *err = e, *call = c;
    flock_retry(fd, LOCK_UN);
    close(fd);
    return nullptr;
  };
  int64_t btime_sec;
  uint32_t btime_nsec;
  birth_time(data_fd, &btime_sec, &btime_nsec);
  bool live = any_slot_alive(fd, reg, -1);
  udax_sidecar_hdr hdr = {};
  struct stat st;
  if (fstat(fd, &st) != 0) return fail(errno, "fstat");
  if (live) {
    // Someone holds the data file open with this table: it is this file's
    // (an inode number is reused only once no one holds it). Check anyway.
    if (pread(fd, &hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr || hdr.magic != kMagic || hdr.version != kVersion ||
        hdr.dev != (uint64_t)dev || hdr.ino != (uint64_t)ino || hdr.btime_sec != btime_sec ||
        hdr.btime_nsec != btime_nsec || (uint64_t)st.st_size != hdr.mem_len || hdr.mem_len != layout_of(hdr.capacity).len)
      return fail(ESTALE, "open");
  } else {
    uint64_t reserve = UDAX_TABLE_RESERVE_BYTES >> shift;
    uint64_t capacity = n > reserve ? n : reserve;
    if (capacity > UDAX_MAX_ENTRIES) capacity = UDAX_MAX_ENTRIES;
    hdr = {kMagic, kVersion, shift, (uint64_t)dev, (uint64_t)ino, btime_sec, btime_nsec, (uint32_t)capacity,
           layout_of((uint32_t)capacity).len, 0, 0, 0};  // slots_high is set below, after the header is copied
    // Zero whatever a dead process left, then size it (sparse: nothing is
    // allocated until touched).
    if ((st.st_size != 0 && ftruncate(fd, 0) != 0) || ftruncate(fd, (off_t)hdr.mem_len) != 0) return fail(errno, "ftruncate");
  }
  layout l = layout_of(hdr.capacity);
  void *mem = mmap(nullptr, l.len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (mem == MAP_FAILED) return fail(errno, "mmap");
  // A forked child gets no copy: it attaches itself (sidecar_forget_in_child).
  madvise(mem, l.len, MADV_DONTFORK);
  uint8_t *base = (uint8_t *)mem;
  udax_sidecar_slot *slots = (udax_sidecar_slot *)(base + l.slots);
  int slot = -1;
  uint32_t next = live ? ((udax_sidecar_hdr *)mem)->next_slot % UDAX_SLOTS : 0;
  for (int j = 0; j < UDAX_SLOTS && slot < 0; j++) {
    int k = (int)((next + (uint32_t)j) % UDAX_SLOTS);
    if (!live || !slot_record_alive(reg, &slots[k])) slot = k;
  }
  if (slot < 0) {
    munmap(mem, l.len);
    return fail(EUSERS, "open");
  }
  udax_inode *t = new udax_inode();
  t->mem = mem;
  t->mem_len = l.len;
  t->capacity = hdr.capacity;
  t->entry_shift = hdr.entry_shift;
  t->dev = dev;
  t->ino = ino;
  t->hdr = (udax_sidecar_hdr *)base;
  t->slots = slots;
  t->ranges = (udax_sidecar_range *)(base + l.ranges);
  t->tids = (int32_t *)(base + l.tids);
  t->stats = (int64_t *)(base + l.table);
  t->persist = base + l.table + UDAX_STAT_COUNT * 8;
  t->tracker = (int32_t *)(t->persist + UDAX_PERSIST_BYTES);
  t->sizes = (int64_t *)(t->tracker + UDAX_TRACKER_WORDS);
  t->entries_offset = l.entries;
  t->summary_offset = l.summary;
  t->entries = (int32_t *)(base + l.entries);
  t->summary = (int32_t *)(base + l.summary);
  t->groups = l.groups;
  t->registry = reg;
  t->sidecar_dev = st.st_dev;
  t->sidecar_ino = st.st_ino;
  t->slot = slot;
  t->pidns = pid_namespace();
  snprintf(t->path, sizeof t->path, "%s", path);
  snprintf(t->sidecar_path, sizeof t->sidecar_path, "%s", sidecar);
  t->refs.store(1);
  udax_sidecar_slot *s = &t->slots[slot];
  // A predecessor's thread ids go: punched out (read as zero, hold no
  // memory), not written with zeros (which would allocate them).
  if (live) fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(l.tids + (size_t)slot * kThreads * sizeof(int32_t)),
                      (off_t)(kThreads * sizeof(int32_t)));
  if (live && s->gen != 0) {
    // Used before (next-fit: only after every other slot was): locks its
    // threads left (a killed process, a terminated worker) go, DIRTY; then
    // the stores in a killed process's mappings become DIRTY.
    // (Each claimer frees its predecessor's ranges before it bumps gen:
    // older generations have none left.)
    entry_release_dead_slot(t, slot);
    sidecar_dirty_dead_ranges(t, slot, s->gen, entry_owner_tag(t));
  }
  t->hdr->next_slot = (uint32_t)slot + 1;
  if ((uint32_t)slot >= t->hdr->slots_high) __atomic_store_n(&t->hdr->slots_high, (uint32_t)slot + 1, __ATOMIC_RELEASE);
  s->pid = getpid();
  s->pidns = t->pidns;
  s->sigbus_uffd = 0;
  s->live_ranges = 0;
  shootdown_slot_reset(s);
  __atomic_store_n(&s->gen, s->gen + 1, __ATOMIC_RELEASE);
  __atomic_store_n(&s->proc_gen, reg->gen, __ATOMIC_RELEASE);
  __atomic_store_n(&s->proc, reg->self + 1, __ATOMIC_RELEASE);  // last: alive, its record its own
  if (!live) {
    t->sizes[UDAX_SIZE_LIVE] = (int64_t)size;
    t->sizes[UDAX_SIZE_DURABLE] = (int64_t)size;
    t->sizes[UDAX_SIZE_HIGH_WATER] = (int64_t)n;
    hdr.next_slot = (uint32_t)slot + 1;
    hdr.slots_high = (uint32_t)slot + 1;
    memcpy(t->hdr, &hdr, sizeof hdr);  // magic included: valid from now on
  }
  *created = !live;
  flock_retry(fd, LOCK_UN);
  close(fd);
  return t;
}

// Clear this process's slot: it holds no lock and maps nothing of the file.
static void clear_slot(udax_inode *t) {
  udax_sidecar_slot *s = &t->slots[t->slot];
  __atomic_store_n(&s->proc, 0u, __ATOMIC_RELEASE);
  __atomic_store_n(&s->pid, 0, __ATOMIC_RELEASE);
}

void sidecar_detach(udax_inode *t) {
  int fd = reopen_locked(t, LOCK_EX);
  clear_slot(t);
  // Under the flock, no opener is joining: if no one is left, the name goes.
  if (fd >= 0 && sidecar_peers(t) == 0) unlink(t->sidecar_path);
  munmap(t->mem, t->mem_len);
  for (auto &c : t->peer_uffd)
    if (c.fd >= 0) close(c.fd);
  if (fd >= 0) {
    flock_retry(fd, LOCK_UN);
    close(fd);
  }
}

// ---- exit ----------------------------------------------------------------------

// At exit with files still open: remove each sidecar no other live process
// holds (our own registry lock goes with the process; peers still attached
// remove it when the last of them closes).
void sidecar_forget_at_exit(udax_inode *t) {
  int fd = reopen_locked(t, LOCK_EX | LOCK_NB);
  if (fd < 0) return;
  if (sidecar_peers(t) == 0) unlink(t->sidecar_path);
  flock(fd, LOCK_UN);
  close(fd);
}

// ---- fork --------------------------------------------------------------------

extern void inodes_forget_in_child();

void sidecar_forget_in_child() {
  inodes_forget_in_child();
  proc_registry_forget_in_child();
}

static void on_fork_child() { sidecar_forget_in_child(); }

static int g_atfork = pthread_atfork(nullptr, nullptr, on_fork_child);
