// Open-file-description locks (fcntl F_OFD_SETLK): Node has no fcntl. A
// volume locks its .udax/lock file with one (src/volume-lock.ts decides what
// a refusal means); the process registry (native/proc_registry.cc) holds one
// byte per process for its life. An OFD lock belongs to the open file
// description, not to the process: a second open of the file conflicts with
// it even in the same process, and closing the description releases it.
#include "udax.h"

#include <fcntl.h>

// A write lock on [start, start+len), as F_OFD_SETLK and F_OFD_GETLK take it.
static struct flock write_lock(off_t start, off_t len) {
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  return fl;
}

int ofd_lock_range(int fd, off_t start, off_t len) {
  struct flock fl = write_lock(start, len);
  return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : errno;
}

bool ofd_locked_by_other(int fd, off_t start, off_t len) {
  struct flock fl = write_lock(start, len);
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: assume held
  return fl.l_type != F_UNLCK;
}

// fileOfdLock(fileId) -> 0, or the errno of F_OFD_SETLK (EAGAIN: another
// open file description holds a conflicting lock). A write lock on the whole
// file, never waiting.
static Napi::Value FileOfdLock(const Napi::CallbackInfo &info) {
  int fd;
  {
    std::lock_guard<std::mutex> lock(g_objects_mutex);
    udax_file *f = file_get(arg_id(info, 0));
    if (!f) throw errno_error(info.Env(), EBADF, "fcntl");
    fd = f->fd;
  }
  return Napi::Number::New(info.Env(), ofd_lock_range(fd, 0, 0));  // 0: the whole file
}

void init_ofd_lock(Napi::Env env, Napi::Object exports) {
  exports.Set("fileOfdLock", Napi::Function::New(env, FileOfdLock, "fileOfdLock"));
}
