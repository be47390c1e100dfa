// Cache-line flush: clwb > clflushopt > clflush, then sfence. The CPU's
// instructions are read from CPUID here; which one to use is chosen by
// TypeScript (src/flush.ts: environment overrides) and set once.
#include "udax.h"

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

enum flush_kind { FLUSH_NONE = 0, FLUSH_CLFLUSH, FLUSH_CLFLUSHOPT, FLUSH_CLWB };
static const char *const kFlushNames[] = {"none", "clflush", "clflushopt", "clwb"};
static std::atomic<int> g_flush_kind{FLUSH_NONE};

static const uintptr_t kLine = 64;

// Per-function targets: the addon loads on CPUs that lack an instruction; it
// is only executed when CPUID said it exists (or the user forced it).
__attribute__((target("clwb"))) static void flush_clwb(uintptr_t p, uintptr_t end) {
  for (; p < end; p += kLine) _mm_clwb((void *)p);
}
__attribute__((target("clflushopt"))) static void flush_clflushopt(uintptr_t p, uintptr_t end) {
  for (; p < end; p += kLine) _mm_clflushopt((void *)p);
}
static void flush_clflush(uintptr_t p, uintptr_t end) {
  for (; p < end; p += kLine) _mm_clflush((void *)p);
}

// Write back every cache line of [addr, addr+len) with the chosen instruction.
// Not ordered: call flush_fence() after.
void flush_range(const void *addr, size_t len) {
  uintptr_t p = (uintptr_t)addr & ~(kLine - 1);
  uintptr_t end = (uintptr_t)addr + len;
  switch (g_flush_kind.load(std::memory_order_relaxed)) {
    case FLUSH_CLWB: flush_clwb(p, end); break;
    case FLUSH_CLFLUSHOPT: flush_clflushopt(p, end); break;
    case FLUSH_CLFLUSH: flush_clflush(p, end); break;
    default: break;
  }
}

// Order the flushes before any later store (sfence; clflush is ordered already).
void flush_fence() {
  if (g_flush_kind.load(std::memory_order_relaxed) != FLUSH_NONE) _mm_sfence();
}

// cpuFlushFeatures(): { clflush, clflushopt, clwb } as CPUID reports them.
static Napi::Value CpuFlushFeatures(const Napi::CallbackInfo &info) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  bool clflush = false, clflushopt = false, clwb = false;
  if (__get_cpuid(1, &a, &b, &c, &d)) clflush = (d >> 19) & 1;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    clflushopt = (b >> 23) & 1;
    clwb = (b >> 24) & 1;
  }
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("clflush", clflush);
  o.Set("clflushopt", clflushopt);
  o.Set("clwb", clwb);
  return o;
}

// setFlushInstruction(name): use this instruction for every later flush.
static Napi::Value SetFlushInstruction(const Napi::CallbackInfo &info) {
  std::string name = info[0].As<Napi::String>().Utf8Value();
  for (int k = FLUSH_NONE; k <= FLUSH_CLWB; k++) {
    if (name == kFlushNames[k]) {
      g_flush_kind.store(k);
      return info.Env().Undefined();
    }
  }
  throw Napi::TypeError::New(info.Env(), "unknown flush instruction: " + name);
}

// flushInstruction(): the instruction in use.
static Napi::Value FlushInstruction(const Napi::CallbackInfo &info) {
  return Napi::String::New(info.Env(), kFlushNames[g_flush_kind.load()]);
}

// fence(): sfence after a batch of flushes.
static Napi::Value Fence(const Napi::CallbackInfo &info) {
  flush_fence();
  return info.Env().Undefined();
}

// flushBuffer(typedArray): flush the cache lines behind any typed array
// (used by benchmarks for the untracked baseline).
static Napi::Value FlushBuffer(const Napi::CallbackInfo &info) {
  size_t len;
  uint8_t *p = typed_bytes(info, 0, &len);
  flush_range(p, len);
  return info.Env().Undefined();
}

void init_flush(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuFlushFeatures", Napi::Function::New(env, CpuFlushFeatures, "cpuFlushFeatures"));
  exports.Set("setFlushInstruction", Napi::Function::New(env, SetFlushInstruction, "setFlushInstruction"));
  exports.Set("flushInstruction", Napi::Function::New(env, FlushInstruction, "flushInstruction"));
  exports.Set("fence", Napi::Function::New(env, Fence, "fence"));
  exports.Set("flushBuffer", Napi::Function::New(env, FlushBuffer, "flushBuffer"));
}
