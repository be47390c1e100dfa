// What thousands of open files cost: the first-store fault with 1 file open
// against the same with N files open (each mapped and stored into, as an
// engine keeps its segments), and the cost of opening a file as the count
// grows, per tracker, measured in one run.
//   npm install && node dist/bench/many-files.js [--files N] [--trials T] [--trackers async,sigsegv,sigbus] [--dir /dev/shm]
// A trial of a tracker: volume A holds only a probe file; volume B holds N
// files (volume.create + map + one store each: the open cost, timed per
// file) and then a probe file. The probe's first stores into 1,024 fresh
// pages are timed (per 16 pages) in A before the N files exist, then in B;
// trials alternate the trackers so machine noise falls on every row. Ratios (N files / 1 file, and the last
// 1,000 opens / the first 1,000) with a 95% bootstrap interval over trials.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openVolume } from '../src/index.js';
import { asyncTrackerAvailability, mulberry32, sigbusTrackerAvailability } from '../src/testing.js';

type TrackerName = 'async' | 'sigsegv' | 'sigbus';
const availability = (t: TrackerName) => t === 'async' ? asyncTrackerAvailability() : t === 'sigbus' ? sigbusTrackerAvailability() : { available: true, reason: '' };
import { ratioInterval, summarize, type TrialSamples } from './stats.js';
import { formatNs } from './units.js';
import { option } from './options.js';

const FILES = Number(option('files', '10000'));
const trials = Number(option('trials', '3'));
const dir = option('dir', '/dev/shm');
const trackers = option('trackers', 'async,sigsegv,sigbus').split(',') as TrackerName[];
const PAGE = 4096;
const PROBE_PAGES = 1024;
const BATCH = 16;
const EDGE = Math.min(1000, Math.floor(FILES / 2));  // opens compared: the first and the last EDGE

const now = () => Number(process.hrtime.bigint());

/** ns per first store, per batch of BATCH fresh pages of a new probe file. */
function probeFaults(volume: ReturnType<typeof openVolume>, name: string): number[] {
  const bytes = volume.create(name, PROBE_PAGES * PAGE).map().bytes;
  const out: number[] = [];
  for (let p = 0; p < PROBE_PAGES; p += BATCH) {
    const t0 = now();
    for (let k = p; k < p + BATCH; k++) bytes[k * PAGE] = 1;
    out.push((now() - t0) / BATCH);
  }
  return out;
}

interface Row {
  tracker: TrackerName;
  oneFile: number[][];
  manyFiles: number[][];
  /** ns per open (create + map + a store), per trial: the first EDGE and the last EDGE. */
  firstOpens: number[][];
  lastOpens: number[][];
  vmasPerFile: number;
}

function vmaCount(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').length - 1;
}

function trial(row: Row, t: number): void {
  const base = join(dir, `udax-bench-files-${process.pid}-${row.tracker}-${t}`);
  const one = openVolume(`${base}-1`, { create: true, tracker: row.tracker });
  const many = openVolume(`${base}-n`, { create: true, tracker: row.tracker });
  try {
    const oneFile = probeFaults(one, 'probe');  // before the N files exist: one file open (and the volumes)
    const vmas0 = vmaCount();
    const opens: number[] = [];
    for (let d = 0; d < 100; d++) many.mkdir(`d${d}`);
    for (let i = 0; i < FILES; i++) {
      const t0 = now();
      many.create(`d${i % 100}/f${i}`, PAGE).map().bytes[0] = 1;
      opens.push(now() - t0);
    }
    row.vmasPerFile = (vmaCount() - vmas0) / FILES;
    const manyFaults = probeFaults(many, 'probe');
    row.oneFile.push(oneFile);
    row.manyFiles.push(manyFaults);
    row.firstOpens.push(opens.slice(0, EDGE));
    row.lastOpens.push(opens.slice(-EDGE));
  } finally {
    one.close();
    many.close();
    rmSync(`${base}-1`, { recursive: true, force: true });
    rmSync(`${base}-n`, { recursive: true, force: true });
  }
}

const rows: Row[] = [];
const skipped: { tracker: string; reason: string }[] = [];
for (const tracker of trackers) {
  const a = availability(tracker);
  if (!a.available) {
    skipped.push({ tracker, reason: a.reason });
    continue;
  }
  rows.push({ tracker, oneFile: [], manyFiles: [], firstOpens: [], lastOpens: [], vmasPerFile: 0 });
}
for (let t = 0; t < trials; t++) for (const row of rows) trial(row, t);

const random = mulberry32(1);
const median = (s: TrialSamples) => summarize(s.flat()).medianNs;
const ci = (a: TrialSamples, b: TrialSamples) => {
  const r = ratioInterval(a, b, random);
  return r ? `${r[0].toFixed(2)}–${r[1].toFixed(2)}` : 'n/a';
};
console.log(`many files: ${FILES} files (created, mapped, stored into), ${PROBE_PAGES} first stores per probe, ${trials} trials, on ${dir}`);
console.log('tracker   first store, 1 file   with N files   × (95% CI)         open/file, first 1k   last 1k   × (95% CI)         VMAs/file');
const json = rows.map((r) => {
  const f1 = median(r.oneFile), fn = median(r.manyFiles), o1 = median(r.firstOpens), on = median(r.lastOpens);
  const faultCi = ci(r.manyFiles, r.oneFile), openCi = ci(r.lastOpens, r.firstOpens);
  console.log(`${r.tracker.padEnd(8)}  ${formatNs(f1).padStart(19)}  ${formatNs(fn).padStart(13)}   ${(fn / f1).toFixed(2)} (${faultCi})`.padEnd(70) +
    `${formatNs(o1).padStart(10)}  ${formatNs(on).padStart(10)}   ${(on / o1).toFixed(2)} (${openCi})`.padEnd(48) + r.vmasPerFile.toFixed(2));
  return { tracker: r.tracker, medianFaultOneFileNs: f1, medianFaultManyFilesNs: fn, faultRatio: fn / f1, faultRatioInterval: faultCi,
    medianOpenFirstNs: o1, medianOpenLastNs: on, openRatio: on / o1, openRatioInterval: openCi, vmasPerFile: r.vmasPerFile };
});
for (const s of skipped) console.log(`${s.tracker}: skipped (${s.reason})`);
console.log(JSON.stringify({ bench: 'many-files', files: FILES, trials, dir, rows: json, skipped }));
