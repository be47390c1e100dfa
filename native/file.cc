// Open files (the kernel's struct file): a descriptor and the path it was
// opened by. Ids are generation-checked; closing frees the slot at once.
#include "udax.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

std::mutex g_objects_mutex;

static udax_file g_files[UDAX_MAX_FILES];
static bool g_file_used[UDAX_MAX_FILES];
static uint32_t g_file_gen[UDAX_MAX_FILES];
static int g_file_next = 0;

udax_file *file_get(int id) {
  if (id < 0) return nullptr;
  int slot = id_slot(id, UDAX_MAX_FILES);
  if (!g_file_used[slot] || make_id(g_file_gen[slot], slot, UDAX_MAX_FILES) != id) return nullptr;
  return &g_files[slot];
}

FileFd::FileFd(const Napi::CallbackInfo &info, int i, const char *syscall, bool optional) {
  path_[0] = 0;
  if (optional && info[i].As<Napi::Number>().Int32Value() < 0) return;
  int access;
  dev_t dev;
  ino_t ino;
  {
    std::lock_guard<std::mutex> lock(g_objects_mutex);
    udax_file *f = file_get(arg_id(info, i));
    if (!f) throw errno_error(info.Env(), EBADF, syscall);
    memcpy(path_, f->path, sizeof path_);
    if (f->fd >= 0) {
      fd_ = f->fd;
      return;
    }
    access = f->access;
    dev = f->dev;
    ino = f->ino;
  }
  int fd = open(path_, access | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) throw errno_error(info.Env(), errno, "open", path_);
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != dev || st.st_ino != ino) {
    close(fd);
    throw errno_error(info.Env(), ESTALE, syscall, path_);
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  fd_ = fd;
  reopened_ = true;
}

// The open file named by argument i, or EBADF.
static udax_file *file_arg(const Napi::CallbackInfo &info, int i, const char *syscall) {
  udax_file *f = file_get(arg_id(info, i));
  if (!f) throw errno_error(info.Env(), EBADF, syscall);
  return f;
}

static Napi::Object stat_object(Napi::Env env, const struct stat &st, const struct statfs &sfs) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("size", Napi::Number::New(env, (double)st.st_size));
  o.Set("isFile", Napi::Boolean::New(env, S_ISREG(st.st_mode)));
  o.Set("fsType", Napi::Number::New(env, (double)(unsigned long)sfs.f_type));
  o.Set("dev", Napi::Number::New(env, (double)st.st_dev));
  o.Set("ino", Napi::Number::New(env, (double)st.st_ino));
  o.Set("freeBytes", Napi::Number::New(env, (double)sfs.f_bavail * (double)sfs.f_bsize));
  return o;
}

// fileOpen(path, flags, mode) -> { id, size, isFile, fsType, dev, ino, freeBytes }.
// O_NONBLOCK and O_NOCTTY keep a FIFO or a terminal from blocking or
// becoming ours; TypeScript refuses anything but a regular file.
static Napi::Value FileOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.size() != strlen(path.c_str())) throw errno_error(env, EINVAL, "open", path.c_str());
  int fd = open(path.c_str(), info[1].As<Napi::Number>().Int32Value() | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
                (mode_t)info[2].As<Napi::Number>().Uint32Value());
  if (fd < 0) throw errno_error(env, errno, "open", path.c_str());
  struct stat st;
  struct statfs sfs;
  if (fstat(fd, &st) != 0 || fstatfs(fd, &sfs) != 0) {
    int err = errno;
    close(fd);
    throw errno_error(env, err, "fstat", path.c_str());
  }
  if (S_ISREG(st.st_mode)) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  int id = -1;
  {
    std::lock_guard<std::mutex> lock(g_objects_mutex);
    for (int k = 0; k < UDAX_MAX_FILES; k++) {
      int slot = (g_file_next + k) % UDAX_MAX_FILES;
      if (g_file_used[slot]) continue;
      g_file_used[slot] = true;
      g_files[slot].fd = fd;
      g_files[slot].inode_id = -1;
      g_files[slot].access = info[1].As<Napi::Number>().Int32Value() & O_ACCMODE;
      g_files[slot].dev = st.st_dev;
      g_files[slot].ino = st.st_ino;
      snprintf(g_files[slot].path, sizeof g_files[slot].path, "%s", path.c_str());
      g_file_next = slot + 1;
      id = make_id(g_file_gen[slot], slot, UDAX_MAX_FILES);
      break;
    }
  }
  if (id < 0) {
    close(fd);
    throw errno_error(env, EMFILE, "open", path.c_str());
  }
  Napi::Object o = stat_object(env, st, sfs);
  o.Set("id", Napi::Number::New(env, id));
  return o;
}

// fileStat(id) -> { size, isFile, fsType, dev, ino, freeBytes }, fresh from fstat.
static Napi::Value FileStat(const Napi::CallbackInfo &info) {
  FileFd fd(info, 0, "fstat");
  struct stat st;
  struct statfs sfs;
  if (fstat(fd.get(), &st) != 0 || fstatfs(fd.get(), &sfs) != 0) throw errno_error(info.Env(), errno, "fstat", fd.path());
  return stat_object(info.Env(), st, sfs);
}

// fileTruncate(id, size): ftruncate.
static Napi::Value FileTruncate(const Napi::CallbackInfo &info) {
  FileFd fd(info, 0, "ftruncate");
  if (ftruncate(fd.get(), (off_t)info[1].As<Napi::Number>().Int64Value()) != 0)
    throw errno_error(info.Env(), errno, "ftruncate", fd.path());
  return info.Env().Undefined();
}

// fileAllocate(id, offset, length): posix_fallocate (backing store now, so a
// later store cannot meet ENOSPC as SIGBUS).
static Napi::Value FileAllocate(const Napi::CallbackInfo &info) {
  FileFd fd(info, 0, "fallocate");
  int err = posix_fallocate(fd.get(), (off_t)info[1].As<Napi::Number>().Int64Value(), (off_t)info[2].As<Napi::Number>().Int64Value());
  if (err) throw errno_error(info.Env(), err, "fallocate", fd.path());
  return info.Env().Undefined();
}

// fileClose(id): unbind from its inode, close the descriptor, free the slot.
static Napi::Value FileClose(const Napi::CallbackInfo &info) {
  int fd;
  char path[512];
  {
    std::lock_guard<std::mutex> lock(g_objects_mutex);
    int id = arg_id(info, 0);
    udax_file *f = file_arg(info, 0, "close");
    if (f->inode_id >= 0) inode_unbind_locked(f->inode_id);
    fd = f->fd;
    memcpy(path, f->path, sizeof path);
    int slot = id_slot(id, UDAX_MAX_FILES);
    g_file_used[slot] = false;
    g_file_gen[slot]++;
  }
  if (fd >= 0 && close(fd) != 0 && errno != EINTR) throw errno_error(info.Env(), errno, "close", path);
  return info.Env().Undefined();
}

// fileParkFd(id): close the descriptor and keep the open file (its slot, its
// inode binding); later calls that need a descriptor open the path again
// (FileFd). For a file udax only maps, sizes and stats: a media file.
static Napi::Value FileParkFd(const Napi::CallbackInfo &info) {
  int fd;
  {
    std::lock_guard<std::mutex> lock(g_objects_mutex);
    udax_file *f = file_arg(info, 0, "close");
    fd = f->fd;
    f->fd = -1;
  }
  if (fd >= 0) close(fd);  // Linux frees the descriptor even when close reports an error
  return info.Env().Undefined();
}

// fileIsOpen(id) -> whether id names an open file (workers check their owner's).
static Napi::Value FileIsOpen(const Napi::CallbackInfo &info) {
  std::lock_guard<std::mutex> lock(g_objects_mutex);
  return Napi::Boolean::New(info.Env(), file_get(arg_id(info, 0)) != nullptr);
}

// fileInode(id) -> the id of the inode (entry table) the open file is bound
// to, or -1: attach checks a handle's file and inode belong together.
static Napi::Value FileInode(const Napi::CallbackInfo &info) {
  std::lock_guard<std::mutex> lock(g_objects_mutex);
  return Napi::Number::New(info.Env(), file_arg(info, 0, "open")->inode_id);
}

// fileProbeMapSync(id) -> true when MAP_SHARED_VALIDATE|MAP_SYNC works (a DAX mount).
static Napi::Value FileProbeMapSync(const Napi::CallbackInfo &info) {
  FileFd fd(info, 0, "mmap");
  long page = sysconf(_SC_PAGESIZE);
  void *p = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd.get(), 0);
  if (p == MAP_FAILED) return Napi::Boolean::New(info.Env(), false);
  munmap(p, page);
  return Napi::Boolean::New(info.Env(), true);
}

// pwrite or pread all of bytes (argument 1) at position (argument 2) of the
// open file (argument 0), retrying short transfers; a read stops at the end
// of the file. Returns the bytes moved.
static Napi::Value transfer(const Napi::CallbackInfo &info, bool write) {
  const char *syscall_name = write ? "pwrite" : "pread";
  FileFd file(info, 0, syscall_name);
  const int fd = file.get();
  const char *path = file.path();
  size_t len;
  uint8_t *data = typed_bytes(info, 1, &len);
  off_t pos = (off_t)info[2].As<Napi::Number>().Int64Value();
  size_t done = 0;
  while (done < len) {
    ssize_t n = write ? pwrite(fd, data + done, len - done, pos + (off_t)done)
                      : pread(fd, data + done, len - done, pos + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw errno_error(info.Env(), errno, syscall_name, path);
    if (n == 0) break;
    done += (size_t)n;
  }
  return Napi::Number::New(info.Env(), (double)done);
}

// filePwrite(id, bytes, position) -> bytes written (the kernel's write path;
// a DAX file system copies to the media).
static Napi::Value FilePwrite(const Napi::CallbackInfo &info) { return transfer(info, true); }

// filePread(id, bytes, position) -> bytes read (fewer at the end of the file).
static Napi::Value FilePread(const Napi::CallbackInfo &info) { return transfer(info, false); }

// fileDescriptor(id) -> the fd (for node:fs calls on the same open file).
static Napi::Value FileDescriptor(const Napi::CallbackInfo &info) {
  std::lock_guard<std::mutex> lock(g_objects_mutex);
  return Napi::Number::New(info.Env(), file_arg(info, 0, "fstat")->fd);
}

void init_file(Napi::Env env, Napi::Object exports) {
  exports.Set("fileOpen", Napi::Function::New(env, FileOpen, "fileOpen"));
  exports.Set("fileStat", Napi::Function::New(env, FileStat, "fileStat"));
  exports.Set("fileTruncate", Napi::Function::New(env, FileTruncate, "fileTruncate"));
  exports.Set("fileAllocate", Napi::Function::New(env, FileAllocate, "fileAllocate"));
  exports.Set("fileClose", Napi::Function::New(env, FileClose, "fileClose"));
  exports.Set("fileParkFd", Napi::Function::New(env, FileParkFd, "fileParkFd"));
  exports.Set("fileIsOpen", Napi::Function::New(env, FileIsOpen, "fileIsOpen"));
  exports.Set("fileInode", Napi::Function::New(env, FileInode, "fileInode"));
  exports.Set("fileProbeMapSync", Napi::Function::New(env, FileProbeMapSync, "fileProbeMapSync"));
  exports.Set("fileDescriptor", Napi::Function::New(env, FileDescriptor, "fileDescriptor"));
  exports.Set("filePwrite", Napi::Function::New(env, FilePwrite, "filePwrite"));
  exports.Set("filePread", Napi::Function::New(env, FilePread, "filePread"));
}
