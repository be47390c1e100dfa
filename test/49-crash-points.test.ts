// Crash points (issue #12): run a workload, crash its volume before and
// after every fsync (or every call), check a recovery on each state.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import * as udax from 'udax';
import { scratchPath } from './helpers.js';

const made: string[] = [];
afterAll(() => {
  for (const p of made) for (const q of [p, `${p}.states`, `${p}.states.stash`]) rmSync(q, { recursive: true, force: true });
});

function volumeDir(): string {
  const dir = scratchPath('points');
  made.push(dir);
  return dir;
}

/** A tiny engine: each commit writes value into a fresh temp file, renames it
 * over 'db' and fsyncs the directory; `committed` is the last commit that
 * returned. recover checks the state against it. */
function engine(opts: { fsyncTemp: boolean; commits: number }) {
  let committed = 0;
  const workload = (v: udax.Volume) => {
    committed = 0;
    for (let value = 1; value <= opts.commits; value++) {
      const tmp = v.create('db.tmp');
      tmp.map().bytes.fill(value);
      if (opts.fsyncTemp) tmp.sync();
      v.rename('db.tmp', 'db');
      v.syncDirectory();
      committed = value;
    }
  };
  const recover = (dir: string) => {
    const p = join(dir, 'db');
    if (!existsSync(p)) return committed === 0 ? true : 'lost-commit';
    const bytes = readFileSync(p);
    if (new Set(bytes).size !== 1 || bytes[0] === 0) return 'corrupt';
    return bytes[0] >= committed ? true : 'lost-commit';
  };
  return { workload, recover };
}

describe('exploreCrashPoints', () => {
  test('write temp, fsync, rename, fsync dir: no violation at any point, under either model', async () => {
    const { workload, recover } = engine({ fsyncTemp: true, commits: 2 });
    const r = await udax.exploreCrashPoints(volumeDir(), workload, recover, { k: 2, metadata: 'both', stop: 'all' });
    expect(r.message).toBe('');
    expect(r.ok).toBe(true);
    expect(r.metadata).toEqual(['ext4/xfs', 'strict-posix']);
    // before and after each of 2 × (fsync of the temp, fsync of the directory)
    expect(r.points).toBe(8);
    expect(r.syncs).toBe(4);
    expect(r.summary.length).toBe(16);
    expect(r.summary.slice(0, 4).map((s) => s.point.description)).toEqual([
      "before fsync 'db.tmp'", "after fsync 'db.tmp'", "before fsync-dir ''", "after fsync-dir ''",
    ]);
    expect(r.summary.every((s) => s.states >= 1 && s.violations === 0)).toBe(true);
    expect(r.summary[0].states).toBeGreaterThan(64);  // the temp's create with each of its 64 dirty cache lines
    expect(r.summary[3].states).toBe(1);  // after the directory's fsync nothing is pending
    expect(r.checked).toBe(r.summary.reduce((n, s) => n + s.states, 0));
    expect(r.warnings).toEqual([]);
  });

  test('no fsync before the rename: violations found at the first point, classified and reduced', async () => {
    const { workload, recover } = engine({ fsyncTemp: false, commits: 2 });
    const progress: udax.CrashPointsProgress[] = [];
    const r = await udax.exploreCrashPoints(volumeDir(), workload, recover, { k: 1, progress: (p) => progress.push({ ...p }) });
    expect(r.ok).toBe(false);
    expect(r.points).toBe(4);
    expect(r.summary.length).toBe(1);  // stop: 'first'
    expect(r.violations.length).toBe(1);
    const v = r.violations[0];
    expect(v.point).toMatchObject({ index: 0, phase: 'before', call: 'fsync-dir', description: "before fsync-dir ''" });
    expect(v.metadata).toBe('ext4/xfs');
    expect(v.class).toBe('corrupt');
    // the rename reached the disk, the data did not: no unit is needed
    expect(v.minimal!.operations.map((o) => o.description)).toEqual(["create 'db.tmp'", "rename 'db.tmp' -> 'db'"]);
    expect(v.minimal!.units).toEqual([]);
    expect(r.message).toMatch(/before fsync-dir '' \(crash point 0\).*ext4\/xfs metadata model.*class 'corrupt'/);
    expect(progress.length).toBe(r.checked);
    expect(progress.at(-1)).toMatchObject({ point: 0, points: 4, metadata: 'ext4/xfs' });

    const all = await udax.exploreCrashPoints(volumeDir(), workload, recover, { k: 1, stop: 'all' });
    expect(all.summary.length).toBe(4);
    expect(all.summary.every((s) => s.violations > 0)).toBe(true);  // the data is never fsynced
    // each point's first violation of each class is reduced
    for (const s of all.summary) {
      const at = all.violations.filter((x) => x.point.index === s.point.index);
      expect(new Set(at.filter((x) => x.minimal).map((x) => x.class)).size).toBe(at.filter((x) => x.minimal).length);
    }
  });

  test("at: 'operation' stops before and after every call: more points than at fsync", async () => {
    const { workload, recover } = engine({ fsyncTemp: true, commits: 2 });
    const r = await udax.exploreCrashPoints(volumeDir(), workload, recover, { at: 'operation', k: 1, stop: 'all' });
    expect(r.ok).toBe(true);
    // per commit: create, fsync, rename, fsync-dir — before and after each
    expect(r.points).toBe(16);
    expect(r.summary.slice(0, 3).map((s) => s.point.description)).toEqual(["before create 'db.tmp'", "after create 'db.tmp'", "before fsync 'db.tmp'"]);
  });

  test('relying on a file fsync to persist its name is a violation under strict-posix only', async () => {
    let committed = 0;
    const workload = (v: udax.Volume) => {
      committed = 0;
      const db = v.create('db');
      db.map().bytes.fill(7);
      db.sync();
      committed = 1;
      v.create('log').sync();
    };
    const recover = (dir: string) => (committed === 1 && !existsSync(join(dir, 'db')) ? 'lost-commit' : true);
    const r = await udax.exploreCrashPoints(volumeDir(), workload, recover, { k: 1, metadata: 'both', stop: 'all' });
    expect(r.violations.length).toBeGreaterThan(0);
    expect(new Set(r.violations.map((v) => v.metadata))).toEqual(new Set(['strict-posix']));
    expect(r.violations[0].point.description).toBe("before fsync 'log'");
    expect(r.violations[0].class).toBe('lost-commit');
  });

  test('a workload that makes other calls when replayed is ERR_UDAX_NONDETERMINISTIC', async () => {
    let runs = 0;
    const workload = (v: udax.Volume) => {
      runs++;
      const f = v.create('a');
      if (runs > 1) v.syncDirectory();
      f.sync();
    };
    await expect(udax.exploreCrashPoints(volumeDir(), workload, () => true)).rejects.toMatchObject({ code: 'ERR_UDAX_NONDETERMINISTIC' });
    let calls = 0;
    const shorter = (v: udax.Volume) => {
      if (calls++ === 0) v.create('a').sync();
    };
    await expect(udax.exploreCrashPoints(volumeDir(), shorter, () => true)).rejects.toThrow(/returned after 0 crash points; the first run had 2/);
  });

  test('a workload that catches the stop signal cannot change the snapshot; async workloads work', async () => {
    let committed = 0;
    const workload = async (v: udax.Volume) => {
      committed = 0;
      const db = v.create('db');
      db.map().bytes.fill(1);
      try {
        db.sync();
        committed = 1;
      } catch {
        // an engine that swallows I/O errors and goes on
      }
      await Promise.resolve();
      try {
        db.map().bytes.fill(0);
        v.unlink('db');
      } catch {
        /* the volume refuses every call once stopped */
      }
    };
    // after the fsync returned, every state has db as synced: the zeros the
    // workload stored after it was stopped are not in the snapshot
    const recover = (dir: string, info: udax.CrashPointInfo) =>
      info.point.phase === 'after' && readFileSync(join(dir, 'db')).some((b) => b !== 1) ? 'changed-after-stop' : true;
    const r = await udax.exploreCrashPoints(volumeDir(), workload, recover, { k: 1, stop: 'all' });
    expect(r.points).toBe(2);
    expect(r.message).toBe('');
    expect(committed).toBe(0);  // the stop came out of db.sync()
  });

  test('warns of a file written and never synced after: what an engine whose fdatasync is a no-op does', async () => {
    const r = await udax.exploreCrashPoints(volumeDir(), (v) => {
      const log = v.create('log', 0);
      log.write(Buffer.from('rec'), 0);  // never synced: named
      const db = v.create('db');
      db.write(Buffer.from('x'), 0);
      db.sync();  // synced after its write
      const t = v.create('t');
      t.write(Buffer.from('y'), 0);
      v.rename('t', 'u');
      v.open('u').sync();  // followed through the rename
      const gone = v.create('gone');
      gone.resize(2 * 4096);
      v.unlink('gone');  // not there at the end
      v.syncDirectory();
    }, () => true);
    expect(r.ok).toBe(true);
    expect(r.warnings).toEqual([
      "written and never synced after (no fsync or msync of the file followed a write or resize of it): 'log' (a runtime whose fdatasync is a no-op makes an engine that uses it for these files look like this)",
    ]);
  });

  test('warns when the workload never syncs; rethrows its own errors; refuses an existing directory', async () => {
    const r = await udax.exploreCrashPoints(volumeDir(), (v) => void v.create('a'), () => true, { at: 'operation' });
    expect(r.syncs).toBe(0);
    expect(r.warnings[0]).toMatch(/^no fsync in the workload: every crash state is the initial one/);
    const bug = new Error('bug in the workload');
    await expect(udax.exploreCrashPoints(volumeDir(), () => { throw bug; }, () => true)).rejects.toBe(bug);
    const existing = volumeDir();
    mkdirSync(existing);
    await expect(udax.exploreCrashPoints(existing, () => {}, () => true)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(udax.exploreCrashPoints(volumeDir(), () => {}, () => true, { at: 'write' as never })).rejects.toThrow(TypeError);
  });
});

describe('the worker pool', () => {
  const example = fileURLToPath(new URL('../examples/crash-rename.mjs', import.meta.url));
  /** A report without what differs between runs (error objects' identity). */
  const comparable = (r: udax.CrashPointsReport) => ({
    ...r, violations: r.violations.map((v) => ({ ...v, error: v.error instanceof Error ? v.error.message : v.error })),
  });

  test('workers: 2 explores points on two threads and reports what one thread reports', async () => {
    const mod = await import(example);
    process.env.SKIP_FSYNC = '1';
    try {
      for (const stop of ['all', 'first'] as const) {
        const one = await udax.exploreCrashPoints(volumeDir(), mod.workload, mod.recover, { k: 1, stop, metadata: 'both' });
        const two = await udax.exploreCrashPoints(volumeDir(), mod.workload, mod.recover, { k: 1, stop, metadata: 'both', workers: 2, module: { path: example } });
        expect(one.ok).toBe(false);
        expect(comparable(two)).toEqual(comparable(one));
      }
    } finally {
      delete process.env.SKIP_FSYNC;
    }
    const progress: number[] = [];
    const ok = await udax.exploreCrashPoints(volumeDir(), mod.workload, mod.recover, { k: 2, workers: 2, module: { path: example }, progress: (p) => progress.push(p.point) });
    expect(ok.ok).toBe(true);
    expect(new Set(progress).size).toBeGreaterThan(1);
  });

  test('a worker error comes back typed, and nothing hangs: a non-deterministic module, a module without the exports, no module', async () => {
    const dir = volumeDir();
    const flaky = `${dir}.flaky.mjs`;
    made.push(flaky);
    // a workload that behaves otherwise in a worker thread than in the main one
    writeFileSync(flaky, "import { isMainThread } from 'node:worker_threads';\nexport function workload(v) { const f = v.create('a'); if (!isMainThread) v.syncDirectory(); f.sync(); }\nexport const recover = () => true;\n");
    const m = await import(flaky);
    await expect(udax.exploreCrashPoints(volumeDir(), m.workload, m.recover, { workers: 2, module: { path: flaky } })).rejects.toMatchObject({ code: 'ERR_UDAX_NONDETERMINISTIC', name: 'DaxError' });
    await expect(udax.exploreCrashPoints(volumeDir(), m.workload, m.recover, { workers: 2, module: { path: flaky, recover: 'check' } })).rejects.toThrow(/must export functions workload and check/);
    await expect(udax.exploreCrashPoints(volumeDir(), m.workload, m.recover, { workers: 2, module: { path: `${dir}.missing.mjs` } })).rejects.toThrow(/Cannot find module|ERR_MODULE_NOT_FOUND/);
    await expect(udax.exploreCrashPoints(volumeDir(), m.workload, m.recover, { workers: 2 })).rejects.toThrow(TypeError);
    for (const p of [dir, `${dir}.w0`, `${dir}.w1`]) expect(existsSync(p)).toBe(false);
  });
});

describe('udax crash', () => {
  const root = fileURLToPath(new URL('../', import.meta.url));
  const udaxCrash = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const dir = volumeDir();
    return spawnSync(process.execPath, ['dist/cli/udax.js', 'crash', ...args, ...(args.includes('--help') ? [] : ['--dir', dir])],
      { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  };

  test('examples/crash-rename.mjs: no violation with the fsync (exit 0); without it a table of violations (exit 1) and --json', () => {
    const ok = udaxCrash(['examples/crash-rename.mjs']);
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toMatch(/^no violation at 12 crash points \(12 at fsync × ext4\/xfs\), \d+ states checked\n$/);
    expect(ok.status).toBe(0);

    const json = `${volumeDir()}.json`;
    made.push(json);
    const bad = udaxCrash(['examples/crash-rename.mjs', '--metadata', 'both', '-k', '1', '--json', json], { SKIP_FSYNC: '1' });
    expect(bad.status).toBe(1);
    const lines = bad.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^point\s+model\s+class\s+failing states\s+minimal operations\s+minimal units$/);
    expect(lines[2]).toMatch(/^0: before fsync-dir ''\s+ext4\/xfs\s+corrupt\s+\d+\s+create 'db.tmp', rename 'db.tmp' -> 'db'\s+none$/);
    expect(lines.some((l) => /^\d+: after fsync-dir ''\s+strict-posix\s+corrupt/.test(l))).toBe(true);
    expect(lines.at(-1)).toMatch(/^\d+ violations at 11 of 12 crash points \(6 at fsync × ext4\/xfs and strict-posix\), \d+ states checked$/);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.ok).toBe(false);
    expect(report.metadata).toEqual(['ext4/xfs', 'strict-posix']);
    expect(report.violations[0]).toMatchObject({ class: 'corrupt', metadata: 'ext4/xfs', point: { index: 0, call: 'fsync-dir' } });

    const pooled = udaxCrash(['examples/crash-rename.mjs', '--metadata', 'both', '-k', '1', '--workers', '2'], { SKIP_FSYNC: '1' });
    expect(pooled.status).toBe(1);
    expect(pooled.stdout).toBe(bad.stdout);

    const first = udaxCrash(['examples/crash-rename.mjs', '--first', '--at', 'operation'], { SKIP_FSYNC: '1' });
    expect(first.status).toBe(1);
    expect(first.stdout).toMatch(/1 violation at 1 of 18 crash points \(18 at operation × ext4\/xfs\), \d+ states checked; stopped at the first, after exploring \d+\n$/);
  });

  test('a workload that never syncs is warned about', () => {
    const mod = `${volumeDir()}.mjs`;
    made.push(mod);
    writeFileSync(mod, "export const workload = (v) => { v.create('a').map().bytes.fill(1); };\nexport const recover = () => true;\n");
    const r = udaxCrash([mod]);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('udax crash: warning: no fsync in the workload: every crash state is the initial one (a runtime whose fdatasync is a no-op makes an engine never sync)\n');
    expect(r.stdout).toMatch(/^no violation at 0 crash points/);
  });

  test('usage errors exit 2; --help names every option the command takes', () => {
    for (const args of [[], ['examples/crash-rename.mjs', '--at', 'write'], ['examples/crash-rename.mjs', '-k', 'x'], ['examples/crash-rename.mjs', '--metadata', 'zfs'],
      ['examples/none.mjs'], ['examples/quickstart.mjs'], ['examples/crash-rename.mjs', '--bogus'], ['examples/crash-rename.mjs', '--workers', '0']]) {
      const r = udaxCrash(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^udax: /);
    }
    const help = udaxCrash(['--help']);
    expect(help.status).toBe(0);
    for (const option of ['--at', '-k', '--samples', '--seed', '--metadata', '--first', '--workers', '--dir', '--json', '--help']) expect(help.stdout).toMatch(new RegExp(`^ +(-h, )?${option} `, 'm'));
    const main = spawnSync(process.execPath, ['dist/cli/udax.js', '--help'], { cwd: root, encoding: 'utf8' });
    expect(main.stdout).toMatch(/^\s+crash\s/m);
  });
});
