import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const dist = (file: string) => fileURLToPath(new URL(`./dist/src/${file}`, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests import the built package by its name, as a user does.
    alias: [
      { find: /^udax$/, replacement: dist('index.js') },
      { find: /^udax\/testing$/, replacement: dist('testing.js') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    // Each file runs in its own forked process: the SIGSEGV handler is
    // process-wide, and crash tests must not share a process with others.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
