// The third pass of `npm test`: the suite again with UDAX_TRACKER=sigbus
// (tmpfs files only; tests that need a disk file or another tracker skip and
// say why), without the tests that do not depend on the tracker. Where this
// process cannot run the sigbus tracker, only test/39-sigbus runs, and its
// skip says why.
import { spawnSync } from 'node:child_process';
import { defineConfig, mergeConfig } from 'vitest/config';
import sigsegv from './vitest.sigsegv.config.ts';

const probe = spawnSync(process.execPath, ['--input-type=module', '-e',
  `import { sigbusTrackerAvailability } from './dist/src/testing.js'; console.log(JSON.stringify(sigbusTrackerAvailability()));`],
  { encoding: 'utf8', cwd: new URL('.', import.meta.url).pathname });
const available = probe.status === 0 && JSON.parse(probe.stdout).available === true;
if (!available) console.warn(`UDAX_TRACKER=sigbus pass: the sigbus tracker is unavailable here (${probe.stdout.trim() || probe.stderr.trim()}); running test/39-sigbus only`);

const config = mergeConfig(sigsegv, defineConfig({ test: { env: { UDAX_TRACKER: 'sigbus' } } }));
if (!available) config.test!.include = ['test/39-sigbus.test.ts'];  // replaced: mergeConfig would append

export default config;
