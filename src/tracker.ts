// Fault tracking behind one small interface. The SIGSEGV tracker is the
// faithful one (a write fault per page per sync epoch); a userfaultfd tracker
// could sit beside it without touching writeback, which only sees entry tags.
import { readFileSync } from 'node:fs';
import { DaxError } from './errors.js';
import { native } from './native.js';

export interface FaultTracker {
  readonly name: string;
  /** Make sure faults on protected pages of tracked mappings reach us. */
  ensureInstalled(): void;
  /** Throw if tracking is broken (so no store can fault forever). */
  check(path: string): void;
  /** True when udax's writable islands have used 3/4 of the VMA budget. */
  nearVmaBudget(): boolean;
}

/** Estimated VMAs udax may add before faults coarsen to 2 MiB blocks: half
 * of vm.max_map_count, leaving the rest to Node, V8 and malloc. */
export function defaultVmaBudget(env: NodeJS.ProcessEnv = process.env): number {
  const forced = Number(env.UDAX_VMA_BUDGET);
  if (Number.isInteger(forced) && forced > 0) return forced;
  try {
    return Math.floor(Number(readFileSync('/proc/sys/vm/max_map_count', 'utf8')) / 2);
  } catch {
    return 32765;
  }
}

class SigsegvTracker implements FaultTracker {
  readonly name = 'sigsegv';
  private installed = false;

  ensureInstalled(): void {
    if (this.installed) return;
    native.installFaultHandler();
    native.setVmaBudget(defaultVmaBudget());
    this.installed = true;
  }

  nearVmaBudget(): boolean {
    const { used, budget } = native.vmaUsage();
    return used * 4 >= budget * 3;
  }

  check(path: string): void {
    if (!native.faultHandlerIsOurs()) {
      throw new DaxError(
        'ERR_UDAX_HANDLER_REPLACED: the SIGSEGV handler is no longer udax\'s (was process.on(\'SIGSEGV\') called?); ' +
          'stores to write-protected pages would fault forever',
        { code: 'ERR_UDAX_HANDLER_REPLACED', syscall: 'sigaction', path },
      );
    }
  }
}

export const tracker: FaultTracker = new SigsegvTracker();
