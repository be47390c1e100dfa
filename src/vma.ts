// The VMA policy, in one place. Each isolated writable page of a tracked
// mapping splits its VMA, and the kernel refuses new VMAs at
// vm.max_map_count (mprotect fails with ENOMEM, inside the fault handler).
// udax estimates the VMAs its writable islands add and, against one budget:
//   nearing  (3/4): map and prepareWrite write the file back early, which
//                   write-protects the islands and merges the VMAs back;
//   budget   (1):   a fault on an isolated entry unprotects its whole
//                   aligned 2 MiB block instead (native/fault.cc);
//   whole    (5/4): a fault unprotects its whole mapping.
import { readFileSync } from 'node:fs';
import { native } from './native.js';

export interface VmaPolicy {
  /** Estimated VMAs udax may add before faults coarsen to 2 MiB blocks. */
  budget: number;
  /** From here map and prepareWrite write back early. */
  nearing: number;
  /** From here faults coarsen to their whole mapping. */
  wholeMapping: number;
  /** Why this budget: 'UDAX_VMA_BUDGET', 'vm.max_map_count' or 'default'. */
  reason: string;
}

/** The kernel's default vm.max_map_count, when /proc cannot be read. */
const DEFAULT_MAX_MAP_COUNT = 65530;

/** The policy for a budget: the thresholds are fractions of it. */
export function vmaPolicy(budget: number, reason: string): VmaPolicy {
  return { budget, nearing: Math.floor((budget * 3) / 4), wholeMapping: Math.floor((budget * 5) / 4), reason };
}

/** Half of vm.max_map_count (the rest is Node's, V8's and malloc's), or
 * UDAX_VMA_BUDGET. */
export function defaultVmaPolicy(env: NodeJS.ProcessEnv = process.env): VmaPolicy {
  const forced = Number(env.UDAX_VMA_BUDGET);
  if (Number.isInteger(forced) && forced > 0) return vmaPolicy(forced, 'UDAX_VMA_BUDGET');
  try {
    return vmaPolicy(Math.floor(Number(readFileSync('/proc/sys/vm/max_map_count', 'utf8')) / 2), 'vm.max_map_count');
  } catch {
    return vmaPolicy(DEFAULT_MAX_MAP_COUNT / 2, 'default');
  }
}

let current: VmaPolicy | undefined;

/** Hand the policy to the fault handler (once per process, or to change it). */
export function applyVmaPolicy(policy: VmaPolicy): void {
  native.setVmaPolicy(policy.budget, policy.wholeMapping);
  current = policy;
}

export function activeVmaPolicy(): VmaPolicy {
  if (!current) applyVmaPolicy(defaultVmaPolicy());
  return current!;
}

/** True when udax's writable islands have reached the nearing threshold. */
export function nearVmaBudget(): boolean {
  return native.vmaUsage().used >= activeVmaPolicy().nearing;
}
