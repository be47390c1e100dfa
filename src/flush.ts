// Which cache-flush instruction writeback uses: chosen once, from CPUID,
// overridable by environment (PMDK's variables are honoured), and reported.
import { DaxError } from './errors.js';
import { native } from './native.js';

export type FlushInstruction = 'clwb' | 'clflushopt' | 'clflush' | 'none';
const INSTRUCTIONS: readonly FlushInstruction[] = ['clwb', 'clflushopt', 'clflush', 'none'];

export interface FlushChoice {
  /** The instruction writeback uses. */
  instruction: FlushInstruction;
  /** What CPUID reports. */
  available: { clwb: boolean; clflushopt: boolean; clflush: boolean };
  /** Why this one: `cpuid`, or the environment variable that decided. */
  reason: string;
}

/** Decide from the CPU's features and the environment (pure: no side effect). */
export function chooseFlushInstruction(
  available: FlushChoice['available'],
  env: NodeJS.ProcessEnv,
): FlushChoice {
  const forced = env.UDAX_FLUSH;
  if (forced !== undefined && forced !== '') {
    if (!INSTRUCTIONS.includes(forced as FlushInstruction)) {
      throw new DaxError(`UDAX_FLUSH=${forced}: expected one of ${INSTRUCTIONS.join(', ')}`, { code: 'EINVAL' });
    }
    const instruction = forced as FlushInstruction;
    if (instruction !== 'none' && !available[instruction]) {
      throw new DaxError(`UDAX_FLUSH=${forced}: this CPU has no ${forced} instruction`, { code: 'ENOTSUP' });
    }
    return { instruction, available, reason: 'UDAX_FLUSH' };
  }
  if (env.PMEM_NO_FLUSH === '1') return { instruction: 'none', available, reason: 'PMEM_NO_FLUSH' };
  const noClwb = env.PMEM_NO_CLWB === '1';
  const noOpt = env.PMEM_NO_CLFLUSHOPT === '1';
  if (available.clwb && !noClwb) return { instruction: 'clwb', available, reason: 'cpuid' };
  const why = noClwb ? 'PMEM_NO_CLWB' : 'cpuid';
  if (available.clflushopt && !noOpt) return { instruction: 'clflushopt', available, reason: why };
  return { instruction: available.clflush ? 'clflush' : 'none', available, reason: noOpt ? 'PMEM_NO_CLFLUSHOPT' : why };
}

let choice: FlushChoice | undefined;

/** The process's flush choice, made (and set in the addon) on first use. */
export function flushChoice(): FlushChoice {
  if (!choice) {
    const made = chooseFlushInstruction(native.cpuFlushFeatures(), process.env);
    native.setFlushInstruction(made.instruction);
    choice = made;
  }
  return choice;
}
