// Where a udax sync's time goes (no perf here: timers around phases).
// For the dirty patterns of sync-dense, sync-sparse and sync-clean-huge it
// times, in one process: the whole udax sync; the same pages write-protected
// (one mprotect per contiguous run, as mkcleanFlush does) and flushed through
// a bare region; and udax's JS bookkeeping alone (tagging).
//   node dist/bench/breakdown.js [hugeBytes]
import { rmSync } from 'node:fs';
import { open } from '../src/index.js';
import { fence, flushBytes, mapBare, tagForWriteback, writeProtect } from '../src/testing.js';
import { summarize } from './stats.js';
import { formatBytes, formatNs, parseSize } from './units.js';
import { pageRuns } from './variants.js';

const PAGE = 4096;
const now = () => Number(process.hrtime.bigint());
const path = `/dev/shm/udax-breakdown-${process.pid}`;

function pattern(name: string, size: number, pages: number[], rounds: number): string[] {
  rmSync(path, { force: true });
  const f = open(path, { create: true, size });
  const m = f.map();
  const bare = mapBare(f);
  const view = (which: 'udax' | 'bare', p: number) => (which === 'udax' ? m : bare).view(p * PAGE, PAGE);
  const uViews = pages.map((p) => view('udax', p));
  const bViews = pages.map((p) => view('bare', p));
  const runs = pageRuns(pages);
  const t = { sync: [] as number[], tag: [] as number[], mprotect: [] as number[], flush: [] as number[] };
  try {
    for (let r = 0; r < rounds + 2; r++) {
      for (const v of uViews) v.fill(r);
      let t0 = now();
      f.sync();
      const sync = now() - t0;
      // Tagging of a clean table costs what the scan costs (nothing to tag).
      t0 = now();
      tagForWriteback(f, 0, Math.ceil(size / PAGE) - 1);
      const tag = now() - t0;
      for (const v of bViews) v.fill(r);
      t0 = now();
      for (const [first, count] of runs) writeProtect(bare, first, first + count - 1);
      const mprotect = now() - t0;
      t0 = now();
      for (const v of bViews) flushBytes(v);
      fence();
      const flush = now() - t0;
      if (r >= 2) {
        t.sync.push(sync);
        t.tag.push(tag);
        t.mprotect.push(mprotect);
        t.flush.push(flush);
      }
    }
  } finally {
    f.close();
    rmSync(path, { force: true });
  }
  const med = (a: number[]) => summarize(a).medianNs;
  const rest = med(t.sync) - med(t.mprotect) - med(t.flush);
  return [
    `${name}: ${pages.length} dirty pages in ${runs.length} runs of a ${formatBytes(size)} file`,
    `  udax sync            ${formatNs(med(t.sync)).padStart(9)}`,
    `  mprotect RO per run  ${formatNs(med(t.mprotect)).padStart(9)}  (${formatNs(med(t.mprotect) / runs.length)} per run)`,
    `  clwb + sfence        ${formatNs(med(t.flush)).padStart(9)}  (${formatNs(med(t.flush) / pages.length)} per page)`,
    `  scan of clean table  ${formatNs(med(t.tag)).padStart(9)}  (tag of a clean table, nothing dirty)`,
    `  everything else      ${formatNs(rest).padStart(9)}  (locks, tags, native calls)`,
  ];
}

const huge = process.argv[2] ? parseSize('hugeBytes', process.argv[2]) : 16 * 2 ** 30;
const size = 64 * 2 ** 20;
const lines = [
  ...pattern('sync-dense', size, Array.from({ length: 256 }, (_, k) => 4096 + k), 30),
  ...pattern('sync-sparse', size, Array.from({ length: 256 }, (_, k) => k * 16), 30),
  ...pattern('sync-clean-huge', huge, Array.from({ length: 100 }, (_, k) => k * Math.floor(huge / PAGE / 100)), 30),
];
process.stdout.write(lines.join('\n') + '\n');
