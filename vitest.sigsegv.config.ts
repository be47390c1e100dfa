// The second pass of `npm test`: the suite again with UDAX_TRACKER=sigsegv,
// without the tests that do not depend on the tracker (the model check,
// docs, package, bench smoke: the first pass ran them).
import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.ts';

export default mergeConfig(base, defineConfig({
  test: {
    exclude: ['test/50-*.test.ts', 'test/70-*.test.ts', 'test/80-*.test.ts', 'test/85-*.test.ts', 'test/90-*.test.ts'],
    env: { UDAX_TRACKER: 'sigsegv' },
  },
}));
