// The trial runner: every (workload, variant) pair runs `repeat` times, each
// time in a fresh `node` process, interleaved so that machine noise spreads
// over all rows alike. Scratch files are created by the trials and removed by
// them; the runner removes any a crashed trial left behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync, statfsSync } from 'node:fs';
import { release, tmpdir, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { flushChoice } from '../src/index.js';
import { fileSystemName, mulberry32, TMPFS_MAGIC } from '../src/testing.js';
import { Progress } from './progress.js';
import { ratioInterval, summarize } from './stats.js';
import { evaluateTargets, type TargetResult } from './targets.js';
import type { TrialResult, TrialSpec } from './trial.js';
import { mmapIoProblem, VARIANT_INFO, variantProblem, type VariantName } from './variants.js';
import { WORKLOADS, type Workload } from './workloads.js';

const MMAP_IO_LIMIT = 2 ** 31 - 1;

export interface BenchOptions {
  /** Scratch file for udax and the untracked baselines (must not exist). */
  file?: string;
  /** Directory on a disk file system for the msync-disk row. */
  diskDir?: string;
  size: number;
  hugeSize: number;
  workloads: readonly string[];
  entrySize: number;
  threads: number;
  repeat: number;
  /** Measuring time per trial, after warm-up. */
  budgetMs: number;
  /** Variants to run (default: all). */
  variants?: readonly VariantName[];
}

export interface Row {
  variant: VariantName;
  description: string;
  trials: number;
  samples: number;
  medianNs: number;
  minNs: number;
  maxNs: number;
  /** 5th and 95th percentiles of the samples. */
  p5Ns: number;
  p95Ns: number;
  /** udax's median divided by this row's: above 1, udax is slower. */
  udaxRatio?: number;
  /** udax's own counters, averaged over trials (udax row only). */
  detail?: Record<string, number>;
  /** The median of the companion's samples (the syncer's sync latency). */
  companionMedianNs?: number;
  /** Against the workload's baseline workload (same variant, same run). */
  baseline?: BaselineRatio;
}

export interface BaselineRatio {
  workload: string;
  /** This row's median ÷ the baseline row's, with its 95% confidence interval. */
  ratio: number;
  interval?: [number, number];
  /** The same for the companions' samples. */
  companionRatio?: number;
  companionInterval?: [number, number];
}

export interface WorkloadResult {
  name: string;
  summary: string;
  op: string;
  fileSize: number;
  rows: Row[];
  skipped: { variant: VariantName; reason: string }[];
}

export interface BenchResult {
  tool: 'udax bench';
  version: 1;
  date: string;
  machine: { cpu: string; cores: number; kernel: string; node: string; flushInstruction: string; fileSystem: string };
  options: BenchOptions & { file: string };
  workloads: WorkloadResult[];
  targets: TargetResult[];
}

const here = dirname(fileURLToPath(import.meta.url));
const TRIAL_SCRIPT = join(here, 'trial.js');

export function isTmpfs(path: string): boolean {
  try {
    return statfsSync(path).type === TMPFS_MAGIC;
  } catch {
    return false;
  }
}

function fsName(path: string): string {
  try {
    return fileSystemName(statfsSync(path).type);
  } catch {
    return 'unknown';
  }
}

interface Plan {
  workload: Workload;
  variants: VariantName[];
  skipped: { variant: VariantName; reason: string }[];
}

/** The workloads to run: the selected ones, each preceded by its baseline
 * workload when that was not selected (WORKLOADS order otherwise kept). */
export function withBaselines(names: readonly string[]): string[] {
  const out: string[] = [];
  for (const name of names) {
    const base = WORKLOADS.find((w) => w.name === name)?.baseline;
    if (base && !names.includes(base) && !out.includes(base)) out.push(base);
    out.push(name);
  }
  return out;
}

/** Which rows run, which are skipped and why. */
function plan(o: BenchOptions, paths: ScratchPaths): Plan[] {
  const mmapIo = mmapIoProblem();
  return withBaselines(o.workloads).map((name) => {
    const workload = WORKLOADS.find((w) => w.name === name)!;
    const variants: VariantName[] = [];
    const skipped: Plan['skipped'] = [];
    for (const v of o.variants ?? (Object.keys(VARIANT_INFO) as VariantName[])) {
      const why = workload.skip?.[v]
        ?? (!workload.variants.includes(v) ? 'not part of this workload' : undefined)
        ?? (v === 'mmap-io' ? mmapIo : undefined)
        ?? variantProblem(v)
        ?? (v === 'mmap-io' && workload.fileSize(o) > MMAP_IO_LIMIT
          ? '@riaskov/mmap-io passes size and offset as 32-bit ints: it cannot map a file past 2 GiB' : undefined)
        ?? ((v === 'msync-tmpfs' || v === 'mmap-io') && !paths.tmpfs ? 'no tmpfs directory (/dev/shm) here' : undefined)
        ?? (v === 'msync-disk' && !paths.disk ? 'no disk directory: pass --disk-dir DIR (os.tmpdir() is on tmpfs)' : undefined);
      if (why === 'not part of this workload') continue;
      if (why) skipped.push({ variant: v, reason: why });
      else variants.push(v);
    }
    return { workload, variants, skipped };
  });
}

interface ScratchPaths {
  main: string;
  tmpfs?: string;
  disk?: string;
}

function scratchPaths(o: BenchOptions): ScratchPaths {
  const tag = `udax-bench-${process.pid}`;
  const main = o.file ?? join('/dev/shm', tag);
  const tmpfs = isTmpfs('/dev/shm') ? join('/dev/shm', `${tag}.msync`) : undefined;
  const diskDir = o.diskDir ?? tmpdir();
  const disk = o.diskDir !== undefined || !isTmpfs(diskDir) ? join(diskDir, `${tag}.disk`) : undefined;
  return { main, tmpfs, disk };
}

function pathFor(variant: VariantName, paths: ScratchPaths): string {
  if (variant === 'msync-tmpfs' || variant === 'mmap-io') return paths.tmpfs!;
  if (variant === 'msync-disk') return paths.disk!;
  return paths.main;
}

let running: ChildProcess | undefined;

function runTrial(spec: TrialSpec): Promise<TrialResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TRIAL_SCRIPT, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
    running = child;
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      running = undefined;
      if (code === 0) {
        try {
          resolve(JSON.parse(out) as TrialResult);
        } catch {
          reject(new Error(`trial ${spec.workload}/${spec.variant} printed no result`));
        }
      } else {
        const last = err.trim().split('\n').slice(0, 3).join('\n  ');
        reject(new Error(`trial ${spec.workload}/${spec.variant} failed (${signal ?? `exit ${code}`}):\n  ${last}`));
      }
    });
  });
}

/** Run the benchmark; returns the results (the caller prints them). */
export async function runBench(o: BenchOptions, progressStream?: NodeJS.WriteStream): Promise<BenchResult> {
  const paths = scratchPaths(o);
  for (const p of [paths.main, paths.tmpfs, paths.disk]) {
    if (p && existsSync(p)) throw new Error(`${p} exists: udax bench writes into its scratch files, so give a path that does not exist`);
  }
  const mainDir = dirname(paths.main);
  if (!existsSync(mainDir)) throw new Error(`--file: directory ${mainDir} does not exist`);
  const plans = plan(o, paths);
  const total = plans.reduce((n, p) => n + p.variants.length, 0) * o.repeat;
  const progress = new Progress(total, progressStream);
  const results = new Map<string, TrialResult[]>();
  const cleanup = () => {
    for (const p of [paths.main, paths.tmpfs, paths.disk]) if (p) rmSync(p, { force: true });
  };
  const onSignal = (sig: NodeJS.Signals) => {
    running?.kill('SIGKILL');
    cleanup();
    progress.finish();
    process.stderr.write(`udax bench: interrupted (${sig}); scratch files removed\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    for (let r = 0; r < o.repeat; r++) {
      for (const p of plans) {
        for (const variant of p.variants) {
          progress.step(`${p.workload.name} ${variant} (trial ${r + 1}/${o.repeat})`);
          const spec: TrialSpec = {
            workload: p.workload.name, variant, threads: o.threads, path: pathFor(variant, paths),
            size: p.workload.fileSize(o), entrySize: o.entrySize, budgetMs: o.budgetMs, seed: 12345 + r,
          };
          const result = await runTrial(spec);
          const key = `${p.workload.name}/${variant}`;
          results.set(key, [...(results.get(key) ?? []), result]);
          progress.tick();
        }
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    progress.finish();
    cleanup();
  }

  const workloads: WorkloadResult[] = plans.map((p) => {
    const rows: Row[] = p.variants.map((variant) => {
      const trials = results.get(`${p.workload.name}/${variant}`) ?? [];
      const s = summarize(trials.flatMap((t) => t.samples));
      const details = trials.map((t) => t.detail).filter((d): d is Record<string, number> => d !== undefined);
      const detail = details.length
        ? Object.fromEntries(Object.keys(details[0]).map((k) => [k, details.reduce((a, d) => a + d[k], 0) / details.length]))
        : undefined;
      const companion = trials.flatMap((t) => t.companionSamples ?? []);
      return { variant, description: VARIANT_INFO[variant], trials: trials.length, samples: s.count, medianNs: s.medianNs, minNs: s.minNs, maxNs: s.maxNs,
        p5Ns: s.p5Ns, p95Ns: s.p95Ns, detail, ...(companion.length ? { companionMedianNs: summarize(companion).medianNs } : {}) };
    });
    const udax = rows.find((r) => r.variant === 'udax');
    if (udax) for (const r of rows) r.udaxRatio = udax.medianNs / r.medianNs;
    return { name: p.workload.name, summary: p.workload.summary, op: p.workload.op, fileSize: p.workload.fileSize(o), rows, skipped: p.skipped };
  });

  addBaselineRatios(workloads, (w, v) => results.get(`${w}/${v}`) ?? []);

  const cpuModel = cpus()[0]?.model ?? 'unknown';
  return {
    tool: 'udax bench',
    version: 1,
    date: new Date().toISOString(),
    machine: {
      cpu: cpuModel, cores: cpus().length, kernel: release(), node: process.version,
      flushInstruction: flushChoice().instruction, fileSystem: fsName(mainDir),
    },
    options: { ...o, file: paths.main },
    workloads,
    targets: evaluateTargets(workloads, o, (w, v) => results.get(`${w}/${v}`)?.map((t) => t.samples)),
  };
}

/** Each row of a workload with a baseline workload, against that
 * workload's row of the same variant: the ratio of medians with a bootstrap
 * 95% interval (bench/stats.ts), for the samples and the companion's. */
function addBaselineRatios(workloads: WorkloadResult[], trialsOf: (workload: string, variant: VariantName) => TrialResult[]): void {
  const random = mulberry32(0xba5e);
  for (const w of workloads) {
    const base = WORKLOADS.find((x) => x.name === w.name)?.baseline;
    const baseRows = workloads.find((x) => x.name === base)?.rows;
    if (!base || !baseRows) continue;
    for (const r of w.rows) {
      const b = baseRows.find((x) => x.variant === r.variant);
      if (!b) continue;
      const mine = trialsOf(w.name, r.variant);
      const theirs = trialsOf(base, r.variant);
      const companion = r.companionMedianNs !== undefined && b.companionMedianNs !== undefined ? {
        companionRatio: r.companionMedianNs / b.companionMedianNs,
        companionInterval: ratioInterval(mine.map((t) => t.companionSamples ?? []), theirs.map((t) => t.companionSamples ?? []), random),
      } : {};
      r.baseline = {
        workload: base, ratio: r.medianNs / b.medianNs,
        interval: ratioInterval(mine.map((t) => t.samples), theirs.map((t) => t.samples), random), ...companion,
      };
    }
  }
}
