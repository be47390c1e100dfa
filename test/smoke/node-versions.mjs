// Smoke test of an installed udax on whatever node runs this (.ci/run runs
// it with Node 22 and 24 from the npm registry):
//   node test/smoke/node-versions.mjs PROJECT_DIR
// PROJECT_DIR has udax in node_modules (the packed tarball, installed with
// scripts ignored, so the prebuilt N-API binary is what loads). Loads it
// through require and import, maps, stores, syncs, and takes crash images.
// Exits non-zero, saying what failed, on any difference or warning.
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const project = process.argv[2];
if (!project) {
  console.error('usage: node test/smoke/node-versions.mjs PROJECT_DIR');
  process.exit(2);
}
const warnings = [];
process.on('warning', (w) => warnings.push(`${w.name}: ${w.message}`));

function check(what, ok, detail = '') {
  if (!ok) {
    console.error(`smoke ${process.version}: FAILED: ${what}${detail ? ` (${detail})` : ''}`);
    process.exit(1);
  }
}

const require = createRequire(join(project, 'package.json'));
const entry = require.resolve('udax');
const viaRequire = require('udax');
const viaImport = await import(pathToFileURL(entry).href);
check('require and import give the same open()', viaRequire.open === viaImport.open && typeof viaImport.open === 'function');
const { version } = JSON.parse(readFileSync(join(project, 'node_modules', 'udax', 'package.json'), 'utf8'));

const path = `/dev/shm/udax-smoke-${process.pid}`;
const images = [`${path}.none`, `${path}.all`];
try {
  const file = viaImport.open(path, { create: true, size: 64 * 1024, media: 'shadow' });
  const m = file.map();
  m.bytes.set(new TextEncoder().encode('hello'), 4096);
  check('the store faulted and dirtied one entry', JSON.stringify(file.dirtyRanges()) === '[{"offset":4096,"length":4096}]', JSON.stringify(file.dirtyRanges()));
  file.crashImage(images[0], { units: 'none' });
  file.crashImage(images[1], { units: 'all' });
  const hello = (p) => readFileSync(p).subarray(4096, 4101).toString() === 'hello';
  check('a crash before the sync loses the unsynced store', !hello(images[0]));
  check('a crash that flushed every dirty line keeps it', hello(images[1]));
  const s = file.sync();
  check('sync wrote back one entry', s.entries === 1 && s.bytes === 4096, JSON.stringify(s));
  check('nothing dirty after sync', file.dirtyRanges().length === 0);
  m.bytes[4096] = 0x48;
  // sigsegv sees the store as a second fault; async finds it in the next harvest
  check('a store after sync is tracked again', JSON.stringify(file.dirtyRanges()) === '[{"offset":4096,"length":4096}]', JSON.stringify(file.stats()));
  file.sync();
  file.crashImage(images[0], { units: 'none' });
  check('after sync, a crash keeps the data', readFileSync(images[0])[4096] === 0x48);
  const flush = file.flushInstruction;
  const tracker = file.tracker;
  file.close();
  check('no warning was printed', warnings.length === 0, warnings.join('; '));
  console.log(`smoke ${process.version} (N-API ${process.versions.napi}): udax ${version} loads through require and import; map, store, sync and crash images work; tracker ${tracker}, flush ${flush}`);
} finally {
  for (const p of [path, `${path}.media`, ...images]) rmSync(p, { force: true });
}
