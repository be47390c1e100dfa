// What file.resize costs next to a bare ftruncate of a file of the same size,
// and what a write past the end (append: grow + DAX write) costs next to the
// same write in place, measured in one run, configurations interleaved round
// by round so drift hits them alike.
//   npm install && node dist/bench/resize-cost.js [--rounds N] [--dir /dev/shm]
// Each round: grow by one page then shrink back (each timed), with a tracked
// mapping of the whole 64 MiB file; then append one page with write() and
// overwrite one page in place. Prints a table (median, p10, p90, ratio to
// the baseline's median), then JSON.
import { closeSync, ftruncateSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { open, type DaxFile, type Mapping } from '../src/index.js';
import { option } from './options.js';

const rounds = Number(option('rounds', '2000'));
const dir = option('dir', '/dev/shm');
const SIZE = 64 * 1024 * 1024;
const PAGE = 4096;

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))];
const timed = (samples: number[], fn: () => void) => {
  const t0 = process.hrtime.bigint();
  fn();
  samples.push(Number(process.hrtime.bigint() - t0));
};

const rawPath = join(dir, `udax-resize-cost-${process.pid}-raw`);
const rawFd = openSync(rawPath, 'w+');
ftruncateSync(rawFd, SIZE);
interface Udax { name: string; file: DaxFile; map: Mapping; appendFile: DaxFile; appendAt: number }
const files: Udax[] = (['none', 'shadow'] as const).map((media) => {
  const path = join(dir, `udax-resize-cost-${process.pid}-${media}`);
  const file = open(path, { create: true, size: SIZE, media });
  const appendFile = open(`${path}-append`, { create: true, size: PAGE, media });
  return { name: `media ${media}`, file, map: file.map(), appendFile, appendAt: PAGE };
});
const samples = new Map<string, number[]>();
const add = (name: string) => samples.get(name) ?? (samples.set(name, []), samples.get(name)!);
const page = Buffer.alloc(PAGE, 1);
for (let r = 0; r < rounds; r++) {
  timed(add('ftruncate +1 page (baseline)'), () => ftruncateSync(rawFd, SIZE + PAGE));
  timed(add('ftruncate -1 page (baseline)'), () => ftruncateSync(rawFd, SIZE));
  for (const u of files) {
    timed(add(`resize +1 page, ${u.name}`), () => u.file.resize(SIZE + PAGE));
    timed(add(`resize -1 page, ${u.name}`), () => u.file.resize(SIZE));
    timed(add(`write in place, ${u.name}`), () => u.appendFile.write(page, 0));
    timed(add(`write appending a page, ${u.name}`), () => u.appendFile.write(page, u.appendAt));
    u.appendAt += PAGE;
  }
}
const base = (name: string) => quantile(samples.get(name.includes('-1') ? 'ftruncate -1 page (baseline)' : 'ftruncate +1 page (baseline)')!, 0.5);
const results = [...samples].map(([name, xs]) => {
  const ref = name.startsWith('write appending') ? quantile(samples.get(name.replace('appending a page', 'in place'))!, 0.5)
    : name.startsWith('write in place') ? quantile(xs, 0.5) : base(name);
  return { name, medianNs: quantile(xs, 0.5), p10Ns: quantile(xs, 0.1), p90Ns: quantile(xs, 0.9), ratio: quantile(xs, 0.5) / ref };
});
console.log(`resize cost, ${rounds} rounds, ${dir}, 64 MiB files (ratio: to ftruncate, or an append to the write in place)`);
for (const r of results) {
  console.log(`${r.name.padEnd(40)} ${(r.medianNs / 1000).toFixed(2).padStart(8)} us  p10 ${(r.p10Ns / 1000).toFixed(2).padStart(7)}  p90 ${(r.p90Ns / 1000).toFixed(2).padStart(7)}  x${r.ratio.toFixed(2)}`);
}
console.log(JSON.stringify({ bench: 'resize-cost', rounds, dir, results }));
closeSync(rawFd);
rmSync(rawPath);
for (const u of files) {
  for (const f of [u.file, u.appendFile]) {
    f.close();
    rmSync(f.path, { force: true });
    rmSync(`${f.path}.media`, { force: true });
  }
}
