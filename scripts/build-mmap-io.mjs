// Development checkout only (run by `prepare`): builds the optional
// @riaskov/mmap-io bench baseline from source. package.json's allowScripts
// denies its own install script, whose node-pre-gyp would first try to
// download a binary from GitHub. Never fails the install: without it,
// `udax bench` skips the mmap-io rows and says why.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

const require = createRequire(import.meta.url);
let dir;
try {
  dir = dirname(require.resolve('@riaskov/mmap-io/package.json'));
} catch {
  process.exit(0);  // not installed (npm install --omit=dev): nothing to do
}
try {
  require('@riaskov/mmap-io');
  process.exit(0);  // already built
} catch {
  // build it below
}
const preGyp = createRequire(`${dir}/`).resolve('@mapbox/node-pre-gyp/bin/node-pre-gyp');
const r = spawnSync(process.execPath, [preGyp, 'rebuild', '--build-from-source', '--loglevel=error'], { cwd: dir, encoding: 'utf8' });
if (r.status !== 0) {
  const why = (r.stderr || r.stdout || String(r.error)).trim().split('\n').slice(-3).join(' / ');
  process.stdout.write(`udax: the optional @riaskov/mmap-io bench baseline did not build (${why}); udax bench will skip its rows\n`);
}
