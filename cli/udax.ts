#!/usr/bin/env node
// The udax command: `udax bench` (the benchmark suite) and `udax info`.
import { accessSync, constants as fsConstants, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { renderChart } from '../bench/chart.js';
import { runBench, type BenchOptions } from '../bench/runner.js';
import { formatTable } from '../bench/table.js';
import { formatBytes, parseCount, parseSize } from '../bench/units.js';
import { mmapIoProblem } from '../bench/variants.js';
import { WORKLOADS } from '../bench/workloads.js';
import { PAGE_SIZE, PMD_SIZE, systemInfo, version } from '../src/index.js';

const MAIN_HELP = `usage: udax <command> [options]

commands:
  bench   run the benchmark suite: udax beside raw, flush-all and msync baselines
  info    flush instructions, file system of a path, kernel features and limits

options:
  -V, --version   print udax's version
  -h, --help      this help

Run 'udax <command> --help' for a command's options.
`;

const BENCH_HELP = `usage: udax bench [options]

Runs each workload through udax and through the baselines, every trial in a
fresh node process, and prints median, 5th and 95th percentile, min and max
time per operation with the ratio of udax to each baseline, then the
performance targets (n/a where the run's settings are not the targets'
1 thread, 4 KiB entries and 16 GiB --huge). Scratch files are created and
removed. Paths are checked before anything runs.

options:
  --file PATH        scratch file for udax and the untracked baselines; must
                     not exist (default: /dev/shm/udax-bench-<pid>)
  --size BYTES       mapping size for most workloads (default 64M); 4096, 256M, 4G
  --huge BYTES       sparse file size for sync-clean-huge (default 16G)
  --workload NAME    one of ${WORKLOADS.map((w) => w.name).join(', ')}, a comma list, or all (default)
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
