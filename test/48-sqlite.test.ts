// A real engine over a volume (issue #12): SQLite (WebAssembly) through the
// example's VFS, crashed at every xSync and COMMIT (examples/sqlite/). Its
// promises hold where SQLite makes them, and the test finds what it does not
// promise. Runs the example as a user does, under this run's tracker.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as udax from 'udax';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { TRACKER, scratchPath } from './helpers.js';

const root = fileURLToPath(new URL('../', import.meta.url));

interface ModeResult {
  journal: string;
  synchronous: string;
  metadata: string;
  durable: boolean;
  tracker: string;
  crashPoints: number;
  states: number;
  violations: Record<'lost commit' | 'integrity failure' | 'cannot open', number>;
  rolledBack: number;
}

function crashTest(args: string[]): ModeResult[] {
  const r = spawnSync(process.execPath, ['examples/sqlite/crash-test.mjs', '--json', '--dir', scratchPath('sqlite'), ...args],
    { cwd: root, encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr).toBe('');
  const report = JSON.parse(r.stdout) as { results: ModeResult[] };
  const durableViolated = report.results.some((m) => m.durable && violations(m) > 0);
  expect(r.status).toBe(durableViolated ? 1 : 0);
  for (const m of report.results) {
    expect(m.tracker).toBe(TRACKER);
    expect(m.crashPoints).toBeGreaterThan(0);
    expect(m.states).toBeGreaterThan(m.crashPoints - 1);
  }
  return report.results;
}

const violations = (m: ModeResult) => Object.values(m.violations).reduce((a, b) => a + b, 0);
const find = (results: ModeResult[], mode: string, metadata: string) =>
  results.find((m) => `${m.journal}:${m.synchronous}` === mode && m.metadata === metadata)!;

describe('SQLite over a udax volume, crash-tested', () => {
  test('no violation where SQLite promises durability; synchronous=OFF loses commits and corrupts the database', () => {
    const results = crashTest(['--transactions', '5', '--k', '2', '--random', '2', '--modes', 'DELETE:OFF,DELETE:FULL,DELETE:EXTRA,WAL:OFF,WAL:FULL']);
    expect(results).toHaveLength(10);
    for (const metadata of ['ext4/xfs', 'strict-posix']) {
      for (const mode of ['DELETE:FULL', 'DELETE:EXTRA', 'WAL:FULL']) expect(find(results, mode, metadata).violations).toEqual({ 'lost commit': 0, 'integrity failure': 0, 'cannot open': 0 });
      // OFF: SQLite promises nothing, and a crash shows it
      expect(find(results, 'DELETE:OFF', metadata).violations['integrity failure']).toBeGreaterThan(0);
      expect(find(results, 'WAL:OFF', metadata).violations['lost commit']).toBeGreaterThan(0);
      // DELETE at FULL: a crash right after COMMIT can roll the last commit
      // back (its journal's unlink is not durable yet); EXTRA syncs the
      // directory after the unlink and never does.
      expect(find(results, 'DELETE:FULL', metadata).rolledBack).toBeGreaterThan(0);
      expect(find(results, 'DELETE:EXTRA', metadata).rolledBack).toBe(0);
      expect(find(results, 'WAL:FULL', metadata).rolledBack).toBe(0);
    }
  });

  test('a VFS that never syncs a directory corrupts DELETE-mode databases under strict POSIX only, and loses EXTRA\'s last commit under both', () => {
    const results = crashTest(['--no-dir-sync', '--transactions', '5', '--k', '2', '--random', '0', '--modes', 'DELETE:FULL,DELETE:EXTRA']);
    // ext4/xfs: the journal's fsync made its name durable, so FULL holds
    expect(violations(find(results, 'DELETE:FULL', 'ext4/xfs'))).toBe(0);
    // strict POSIX: the journal's name may be lost after the database was overwritten
    expect(find(results, 'DELETE:FULL', 'strict-posix').violations['integrity failure']).toBeGreaterThan(0);
    // EXTRA's promise rests on the directory sync after the journal's unlink
    for (const metadata of ['ext4/xfs', 'strict-posix']) expect(find(results, 'DELETE:EXTRA', metadata).violations['lost commit']).toBeGreaterThan(0);
  });

  test('through stores into mappings (dirty until xSync, crashed in 4 KiB units) the promises hold too, and OFF still fails', () => {
    const results = crashTest(['--io', 'mmap', '--granularity', 'page', '--transactions', '4', '--k', '2', '--random', '2', '--modes', 'DELETE:OFF,DELETE:FULL,WAL:NORMAL']);
    for (const metadata of ['ext4/xfs', 'strict-posix']) {
      expect(violations(find(results, 'DELETE:FULL', metadata))).toBe(0);
      expect(violations(find(results, 'WAL:NORMAL', metadata))).toBe(0);
      expect(find(results, 'WAL:NORMAL', metadata).rolledBack).toBeGreaterThan(0);  // not durable until a checkpoint
      expect(violations(find(results, 'DELETE:OFF', metadata))).toBeGreaterThan(0);
    }
  });

  test('the restart as a module for the state pool (examples/sqlite/pool-recover.mjs): 2 workers report what the calling thread reports', async () => {
    const poolRecover = `${root}examples/sqlite/pool-recover.mjs`;
    const { recover, buildDatabase } = await import(poolRecover) as {
      recover: udax.VolumeRecoverFn; buildDatabase: (dir: string, rows: number) => void;
    };
    const base = scratchPath('sqlite-pool');
    mkdirSync(base);
    try {
      buildDatabase(base, 20);
      const bytes = readFileSync(join(base, 'test.db'));
      const v = udax.openVolume(join(base, 'volume'), { create: true });
      const db = v.create('test.db', bytes.length);
      db.write(bytes, 0);
      db.sync();
      v.syncDirectory();
      // Unsynced garbage over the b-tree header of page 2 (two cache lines): states that keep it are damaged.
      db.map().bytes.fill(0xa5, 4096, 4096 + 128);
      const opts = { dir: join(base, 'states'), k: 1, stop: 'all' as const, reduce: false };
      const one = udax.checkVolumeRecovery(v, recover, opts);
      expect(one.checked).toBe(4);  // neither unit, each, both
      expect(one.failures.map((f) => f.units.map((u) => u.offset))).toEqual([[4096], [4096, 4160]]);  // the header's line damages it
      const pooled = await udax.checkVolumeRecovery(v, recover, { ...opts, workers: 2, module: { path: poolRecover } });
      expect(pooled.failures.map((f) => [f.index, f.class, f.units.length])).toEqual(one.failures.map((f) => [f.index, f.class, f.units.length]));
      expect(pooled.checked).toBe(one.checked);
      v.close();
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

