// What media: 'shadow' costs on sync throughput, next to sync without it,
// measured in one run (configurations interleaved round by round, so drift
// hits them alike).
//   npm install && node dist/bench/media-cost.js [--rounds N] [--dir /dev/shm]
// Each round dirties P random pages of a 64 MiB file (one store each, which
// faults) and syncs; only the sync is timed. Prints a table, then JSON.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { open, type DaxFile, type Mapping, type OpenOptions } from '../src/index.js';
import { mulberry32 } from '../src/testing.js';
import { option } from './options.js';

const rounds = Number(option('rounds', '200'));
const dir = option('dir', '/dev/shm');
const SIZE = 64 * 1024 * 1024;
const PAGE = 4096;
const PAGES = SIZE / PAGE;

const configs: { name: string; opts: Partial<OpenOptions> }[] = [
  { name: 'plain', opts: {} },
  { name: 'shadow', opts: { media: 'shadow' } },
  { name: 'shadow+optane', opts: { media: 'shadow', timing: 'optane' } },
];

interface Run {
  name: string;
  file: DaxFile;
  map: Mapping;
  samples: number[];  // ns per sync
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const random = mulberry32(12345);
function nextPage(): number {
  return Math.floor(random() * PAGES);
}

const results: Record<string, unknown>[] = [];
for (const pagesPerSync of [1, 16, 256]) {
  const runs: Run[] = configs.map((c, i) => {
    const path = join(dir, `udax-bench-media-${process.pid}-${i}`);
    const file = open(path, { create: true, size: SIZE, ...c.opts });
    const map = file.map();
    map.bytes.fill(1);  // populate the page cache, then start clean
    file.sync();
    return { name: c.name, file, map, samples: [] };
  });
  for (let r = 0; r < rounds + 5; r++) {
    const pages = Array.from({ length: pagesPerSync }, nextPage);
    for (const run of runs) {
      const bytes = run.map.bytes;
      for (const p of pages) bytes[p * PAGE + (r & 4095)] = r & 255;
      const t0 = process.hrtime.bigint();
      run.file.sync();
      const dt = Number(process.hrtime.bigint() - t0);
      if (r >= 5) run.samples.push(dt);  // 5 warm-up rounds
    }
  }
  const base = median(runs[0].samples);
  for (const run of runs) {
    const ns = median(run.samples);
    results.push({
      pagesPerSync,
      config: run.name,
      medianSyncUs: +(ns / 1000).toFixed(2),
      syncsPerSec: Math.round(1e9 / ns),
      mbPerSec: +((pagesPerSync * PAGE) / ns * 1000).toFixed(0),
      ratioToPlain: +(ns / base).toFixed(2),
      mediaCopyNsPerPage: Math.round(run.file.stats().persistence.mediaCopyNs / Math.max(1, run.file.stats().persistence.mediaBytes / PAGE)),
    });
    const { path } = run.file;
    run.file.close();
    rmSync(path, { force: true });
    rmSync(`${path}.media`, { force: true });
  }
}

console.log(`media cost: ${rounds} rounds per row, 64 MiB file on ${dir}, sync time only (median)`);
console.log('pages/sync  config          sync µs   syncs/s     MB/s   × plain   copy ns/page');
for (const r of results) {
  console.log(
    `${String(r.pagesPerSync).padStart(10)}  ${String(r.config).padEnd(14)} ${String(r.medianSyncUs).padStart(8)} ${String(r.syncsPerSec).padStart(9)} ${String(r.mbPerSec).padStart(8)} ${String(r.ratioToPlain).padStart(9)} ${String(r.mediaCopyNsPerPage).padStart(14)}`,
  );
}
console.log(JSON.stringify({ bench: 'media-cost', rounds, dir, results }));
