// Module entry: exports the mechanisms and the entry-word constants.
#include "udax.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("LOCKED", UDAX_ENTRY_LOCKED);
  c.Set("DIRTY", UDAX_ENTRY_DIRTY);
  c.Set("TOWRITE", UDAX_ENTRY_TOWRITE);
  c.Set("WAITERS", UDAX_ENTRY_WAITERS);
  c.Set("OWNER_SHIFT", UDAX_ENTRY_OWNER_SHIFT);
  c.Set("OWNER_MASK", (double)UDAX_ENTRY_OWNER_MASK);
  c.Set("FLAGS_MASK", UDAX_ENTRY_FLAGS_MASK);
  c.Set("SUMMARY_SHIFT", UDAX_SUMMARY_SHIFT);
  c.Set("SUMMARY2_SHIFT", UDAX_SUMMARY2_SHIFT);
  Napi::Object stats = Napi::Object::New(env);
  stats.Set("WRITE_FAULTS", (int)UDAX_STAT_WRITE_FAULTS);
  stats.Set("FAULT_NS", (int)UDAX_STAT_FAULT_NS);
  stats.Set("COARSEN_BLOCK", (int)UDAX_STAT_COARSEN_BLOCK);
  stats.Set("COARSEN_MAPPING", (int)UDAX_STAT_COARSEN_MAPPING);
  stats.Set("SYNCS", (int)UDAX_STAT_SYNCS);
  stats.Set("ENTRIES_CLEANED", (int)UDAX_STAT_ENTRIES_CLEANED);
  stats.Set("BYTES_FLUSHED", (int)UDAX_STAT_BYTES_FLUSHED);
  stats.Set("FLUSH_NS", (int)UDAX_STAT_FLUSH_NS);
  stats.Set("PREPARE_WRITES", (int)UDAX_STAT_PREPARE_WRITES);
  stats.Set("EARLY_WRITEBACKS", (int)UDAX_STAT_EARLY_WRITEBACKS);
  stats.Set("COUNT", (int)UDAX_STAT_COUNT);
  c.Set("STATS", stats);
  exports.Set("constants", c);
  init_map(env, exports);
  init_flush(env, exports);
  init_fault(env, exports);
  init_futex(env, exports);
  return exports;
}

NODE_API_MODULE(udax, Init)
