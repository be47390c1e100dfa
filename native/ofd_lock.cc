// Open-file-description locks (fcntl F_OFD_SETLK): Node has no fcntl. A
// volume locks its .udax/lock file with one (src/volume-lock.ts decides what
// a refusal means). An OFD lock belongs to the open file description, not to
// the process: a second open of the file conflicts with it even in the same
// process, and closing the description (fileClose) releases it.
#include "udax.h"

#include <fcntl.h>

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
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // the whole file
  int err = fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : errno;
  return Napi::Number::New(info.Env(), err);
}

void init_ofd_lock(Napi::Env env, Napi::Object exports) {
  exports.Set("fileOfdLock", Napi::Function::New(env, FileOfdLock, "fileOfdLock"));
}
