// Smoke run of `udax bench` (compiled dist, fresh processes): tiny sizes,
// every workload, JSON and SVG checked for shape. Times are never asserted:
// benchmarks are not tests.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CLI = resolve(__dirname, '../dist/cli/udax.js');
const { version } = JSON.parse(readFileSync(resolve(__dirname, '../package.json'), 'utf8')) as { version: string };
const out = mkdtempSync(join(tmpdir(), 'udax-smoke-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function udax(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
}

// processes (four processes a trial) has a smoke run of its own, below.
const WORKLOADS = ['fault', 'sync-dense', 'sync-sparse', 'sync-clean-huge', 'wal', 'btree', 'sync-random-huge', 'threaded'];

interface Row {
  variant: string; medianNs: number; minNs: number; maxNs: number; p5Ns: number; p95Ns: number; samples: number; trials: number; udaxRatio?: number;
  detail?: Record<string, number>;
  baseline?: { workload: string; ratio: number; interval?: [number, number]; companionRatio?: number; companionInterval?: [number, number] };
}
interface Result {
  tool: string;
  options: { file: string };
  workloads: { name: string; op: string; rows: Row[]; skipped: { variant: string; reason: string }[] }[];
  targets: { name: string; limit: number; applies: boolean; met?: boolean; verdict: string; interval?: [number, number] }[];
}

function checkResult(r: Result, workloads: string[], threads: number) {
  expect(r.tool).toBe('udax bench');
  expect(r.workloads.map((w) => w.name)).toEqual(workloads);
  for (const w of r.workloads) {
    const variants = w.rows.map((row) => row.variant);
    expect(variants[0]).toBe('udax');
    // every workload has a baseline; the threaded one's syncing thread cannot
    // use raw; processes' is threaded's row of the same variant
    if (w.name === 'processes') checkAcrossProcesses(w, r.workloads.find((x) => x.name === 'threaded')!);
    else expect(variants).toContain(w.name === 'threaded' ? 'flush-all' : 'raw');
    for (const row of w.rows) {
      expect(row.trials).toBe(1);
      expect(row.samples).toBeGreaterThanOrEqual(5 * threads);
      for (const v of [row.medianNs, row.minNs, row.maxNs, row.p5Ns, row.p95Ns]) expect(Number.isFinite(v) && v >= 0).toBe(true);
      const ordered = [row.minNs, row.p5Ns, row.medianNs, row.p95Ns, row.maxNs];
      expect(ordered).toEqual([...ordered].sort((a, b) => a - b));
      expect(Number.isFinite(row.udaxRatio)).toBe(true);
    }
    for (const s of w.skipped) expect(s.reason.length).toBeGreaterThan(0);
  }
  expect(r.targets.map((t) => t.name)).toEqual(['fault', 'fault-sigsegv', 'sync-dense', 'sync-sparse', 'sync-sparse-sigsegv',
    'sync-random-huge', 'sync-clean-huge', 'threaded-stores', 'threaded-syncs']);
  for (const t of r.targets) {
    expect(['met', 'missed', 'inconclusive', 'n/a', 'not measured']).toContain(t.verdict);
    if (t.interval) expect(t.interval[0]).toBeLessThanOrEqual(t.interval[1]);
  }
}

/** The processes rows: the cross-process trackers, each with its ratio to
 * the threaded row of its variant (and, where both syncers synced, theirs),
 * and a syncer that ran in its own process. */
function checkAcrossProcesses(w: Result['workloads'][number], threaded: Result['workloads'][number]) {
  expect(w.rows.map((row) => row.variant)).toEqual(['udax', 'udax-sigsegv', 'udax-sigbus'].filter((v) => threaded.rows.some((t) => t.variant === v)));
  for (const row of w.rows) {
    const base = threaded.rows.find((t) => t.variant === row.variant)!;
    expect(row.baseline).toMatchObject({ workload: 'threaded', ratio: row.medianNs / base.medianNs });
    expect(row.baseline!.interval![0]).toBeLessThanOrEqual(row.baseline!.interval![1]);
    if (row.baseline!.companionRatio !== undefined) expect(row.baseline!.companionInterval![0]).toBeLessThanOrEqual(row.baseline!.companionInterval![1]);
    expect(row.detail!.syncerSyncs).toBe(row.detail!.syncs);  // the table's syncs: all the third process's
  }
}

/** Scratch files of the bench process pid (named after it). */
const leftovers = (pid: number) => [...readdirSync('/dev/shm'), ...readdirSync(tmpdir())].filter((n) => n.startsWith(`udax-bench-${pid}`));

describe('udax bench (smoke)', () => {
  it('runs every workload with tiny sizes, prints the table, writes valid JSON and SVG, leaves no scratch file', () => {
    const json = join(out, 'r.json');
    const chart = join(out, 'r.svg');
    const r = udax('bench', '--workload', WORKLOADS.join(','), '--size', '1M', '--huge', '64M', '--repeat', '1', '--time', '5', '--json', json, '--chart', chart);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    for (const w of WORKLOADS) expect(r.stdout).toContain(w);
    expect(r.stdout).toMatch(/targets \(same run\)/);
    const result = JSON.parse(readFileSync(json, 'utf8')) as Result;
    checkResult(result, WORKLOADS, 1);
    expect(existsSync(result.options.file)).toBe(false);
    expect(leftovers(r.pid!)).toEqual([]);
    const svg = readFileSync(chart, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    for (const w of WORKLOADS) expect(svg).toContain(`>${w}<`);
    expect(svg).toContain('whiskers: 5th–95th percentile');
    // --huge 64M is not the target's 16 GiB: that target does not apply
    expect(result.targets.find((t) => t.name === 'sync-clean-huge')).toMatchObject({ applies: false });
    expect(r.stdout).toMatch(/^ {2}n\/a +sync of a 16 GiB sparse file/m);
  }, 60_000);

  it('runs with two writer threads', () => {
    const json = join(out, 't.json');
    const r = udax('bench', '--workload', 'fault,wal', '--threads', '2', '--size', '2M', '--huge', '64M', '--repeat', '1', '--time', '5', '--json', json);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const result = JSON.parse(readFileSync(json, 'utf8')) as Result;
    checkResult(result, ['fault', 'wal'], 2);
    // the targets are set for one writer (the threaded ones for their own two): n/a, never MISSED
    for (const t of result.targets.filter((x) => !x.name.startsWith('threaded'))) expect([t.applies, t.met, t.verdict]).toEqual([false, undefined, 'n/a']);
    expect(r.stdout).not.toMatch(/MISSED/);
    expect(r.stdout.match(/^ {2}n\/a /gm)).toHaveLength(7);
  }, 60_000);

  it('runs processes with its baseline, threaded, and prints each row against it', () => {
    const json = join(out, 'p.json');
    const r = udax('bench', '--workload', 'processes', '--size', '1M', '--repeat', '1', '--time', '5', '--json', json);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    checkResult(JSON.parse(readFileSync(json, 'utf8')) as Result, ['threaded', 'processes'], 1);
    expect(r.stdout).toMatch(/^against the same work in one process \(same run\):\n {2}processes \/ udax ÷ threaded \/ udax: store [\d.]+× \[95% CI /m);
    expect(leftovers(r.pid!)).toEqual([]);
  }, 60_000);

  it('rejects bad arguments with a message and exit code 2', () => {
    for (const args of [['bench', '--size', '12Q'], ['bench', '--workload', 'nope'], ['bench', '--entry', '8k'],
      ['bench', '--threads', '0'], ['bench', '--chart', 'x.png'], ['bench', '--frobnicate'], ['launch']]) {
      const r = udax(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^udax: .+/);
      expect(r.stdout).toBe('');
    }
    // Paths are checked before the run: fails at once, creates nothing.
    for (const args of [['--disk-dir', '/nonexistent-udax'], ['--disk-dir', CLI], ['--json', '/nonexistent-udax/r.json'], ['--chart', `${CLI}/r.svg`]]) {
      const started = Date.now();
      const r = udax('bench', ...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^udax: ${args[0]}: .*(does not exist|is not a directory)`));
      expect(r.stdout).toBe('');
      expect(Date.now() - started).toBeLessThan(5000);
      expect(leftovers(r.pid!)).toEqual([]);
    }
    // --file must not exist: the bench writes into it.
    const taken = udax('bench', '--file', CLI, '--workload', 'fault');
    expect(taken.status).toBe(1);
    expect(taken.stderr).toMatch(/exists/);
  });

  it('has --help on every command', () => {
    for (const args of [['--help'], ['bench', '--help'], ['crash', '--help'], ['info', '--help']]) {
      const r = udax(...args);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^usage: udax/);
    }
  });

  it('udax info reports flush instructions, the file system and limits', () => {
    const r = udax('info', '/dev/shm', '--json');
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(['clwb', 'clflushopt', 'clflush', 'none']).toContain(info.flush.instruction);
    expect(info.path.kind).toBe('tmpfs');
    expect(typeof info.kernel.maxMapCount).toBe('number');
    expect(info.version).toBe(version);
    expect(info.path.space.free).toBeGreaterThan(0);
    expect(info.udax.trackers.available.sigsegv.available).toBe(true);
    expect(['async', 'sigsegv']).toContain(info.udax.trackers.default);
    const text = udax('info', '/dev/shm/udax-not-yet/file').stdout;
    expect(text).toMatch(/vm\.max_map_count/);
    expect(text).toMatch(/fault tracking: +(async|sigsegv) \(UDAX_TRACKER=/);
    expect(text).toContain(`udax:               ${version}`);
    expect(text).toMatch(/space: +[\d.]+ GiB free of [\d.]+ GiB \(in \/dev\/shm\)/);
  });

  it('udax --version and -V print the version from package.json', () => {
    for (const flag of ['--version', '-V']) {
      const r = udax(flag);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(`${version}\n`);
    }
  });
});

describe('target verdicts come from a bootstrap interval', () => {
  it('an interval straddles 1 for the same distribution, and excludes it for one twice as slow', async () => {
    const { ratioInterval } = await import('../dist/bench/stats.js');
    const { mulberry32 } = await import('udax/testing');
    const noise = mulberry32(7);
    const trials = (scale: number) => [0, 1, 2].map(() => Array.from({ length: 300 }, () => scale * (100 + 20 * noise())));
    const same = ratioInterval(trials(1), trials(1), mulberry32(1))!;
    expect(same[0]).toBeLessThan(1);
    expect(same[1]).toBeGreaterThan(1);
    const slower = ratioInterval(trials(2), trials(1), mulberry32(1))!;
    expect(slower[0]).toBeGreaterThan(1.8);
    expect(slower[1]).toBeLessThan(2.2);
  });
});

describe('bench/volume-states.ts (volume crash-state cost)', () => {
  it('runs, and a state writes the same bytes whatever the file size', () => {
    const script = resolve(__dirname, '../dist/bench/volume-states.js');
    const r = spawnSync(process.execPath, [script, '--rounds', '5', '--trials', '1', '--sizes', '1,8'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    const json = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      rows: { size: number; dirtyUnits: number; smallFiles: number; bytesPerState: number; medianStateNs: number }[];
      target: { name: string; verdict: string };
    };
    expect(json.rows.map((x) => [x.size / 2 ** 20, x.dirtyUnits, x.smallFiles])).toEqual([[1, 4, 10], [1, 64, 10], [8, 4, 10], [8, 64, 10], [8, 4, 1000]]);
    for (const dirty of [4, 64]) {
      const bytes = json.rows.filter((x) => x.dirtyUnits === dirty).map((x) => x.bytesPerState);
      expect(new Set(bytes).size).toBe(1);
      expect(bytes[0]).toBeLessThanOrEqual(dirty * 64 + 64);
    }
    expect(json.target).toMatchObject({ name: 'volume-state-256M', verdict: 'not measured' });
  });
});

describe('bench/many-files.ts (fault and open cost with many files open)', () => {
  it('runs a row per tracker this process can run, with the VMAs a file costs', () => {
    const script = resolve(__dirname, '../dist/bench/many-files.js');
    const r = spawnSync(process.execPath, [script, '--files', '300', '--trials', '1'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    const json = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      files: number; rows: { tracker: string; medianFaultOneFileNs: number; medianFaultManyFilesNs: number; vmasPerFile: number }[]; skipped: { tracker: string }[];
    };
    expect(json.files).toBe(300);
    expect([...json.rows.map((x) => x.tracker), ...json.skipped.map((x) => x.tracker)].sort()).toEqual(['async', 'sigbus', 'sigsegv']);
    for (const row of json.rows) {
      expect(row.medianFaultOneFileNs).toBeGreaterThan(0);
      expect(row.medianFaultManyFilesNs).toBeGreaterThan(0);
      expect(row.vmasPerFile).toBeGreaterThanOrEqual(3);  // the file's whole-file mapping, its media's, the bench's
    }
  });
});

describe('bench/crash-points.ts (states/s with 1 and 2 workers)', () => {
  it('runs both rows over the same states', () => {
    const script = resolve(__dirname, '../dist/bench/crash-points.js');
    const r = spawnSync(process.execPath, [script, '--trials', '1', '--k', '2'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    const json = JSON.parse(r.stdout.trim().split('\n').pop()!) as { rows: { workers: number; points: number; states: number; medianStatesPerSecond: number }[] };
    expect(json.rows.map((x) => x.workers)).toEqual([1, 2]);
    expect(json.rows[0].points).toBe(16);
    expect(json.rows[1].states).toBe(json.rows[0].states);
    for (const row of json.rows) expect(row.medianStatesPerSecond).toBeGreaterThan(0);
  });
});
