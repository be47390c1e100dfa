// Module entry: exports the mechanisms and the constants of entry.h.
#include "udax.h"

#include <string.h>
#include <unistd.h>

Napi::Error errno_error(Napi::Env env, int err, const char *syscall, const char *path) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (path && *path) e.Set("path", Napi::String::New(env, path));
  return e;
}

int arg_id(const Napi::CallbackInfo &info, int i) {
  if (info.Length() <= (size_t)i || !info[i].IsNumber()) return -1;
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 0x7fffffff) || d != (double)(int)d) return -1;
  return (int)d;
}

uint8_t *typed_bytes(const Napi::CallbackInfo &info, int i, size_t *len) {
  Napi::TypedArray ta = info[i].As<Napi::TypedArray>();
  *len = ta.ByteLength();
  return static_cast<uint8_t *>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("LOCKED", UDAX_ENTRY_LOCKED);
  c.Set("DIRTY", UDAX_ENTRY_DIRTY);
  c.Set("TOWRITE", UDAX_ENTRY_TOWRITE);
  c.Set("WAITERS", UDAX_ENTRY_WAITERS);
  c.Set("REDIRTY", UDAX_ENTRY_REDIRTY);
  c.Set("OWNER_SHIFT", UDAX_ENTRY_OWNER_SHIFT);
  c.Set("OWNER_MASK", (double)UDAX_ENTRY_OWNER_MASK);
  c.Set("FLAGS_MASK", UDAX_ENTRY_FLAGS_MASK);
  c.Set("SUMMARY_SHIFT", UDAX_SUMMARY_SHIFT);
  c.Set("SUMMARY2_SHIFT", UDAX_SUMMARY2_SHIFT);
  c.Set("PERSIST_BYTES", UDAX_PERSIST_BYTES);
  c.Set("TRACKER_KIND", UDAX_TRACKER_KIND);
  c.Set("TRACKER_WORDS", UDAX_TRACKER_WORDS);
  c.Set("TRACKER_SCAN", UDAX_TRACKER_SCAN);
  c.Set("SCAN_ARMED", UDAX_SCAN_ARMED);
  c.Set("SCAN_POPULATED", UDAX_SCAN_POPULATED);
  c.Set("SIZE_LIVE", UDAX_SIZE_LIVE);
  c.Set("SIZE_DURABLE", UDAX_SIZE_DURABLE);
  c.Set("SIZE_RESIZES", UDAX_SIZE_RESIZES);
  c.Set("SIZE_WORDS", UDAX_SIZE_WORDS);
  c.Set("MAX_ENTRIES", (double)UDAX_MAX_ENTRIES);
  c.Set("TABLE_RESERVE_BYTES", (double)UDAX_TABLE_RESERVE_BYTES);
  c.Set("PAGE_SIZE", (double)sysconf(_SC_PAGESIZE));
  Napi::Array stats = Napi::Array::New(env);
#define UDAX_STAT_NAME(name, js) stats.Set((uint32_t)UDAX_STAT_##name, #js);
  UDAX_STATS(UDAX_STAT_NAME)
#undef UDAX_STAT_NAME
  c.Set("STATS", stats);
  exports.Set("constants", c);
  init_inode(env, exports);
  init_file(env, exports);
  init_region(env, exports);
  init_writeback(env, exports);
  init_flush(env, exports);
  init_fault(env, exports);
  init_lock(env, exports);
  init_testing(env, exports);
  init_uffd(env, exports);
  init_uffd_sigbus(env, exports);
  init_resize(env, exports);
  init_freeze(env, exports);
  init_ofd_lock(env, exports);
  init_shootdown(env, exports);
  return exports;
}

NODE_API_MODULE(udax, Init)
