#!/usr/bin/env node
// The udax command: `udax bench` (the benchmark suite), `udax crash` (a
// workload's crash points) and `udax info`.
import { accessSync, existsSync, constants as fsConstants, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { renderChart } from '../bench/chart.js';
import { Progress } from '../bench/progress.js';
import { runBench, type BenchOptions } from '../bench/runner.js';
import { formatTable } from '../bench/table.js';
import { formatBytes, parseCount, parseSize } from '../bench/units.js';
import { mmapIoProblem } from '../bench/variants.js';
import { WORKLOADS } from '../bench/workloads.js';
import { exploreCrashPoints, PAGE_SIZE, PMD_SIZE, systemInfo, version, type CrashPointsReport, type ExploreCrashPointsOptions } from '../src/index.js';

const MAIN_HELP = `usage: udax <command> [options]

commands:
  bench   run the benchmark suite: udax beside raw, flush-all and msync baselines
  crash   run a workload module and check its recovery at every crash point
  info    flush instructions, file system of a path, kernel features and limits

options:
  -V, --version   print udax's version
  -h, --help      this help

Run 'udax <command> --help' for a command's options.
`;

const BENCH_HELP = `usage: udax bench [options]

Runs each workload through udax and through the baselines, every trial in a
fresh node process, and prints median, 5th and 95th percentile, min and max
time per operation with the ratio of udax to each baseline, the ratio of
each processes row to the same work as threads of one process (with a 95%
confidence interval), then the performance targets (n/a where the run's settings are not the targets'
1 thread, 4 KiB entries and 16 GiB --huge). Scratch files are created and
removed. Paths are checked before anything runs.

options:
  --file PATH        scratch file for udax and the untracked baselines; must
                     not exist (default: /dev/shm/udax-bench-<pid>)
  --size BYTES       mapping size for most workloads (default 64M); 4096, 256M, 4G
  --huge BYTES       sparse file size for sync-clean-huge (default 16G)
  --workload NAME    one of ${WORKLOADS.map((w) => w.name).join(', ')}, a comma list, or all (default);
                     a workload measured against another (processes against
                     threaded) runs that one too
  --entry 4k|2m      udax entry size: 4 KiB pages or 2 MiB blocks (default 4k)
  --threads N        writers per trial, each on its own part of the file (default 1)
  --repeat N         fresh processes per row (default 3)
  --time MS          measuring time per trial, after warm-up (default 200)
  --disk-dir DIR     directory on a disk for the msync-disk row (default: the OS
                     temp directory when it is not tmpfs)
  --json FILE        also write the results as JSON
  --chart FILE.svg   also write an SVG chart of the results (whiskers: 5th to
                     95th percentile)
  -h, --help         this help

workloads:
${WORKLOADS.map((w) => `  ${w.name.padEnd(16)} ${w.summary}`).join('\n')}
`;

const CRASH_HELP = `usage: udax crash MODULE [options]

MODULE is an ES module exporting workload(volume), the code under test run on
a fresh udax volume, and recover(dir, info), the check of one crash state: it
returns true (or nothing) to accept the state, false or a string (the
violation's class, e.g. 'lost-commit', 'corrupt') to reject it, or throws
(class: the error's code, else its name). It may export options, the
defaults of exploreCrashPoints (the flags below override them).

udax runs the workload once to count its crash points, then once more per
point, stopped there; it checks recover on the volume's crash states at that
instant and prints a table of the violations (point, metadata model, class,
the minimal operations and units that make it). The workload must make the
same calls on the volume every run (ERR_UDAX_NONDETERMINISTIC otherwise). A
progress bar goes to stderr on a terminal, and so do warnings: a workload that
never syncs, or files it wrote (write, resize) and never fsynced or msynced
after (what an engine does where its runtime makes fdatasync a no-op).

options:
  --at fsync|operation    crash points before and after every fsync, msync
                          and directory fsync (default), or every call
                          (create, unlink, rename, mkdir, rmdir, write,
                          resize, the syncs)
  -k N                    at most N units (data units and operations) per
                          enumerated state (default 1)
  --samples N             also check N seeded random states per point (default 0)
  --seed S                the first random state's seed (default 1)
  --metadata MODEL        ext4/xfs (default), strict-posix or both
  --first                 stop at the first violation (default: every point)
  --workers N             explore N points at once, each in a worker thread
                          that imports MODULE (default 1; this machine has
                          ${availableParallelism()} cores)
  --dir DIR               the volume's directory, which must not exist; states
                          are built at DIR.states (default
                          /dev/shm/udax-crash-<pid>)
  --json FILE             also write the report as JSON
  -h, --help              this help

exit status: 0 no violation, 1 violations found (or the run failed), 2 usage
`;

const INFO_HELP = `usage: udax info [PATH] [--json]

Prints udax's version, the CPU's cache-flush instructions and the one udax
uses, whether PATH (default /dev/shm) is on a DAX mount, tmpfs or a disk and
the space free there (for a PATH that does not exist yet: in its directory),
the kernel features udax can use, and vm.max_map_count. Writes nothing.

options:
  --json       print JSON instead of text
  -h, --help   this help
`;

/** A mistake in the command line: message, usage hint, exit code 2. */
class UsageError extends Error {}

function usage(message: string): never {
  throw new UsageError(message);
}

function parse<T extends Record<string, { type: 'string' | 'boolean'; short?: string }>>(args: string[], options: T, positionals = false) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: positionals });
  } catch (e) {
    usage((e as Error).message);
  }
}

function sized(option: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  try {
    return parseSize(option, text);
  } catch (e) {
    usage((e as Error).message);
  }
}

function counted(option: string, text: string | undefined, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  try {
    return parseCount(option, text, max);
  } catch (e) {
    usage((e as Error).message);
  }
}

/** A whole number in [0, max] from the command line. */
function whole(option: string, text: string, max: number): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!(n <= max)) usage(`${option}: expected an integer in [0, ${max}], got '${text}'`);
  return n;
}

/** A usage error unless dir is an existing directory we may write in. */
function writableDirectory(option: string, dir: string, file?: string): void {
  const what = file === undefined ? `'${dir}'` : `the directory of '${file}' (${dir})`;
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    usage(`${option}: ${what} does not exist`);
  }
  if (!isDir) usage(`${option}: ${what} is not a directory`);
  try {
    accessSync(dir, fsConstants.W_OK);
  } catch {
    usage(`${option}: ${what} is not writable`);
  }
}

async function bench(args: string[]): Promise<number> {
  const { values } = parse(args, {
    file: { type: 'string' }, size: { type: 'string' }, huge: { type: 'string' }, workload: { type: 'string' },
    entry: { type: 'string' }, threads: { type: 'string' }, repeat: { type: 'string' }, time: { type: 'string' },
    'disk-dir': { type: 'string' }, json: { type: 'string' }, chart: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  const entryText = (values.entry ?? '4k').toLowerCase();
  const entrySize = entryText === '4k' ? PAGE_SIZE : entryText === '2m' ? PMD_SIZE : usage(`--entry: expected 4k or 2m, got '${values.entry}'`);
  const threads = counted('--threads', values.threads, 1, 64);
  const size = sized('--size', values.size, 64 * 2 ** 20);
  const hugeSize = sized('--huge', values.huge, 16 * 2 ** 30);
  for (const [name, bytes] of [['--size', size], ['--huge', hugeSize]] as const) {
    if (bytes % entrySize !== 0) usage(`${name}: ${bytes} is not a multiple of the entry size (${formatBytes(entrySize)})`);
    if (bytes < 16 * PAGE_SIZE * threads) usage(`${name}: at least ${formatBytes(16 * PAGE_SIZE * threads)} for ${threads} thread(s)`);
  }
  if (size > 2 ** 40 || hugeSize > 2 ** 46) usage('--size/--huge: too large');
  const names = (values.workload ?? 'all').split(',').map((s) => s.trim()).filter(Boolean);
  const workloads = names.includes('all') ? WORKLOADS.map((w) => w.name) : names;
  for (const n of workloads) {
    if (!WORKLOADS.some((w) => w.name === n)) usage(`--workload: unknown workload '${n}' (expected ${WORKLOADS.map((w) => w.name).join(', ')} or all)`);
  }
  if (values.chart !== undefined && !values.chart.endsWith('.svg')) usage(`--chart: expected a file name ending in .svg, got '${values.chart}'`);
  // Checked now, not after a run of minutes.
  if (values['disk-dir'] !== undefined) writableDirectory('--disk-dir', values['disk-dir']);
  for (const option of ['json', 'chart'] as const) {
    const file = values[option];
    if (file !== undefined) writableDirectory(`--${option}`, dirname(resolve(file)), file);
  }
  const options: BenchOptions = {
    file: values.file, diskDir: values['disk-dir'], size, hugeSize, workloads, entrySize, threads,
    repeat: counted('--repeat', values.repeat, 3, 1000), budgetMs: counted('--time', values.time, 200, 600_000),
  };
  const result = await runBench(options);
  process.stdout.write(formatTable(result));
  if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(result, null, 2) + '\n');
  if (values.chart !== undefined) writeFileSync(values.chart, renderChart(result));
  return 0;
}

/** A JSON form of the report: errors as { name, message, code }. */
function reportJson(report: CrashPointsReport): string {
  return JSON.stringify(report, (_key, value) => (value instanceof Error
    ? { name: value.name, message: value.message, ...((value as { code?: unknown }).code === undefined ? {} : { code: (value as { code?: unknown }).code }) }
    : value), 2) + '\n';
}

/** The violations, one row per point, model and class. */
function violationTable(report: CrashPointsReport): string {
  const rows: string[][] = [['point', 'model', 'class', 'failing states', 'minimal operations', 'minimal units']];
  const groups = new Map<string, CrashPointsReport['violations']>();
  for (const v of report.violations) {
    const key = `${v.metadata}\0${v.point.index}\0${v.class}`;
    groups.set(key, [...(groups.get(key) ?? []), v]);
  }
  for (const vs of groups.values()) {
    const m = vs.find((v) => v.minimal)?.minimal;
    rows.push([`${vs[0].point.index}: ${vs[0].point.description}`, vs[0].metadata, vs[0].class, String(vs.length),
      m ? (m.operations.map((o) => o.description).join(', ') || 'none') : '-',
      m ? (m.units.map((u) => `${u.file}[${u.offset}, ${u.offset + u.length})`).join(', ') || 'none') : '-']);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines = rows.map((r) => r.map((cell, c) => (c === 3 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd());
  lines.splice(1, 0, '-'.repeat(lines[0].length));
  return lines.join('\n') + '\n';
}

async function crash(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    at: { type: 'string' }, k: { type: 'string', short: 'k' }, samples: { type: 'string' }, seed: { type: 'string' },
    metadata: { type: 'string' }, first: { type: 'boolean' }, dir: { type: 'string' }, json: { type: 'string' },
    workers: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  }, true);
  if (values.help) {
    process.stdout.write(CRASH_HELP);
    return 0;
  }
  if (positionals.length !== 1) usage(`crash takes one MODULE, got ${positionals.length}`);
  if (values.at !== undefined && values.at !== 'fsync' && values.at !== 'operation') usage(`--at: expected fsync or operation, got '${values.at}'`);
  const models = ['ext4/xfs', 'strict-posix', 'both'];
  if (values.metadata !== undefined && !models.includes(values.metadata)) usage(`--metadata: expected ${models.join(', ')}, got '${values.metadata}'`);
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (seed !== undefined && !(Number.isInteger(seed) && seed >= -0x80000000 && seed <= 0xffffffff)) usage(`--seed: expected an integer, got '${values.seed}'`);
  const dir = resolve(values.dir ?? `/dev/shm/udax-crash-${process.pid}`);
  for (const path of [dir, `${dir}.states`]) if (existsSync(path)) usage(`--dir: '${path}' exists (udax makes it and removes it)`);
  writableDirectory('--dir', dirname(dir), dir);
  if (values.json !== undefined) writableDirectory('--json', dirname(resolve(values.json)), values.json);
  const modulePath = resolve(positionals[0]);
  if (!existsSync(modulePath)) usage(`MODULE: '${positionals[0]}' does not exist`);
  const mod = await import(pathToFileURL(modulePath).href) as { workload?: unknown; recover?: unknown; options?: unknown };
  for (const name of ['workload', 'recover'] as const) {
    if (typeof mod[name] !== 'function') usage(`MODULE: '${positionals[0]}' exports no function ${name} (it must export workload(volume) and recover(dir, info))`);
  }
  if (mod.options !== undefined && (typeof mod.options !== 'object' || mod.options === null)) usage(`MODULE: its options export must be an object`);
  const opts: ExploreCrashPointsOptions = {
    stop: 'all', ...(mod.options as ExploreCrashPointsOptions | undefined),
    ...(values.at === undefined ? {} : { at: values.at as 'fsync' | 'operation' }),
    ...(values.k === undefined ? {} : { k: whole('-k', values.k, 64) }),
    ...(values.samples === undefined ? {} : { samples: whole('--samples', values.samples, 10_000_000) }),
    ...(seed === undefined ? {} : { seed }),
    ...(values.metadata === undefined ? {} : { metadata: values.metadata as ExploreCrashPointsOptions['metadata'] }),
    ...(values.first ? { stop: 'first' as const } : {}),
    ...(values.workers === undefined ? {} : { workers: counted('--workers', values.workers, 1, 256), module: { path: modulePath } }),
  };
  let lastDraw = 0;
  let bars: Progress | undefined;  // made once the point count is known
  opts.progress = (p) => {
    bars ??= new Progress(p.points * (opts.metadata === 'both' ? 2 : 1));
    const now = Date.now();
    if (now - lastDraw < 100 && p.checked < p.states) return;
    lastDraw = now;
    if (p.checked === p.states) bars.tick();
    bars.step(`point ${p.point + 1}/${p.points} (${p.metadata}): state ${p.checked}/${p.states}`);
  };
  let report: CrashPointsReport;
  try {
    report = await exploreCrashPoints(dir, mod.workload as never, mod.recover as never, { ...opts, dir: `${dir}.states` });
  } finally {
    bars?.finish();
  }
  for (const w of report.warnings) process.stderr.write(`udax crash: warning: ${w}\n`);
  const total = report.points * report.metadata.length;
  const where = `${total} crash points (${report.points} at ${report.at} × ${report.metadata.join(' and ')}), ${report.checked} states checked`;
  if (report.ok) {
    process.stdout.write(`no violation at ${where}\n`);
  } else {
    const points = new Set(report.violations.map((v) => `${v.metadata} ${v.point.index}`)).size;
    process.stdout.write(violationTable(report));
    const stopped = opts.stop === 'first' ? `; stopped at the first, after exploring ${report.summary.length}` : '';
    process.stdout.write(`${report.violations.length} violation${report.violations.length === 1 ? '' : 's'} at ${points} of ${where}${stopped}\n`);
  }
  if (values.json !== undefined) writeFileSync(values.json, reportJson(report));
  return report.ok ? 0 : 1;
}

function info(args: string[]): number {
  const { values, positionals } = parse(args, { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, true);
  if (values.help) {
    process.stdout.write(INFO_HELP);
    return 0;
  }
  if (positionals.length > 1) usage(`info takes at most one PATH, got ${positionals.length}`);
  const i = systemInfo(positionals[0] ?? '/dev/shm');
  const mmapIo = mmapIoProblem() ?? 'available (@riaskov/mmap-io)';
  if (values.json) {
    process.stdout.write(JSON.stringify({ version, ...i, msyncBaseline: mmapIo }, null, 2) + '\n');
    return 0;
  }
  const a = i.flush.available;
  const p = i.path;
  const kind = !p.exists ? 'does not exist'
    : p.kind === 'dax' ? 'a DAX mount (persistent memory: MAP_SYNC)'
    : p.kind === 'tmpfs' ? 'tmpfs (memory: nothing survives a reboot; udax emulates DAX over it)'
    : 'a disk file system (page cache; udax works, with the file system\'s own fault cost)';
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
  const free = p.space ? `${gib(p.space.free)} free of ${gib(p.space.total)}${p.exists ? '' : ` (in ${p.space.at})`}` : 'unknown';
  const lines = [
    `udax:               ${version}`,
    `flush instructions: clwb ${a.clwb ? 'yes' : 'no'}, clflushopt ${a.clflushopt ? 'yes' : 'no'}, clflush ${a.clflush ? 'yes' : 'no'}`,
    `udax uses:          ${i.flush.instruction} (${i.flush.reason === 'cpuid' ? 'best the CPU has' : `set by ${i.flush.reason}`})`,
    `path:               ${p.path}: ${kind}`,
    ...(p.exists ? [`  file system:      ${p.fileSystem ?? 'unknown'} mounted on ${p.mountPoint ?? '?'} (${p.mountOptions ?? ''})`] : []),
    ...(p.mapSync !== undefined ? [`  MAP_SYNC:         ${p.mapSync ? 'works' : 'not supported'}`] : []),
    ...(p.asyncScan ? [`  async scan:       ${p.asyncScan.scan} for a file of ${p.asyncScan.forSize} bytes (UDAX_ASYNC_SCAN=${process.env.UDAX_ASYNC_SCAN || 'auto'}: ${p.asyncScan.reason})`] : []),
    `  space:            ${free}`,
    `kernel:             Linux ${i.kernel.release}`,
    `  userfaultfd:      ${i.kernel.userfaultfd ? 'present' : 'absent'}; write-protect async + PAGEMAP_SCAN: ${i.kernel.pagemapScan ? 'yes (6.7+)' : 'no'}`,
    `  shmem huge pages: ${i.kernel.shmemHugePages ?? 'unknown'}`,
    `  vm.max_map_count: ${i.kernel.maxMapCount ?? 'unknown'} (udax budgets ${i.udax.vmaBudget} VMAs for dirty islands, then coarsens to 2 MiB)`,
    `fault tracking:     ${i.udax.trackers.default ?? 'none'} (UDAX_TRACKER=${i.udax.trackers.option}: ${i.udax.trackers.reason})`,
    ...(['async', 'sigbus', 'sigsegv'] as const).map((n) => `  ${(n + ':').padEnd(16)}  ${i.udax.trackers.available[n].available ? 'available' : 'unavailable'}: ${i.udax.trackers.available[n].reason}`),
    `msync baseline:     ${mmapIo}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '-V' || command === '--version') {
    process.stdout.write(`${version}\n`);
    return 0;
  }
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(MAIN_HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === 'bench') return bench(rest);
  if (command === 'crash') return crash(rest);
  if (command === 'info') return info(rest);
  usage(`unknown command '${command}'`);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    if (e instanceof UsageError) {
      process.stderr.write(`udax: ${e.message}\nRun 'udax --help' or 'udax <command> --help' for usage.\n`);
      process.exitCode = 2;
    } else {
      const err = e as Error & { code?: string };
      process.stderr.write(`udax: ${err.message}\n`);
      process.exitCode = 1;
    }
  },
);
