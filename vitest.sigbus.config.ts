// The third pass of `npm test`: the suite again with UDAX_TRACKER=sigbus
// (tmpfs files only; tests that need a disk file or another tracker skip
// and say why), without the tests that do not depend on the tracker.
import { defineConfig, mergeConfig } from 'vitest/config';
import sigsegv from './vitest.sigsegv.config';

export default mergeConfig(sigsegv, defineConfig({
  test: {
    env: { UDAX_TRACKER: 'sigbus' },
  },
}));
