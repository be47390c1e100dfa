// Fault tracking behind one small interface. The SIGSEGV tracker is the
// faithful one (a write fault per page per sync epoch); a userfaultfd tracker
// could sit beside it without touching writeback, which only sees entry tags.
import { udaxError } from './errors.js';
import { native } from './native.js';
import { activeVmaPolicy, nearVmaBudget } from './vma.js';

export interface FaultTracker {
  readonly name: string;
  /** Make sure faults on protected pages of tracked mappings reach us. */
  ensureInstalled(): void;
  /** Throw if tracking is broken (so no store can fault forever). */
  check(path: string): void;
  /** True when the tracker's own resources (VMAs) call for early writeback. */
  wantsEarlyWriteback(): boolean;
}

class SigsegvTracker implements FaultTracker {
  readonly name = 'sigsegv';
  #installed = false;

  ensureInstalled(): void {
    if (this.#installed) return;
    activeVmaPolicy();  // before the first tracked mapping can fault
    native.installFaultHandler();
    this.#installed = true;
  }

  wantsEarlyWriteback(): boolean {
    return nearVmaBudget();
  }

  check(path: string): void {
    if (!native.faultHandlerIsOurs()) {
      throw udaxError('ERR_UDAX_HANDLER_REPLACED',
        'the SIGSEGV handler is no longer udax\'s (was process.on(\'SIGSEGV\') called?); stores to write-protected pages would fault forever:',
        { syscall: 'sigaction', path });
    }
  }
}

export const tracker: FaultTracker = new SigsegvTracker();
