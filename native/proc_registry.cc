// The process registry: which processes are alive, one descriptor each.
//
// A file's sidecar (native/sidecar.cc) names each attached process by a
// record of the registry of its directory, `<dir>/udax-procs-v5.<uid>`: a
// process owns record i while it holds an OFD write lock on byte i of that
// file (F_OFD_SETLK), taken at its first attach and held for its life on
// one descriptor; anyone tests it with F_OFD_GETLK. The kernel drops an OFD
// lock when the open file description closes, which at exit happens after
// the address space is gone: "unlocked" means that process will never store
// again. No pid is trusted for it.
//
// A record's generation is new with each owner (at least the realtime clock
// in ns, and above the last one), so a sidecar slot naming (i, gen) names
// one process's life, never a later owner of i, nor an owner of a registry
// recreated since.
#include "udax.h"

#include <string.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

static const uint32_t kRecords = UDAX_PROC_RECORDS;
// After the records: the wait-for graph, UDAX_WAIT_THREADS words per record
// (sparse: a page holds only where threads waited).
static const size_t kRecordsBytes = kRecords * 16;
static const size_t kWaitsBytes = (size_t)kRecords * UDAX_WAIT_THREADS * 4;

struct proc_record {
  uint64_t gen;  // the owner's generation, written after its lock is taken
  int32_t pid;
  uint32_t pad;
};
static_assert(sizeof(proc_record) == 16, "kRecordsBytes");

// Registries this process joined, one per sidecar directory (a process
// normally uses one: UDAX_SIDECAR_DIR or /dev/shm).
static const int kRegistries = 8;
static udax_proc_registry g_registries[kRegistries];
static std::mutex g_registries_mutex;

static uint64_t realtime_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// Open the registry of dir and take a record. 0, or an errno with *call.
static int join(udax_proc_registry *reg, const char *dir, const char **call) {
  char path[300];
  snprintf(path, sizeof path, "%s/udax-procs-v%u.%u", dir, (unsigned)UDAX_SHARED_LAYOUT, (unsigned)geteuid());
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return *call = "open", errno;
  struct stat st;
  errno = 0;
  const size_t len = kRecordsBytes + kWaitsBytes;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {  // another user's: never ours
    int err = errno ? errno : EACCES;
    close(fd);
    return *call = "open", err;
  }
  if ((size_t)st.st_size < len && ftruncate(fd, (off_t)len) != 0) {  // sparse; every joiner agrees on len
    int err = errno;
    close(fd);
    return *call = "ftruncate", err;
  }
  void *mem = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (mem == MAP_FAILED) {
    int err = errno;
    close(fd);
    return *call = "mmap", err;
  }
  madvise(mem, len, MADV_DONTFORK);
  proc_record *recs = (proc_record *)mem;
  for (uint32_t j = 0; j < kRecords; j++) {
    uint32_t i = ((uint32_t)getpid() + j) % kRecords;
    if (ofd_lock_range(fd, i, 1) != 0) continue;
    // A killed predecessor's waits go (punched: zeros that hold no memory).
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(kRecordsBytes + (size_t)i * UDAX_WAIT_THREADS * 4),
              (off_t)(UDAX_WAIT_THREADS * 4));
    uint64_t prev = __atomic_load_n(&recs[i].gen, __ATOMIC_ACQUIRE), now = realtime_ns();
    uint64_t gen = now > prev ? now : prev + 1;
    __atomic_store_n(&recs[i].pid, (int32_t)getpid(), __ATOMIC_RELAXED);
    __atomic_store_n(&recs[i].gen, gen, __ATOMIC_RELEASE);
    snprintf(reg->dir, sizeof reg->dir, "%s", dir);
    reg->recs = mem;
    reg->self = i;
    reg->gen = gen;
    __atomic_store_n(&reg->fd, fd, __ATOMIC_RELEASE);  // last: in use from now on
    return 0;
  }
  munmap(mem, len);
  close(fd);
  return *call = "fcntl", EUSERS;
}

udax_proc_registry *proc_registry_join(const char *dir, int *err, const char **call) {
  std::lock_guard<std::mutex> lock(g_registries_mutex);
  udax_proc_registry *free_one = nullptr;
  for (udax_proc_registry &reg : g_registries) {
    if (reg.fd >= 0 && strcmp(reg.dir, dir) == 0) return &reg;
    if (reg.fd < 0 && !free_one) free_one = &reg;
  }
  if (!free_one) return *err = EMLINK, *call = "open", nullptr;
  if ((*err = join(free_one, dir, call)) != 0) return nullptr;
  return free_one;
}

bool proc_alive(const udax_proc_registry *reg, uint32_t index, uint64_t gen) {
  if (index == reg->self) return gen == reg->gen;
  if (index >= kRecords) return false;  // never a real record
  const proc_record *recs = (const proc_record *)reg->recs;
  if (__atomic_load_n(&recs[index].gen, __ATOMIC_ACQUIRE) != gen) return false;  // a later owner's, or none
  return ofd_locked_by_other(reg->fd, index, 1);
}

std::atomic<uint32_t> *proc_wait_word(const udax_proc_registry *reg, uint32_t record, uint32_t thread) {
  if (record >= kRecords || thread >= UDAX_WAIT_THREADS) return nullptr;
  uint32_t *waits = (uint32_t *)((uint8_t *)reg->recs + kRecordsBytes);
  return reinterpret_cast<std::atomic<uint32_t> *>(&waits[(size_t)record * UDAX_WAIT_THREADS + thread]);
}

// In a forked child: the inherited descriptors share the parent's open file
// descriptions, hence its locks; keeping them would keep the parent "alive"
// after it is gone. Close them; the child joins afresh when it opens a file.
void proc_registry_forget_in_child() {
  new (&g_registries_mutex) std::mutex();  // a thread of the parent may have held it
  for (udax_proc_registry &reg : g_registries) {
    if (reg.fd < 0) continue;
    munmap(reg.recs, kRecordsBytes + kWaitsBytes);
    close(reg.fd);
    reg.fd = -1;
    reg.recs = nullptr;
  }
}
