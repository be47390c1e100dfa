import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each file runs in its own forked process: the SIGSEGV handler is
    // process-wide, and crash tests must not share a process with others.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
