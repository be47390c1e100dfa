// Crash-test SQLite over a udax volume: run a workload of transactions, stop
// it at every xSync (before and after) and after every COMMIT, take the
// crash states of the whole volume there, restart SQLite on each (a copy of
// the state's directory, through node:fs) and check what SQLite promises.
//
//   node examples/sqlite/crash-test.mjs [--quick] [--transactions N] [--k K]
//     [--random N] [--seed S] [--modes DELETE:FULL,WAL:NORMAL,...]
//     [--metadata ext4/xfs,strict-posix] [--dir PATH] [--json]
//     [--io write|mmap] [--granularity cache-line|page|byte8]
//     [--no-dir-sync]   (a VFS that never syncs a directory: the classic bug)
//
// --io write (default) writes through file.write, the DAX read/write path:
// data is durable on return and only metadata (names, sizes) is at stake.
// --io mmap stores through a mapping, dirty until xSync: crash states then
// also take any subset of the units written since the last sync (use a
// small --k, or --granularity page for the page cache's 4 KiB units).
//
// What SQLite promises, per https://www.sqlite.org/pragma.html#pragma_synchronous
// (encoded in PROMISES below; the README quotes it):
// - OFF: nothing ("the database might become corrupted" on a power loss);
//   checked as if every commit were durable, so violations are expected.
// - DELETE at NORMAL or FULL: an intact database; every commit but the last
//   one that returned (the journal's unlink is the commit and only EXTRA
//   syncs the directory after it: "EXTRA provides additional durability if
//   the commit is followed closely by a power loss").
// - DELETE at EXTRA, WAL at FULL: an intact database with every commit that
//   returned ("the WAL file is synced after each transaction commit, which
//   guarantees durability").
// - WAL at NORMAL: an intact database ("consistent") with every commit up to
//   the last completed checkpoint ("transactions committed may roll back
//   following a power loss"; the database file is synced after each
//   checkpoint): later ones may be rolled back.
import { checkVolumeRecovery, openVolume } from 'udax';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadSQLite } from './sqlite.mjs';
import { DirectoryStore, StoreVFS, VolumeStore } from './vfs.mjs';

export const PROMISES = {
  'DELETE:OFF': { durable: false, promise: 'nothing', mustHave: () => 0 },
  'DELETE:NORMAL': { durable: true, promise: 'all commits but the last', mustHave: (s) => Math.max(0, s.committed - 1) },
  'DELETE:FULL': { durable: true, promise: 'all commits but the last', mustHave: (s) => Math.max(0, s.committed - 1) },
  'DELETE:EXTRA': { durable: true, promise: 'every commit', mustHave: (s) => s.committed },
  'WAL:OFF': { durable: false, promise: 'nothing', mustHave: () => 0 },
  'WAL:NORMAL': { durable: true, promise: 'commits through the last checkpoint', mustHave: (s) => Math.min(s.committed, s.checkpointed) },
  'WAL:FULL': { durable: true, promise: 'every commit', mustHave: (s) => s.committed },
};
export const ALL_MODES = Object.keys(PROMISES);
export const METADATA = ['ext4/xfs', 'strict-posix'];
const KINDS = ['lost commit', 'integrity failure', 'cannot open'];

/** Each transaction's row: a sequence number and a payload of varying size
 * (600–2,099 bytes: the table grows and its pages split). */
export function payloadOf(seq) {
  return `row ${seq};`.repeat(200).slice(0, 600 + ((seq * 397) % 1500));
}

class Violation extends Error {
  constructor(kind, message) {
    super(`${kind}: ${message}`);
    this.kind = kind;
  }
}

/** The restart: open the state's copy through node:fs and check it. Returns
 * the number of rows found (a prefix 1..m of the workload). */
function restartAndCheck(recovery, journal, need) {
  let db;
  let opened = false;  // an error before this is 'cannot open', after it the database is damaged
  try {
    db = recovery.open('test.db', 'plain');
    // no shared memory in this VFS: the WAL index lives in heap memory
    if (journal === 'WAL') db.exec('PRAGMA locking_mode=EXCLUSIVE');
    const result = db.all('PRAGMA integrity_check').map((r) => r[0].replace(/\s*\n\s*/g, ' ')).join('; ');
    opened = true;
    if (result !== 'ok') throw new Violation('integrity failure', `integrity_check: ${result.slice(0, 200)}`);
    // the harness made the schema durable: a missing table is damage too
    const rows = db.all('SELECT seq, payload FROM t ORDER BY seq');
    rows.forEach(([seq, payload], i) => {
      if (Number(seq) !== i + 1 || payload !== payloadOf(i + 1)) {
        throw new Violation('integrity failure', `row ${i + 1} is ${seq === String(i + 1) ? 'torn' : `missing (next: ${seq})`}: not a prefix of the transactions`);
      }
    });
    if (rows.length > need.attempted) throw new Violation('integrity failure', `${rows.length} rows, more than the ${need.attempted} transactions begun`);
    if (rows.length < need.mustHave) {
      throw new Violation('lost commit', `${rows.length} of ${need.committed} committed transactions present; SQLite promises ${need.mustHave}`);
    }
    return rows.length;
  } catch (e) {
    if (e instanceof Violation) throw e;
    // SQLITE_CORRUPT is a damaged database; anything else before the
    // integrity check answered kept it from opening
    const corrupt = ((e.code ?? 0) & 0xff) === 11;
    throw new Violation(corrupt || opened ? 'integrity failure' : 'cannot open', e.message);
  } finally {
    try {
      db?.close();
    } catch { /* the check's error matters more */ }
  }
}

/** One mode under one metadata model. */
export function runMode({ live, recovery, mode, metadata, transactions, k, random, seed, base, dirSync, io, granularity }) {
  const [journal, synchronous] = mode.split(':');
  const promise = PROMISES[mode];
  const dir = `${base}/volume`;
  const statesDir = `${base}/states`;
  const restartDir = `${base}/restart`;
  rmSync(base, { recursive: true, force: true });
  mkdirSync(base, { recursive: true });
  const volume = openVolume(dir, { create: true, metadata, ...(granularity ? { granularity } : {}) });
  const restartStore = recovery.plainVFS.store;
  const s = { committed: 0, attempted: 0, checkpointed: 0 };
  const out = {
    journal, synchronous, metadata, promise: promise.promise, durable: promise.durable,
    crashPoints: 0, states: 0, violations: Object.fromEntries(KINDS.map((kind) => [kind, 0])),
    rolledBack: 0, examples: [],
  };
  let armed = false;

  const explore = (where) => {
    out.crashPoints++;
    const need = { ...s, mustHave: promise.durable ? promise.mustHave(s) : s.committed };
    const report = checkVolumeRecovery(volume, (stateDir, state) => {
      rmSync(restartDir, { recursive: true, force: true });
      state.copyTo(restartDir);  // SQLite writes on restart (a hot journal rolls back)
      restartStore.dir = restartDir;
      try {
        if (restartAndCheck(recovery.sqlite, journal, need) < s.committed) out.rolledBack++;
      } catch (e) {
        // what the crash left: each file's size in the state, beside its live size
        e.files = readdirSync(stateDir).sort().map((n) => `${n} ${statSync(join(stateDir, n)).size}` +
          (store.sizeOf(n) === undefined ? ' (live: gone)' : ` (live ${store.sizeOf(n)})`)).join(', ');
        throw e;
      }
    }, { dir: statesDir, k, random, seed: seed + out.crashPoints * 7919, stop: 'all', reduce: false });
    out.states += report.checked;
    for (const f of report.failures) {
      const kind = f.error instanceof Violation ? f.error.kind : 'cannot open';
      out.violations[kind]++;
      if (!out.examples.some((e) => e.kind === kind)) {
        out.examples.push({
          kind, where, committed: s.committed, message: f.error?.message ?? String(f.error), files: f.error?.files,
          operations: f.operations.map((op) => op.description), units: f.units.length,
        });
      }
    }
  };

  const store = new VolumeStore(volume, { io });
  const vfs = live.sqlite.registerVFS(new StoreVFS('udax', live.sqlite.module, store, {
    dirSync,
    onSync(phase, ev) {
      if (!armed) return;
      // WAL: the database file is synced when a checkpoint completes
      if (journal === 'WAL' && ev.kind === 'db' && phase === 'after') s.checkpointed = s.attempted;
      explore(`${phase} xSync(${ev.name}${ev.dirSync ? ', and its directory' : ''}) in transaction ${s.attempted}`);
    },
  }));
  try {
    const db = live.sqlite.open('test.db', 'udax', { create: true });
    if (journal === 'WAL') db.exec('PRAGMA locking_mode=EXCLUSIVE');
    db.all(`PRAGMA journal_mode=${journal}`);
    db.exec(`PRAGMA synchronous=${synchronous}; PRAGMA wal_autocheckpoint=8`);
    db.exec('CREATE TABLE t(seq INTEGER PRIMARY KEY, payload TEXT NOT NULL)');
    out.tracker = volume.open('test.db').file.tracker;
    // The schema is made durable by the harness: every violation is the workload's.
    vfs.syncAll();
    volume.syncDirectory();
    armed = true;
    for (let seq = 1; seq <= transactions; seq++) {
      s.attempted = seq;
      db.exec(`BEGIN; INSERT INTO t VALUES (${seq}, '${payloadOf(seq)}'); COMMIT;`);
      s.committed = seq;
      explore(`after COMMIT ${seq} returned`);
    }
    armed = false;
    db.close();
    if (vfs.hookError) throw vfs.hookError;
  } finally {
    armed = false;
    volume.close();
    rmSync(base, { recursive: true, force: true });
  }
  return out;
}

/** The whole test: every mode under every metadata model. */
export async function crashTest({
  modes = ALL_MODES, metadata = METADATA, transactions = 8, k = 2, random = 4, seed = 1,
  base = `/dev/shm/udax-sqlite-${process.pid}`, dirSync = true, io = 'write', granularity, onResult,
} = {}) {
  const live = { sqlite: await loadSQLite() };
  const recovery = { sqlite: await loadSQLite() };
  recovery.plainVFS = recovery.sqlite.registerVFS(new StoreVFS('plain', recovery.sqlite.module, new DirectoryStore(base)));
  const results = [];
  for (const mode of modes) {
    if (!PROMISES[mode]) throw new RangeError(`unknown mode ${mode}: one of ${ALL_MODES.join(', ')}`);
    for (const m of metadata) {
      const r = runMode({ live, recovery, mode, metadata: m, transactions, k, random, seed, base, dirSync, io, granularity });
      results.push(r);
      onResult?.(r);
    }
  }
  return { version: live.sqlite.version, transactions, k, random, seed, dirSync, io, granularity: granularity ?? 'cache-line', results };
}

/** 'ok', 'violations (expected)' where SQLite promises nothing, 'VIOLATION' otherwise. */
export function verdict(r) {
  const n = KINDS.reduce((sum, kind) => sum + r.violations[kind], 0);
  if (n === 0) return r.durable ? 'ok' : 'none found';
  return r.durable ? 'VIOLATION' : 'violations (expected)';
}

const COLUMNS = [
  ['mode', 14, (r) => `${r.journal}:${r.synchronous}`],
  ['metadata', 13, (r) => r.metadata],
  ['SQLite promises', 36, (r) => r.promise],
  ['points', 7, (r) => r.crashPoints],
  ['states', 7, (r) => r.states],
  ['lost', 5, (r) => r.violations['lost commit']],
  ['integrity', 10, (r) => r.violations['integrity failure']],
  ['no open', 8, (r) => r.violations['cannot open']],
  ['rolled back', 12, (r) => r.rolledBack],
  ['verdict', 0, verdict],
];
const line = (cells) => cells.map((c, i) => String(c).padEnd(COLUMNS[i][1])).join('').trimEnd();
export const header = () => line(COLUMNS.map((c) => c[0]));
export const row = (r) => line(COLUMNS.map((c) => c[2](r)));

async function main(argv) {
  const opt = (name, parse, fallback) => {
    const i = argv.indexOf(`--${name}`);
    return i < 0 ? fallback : parse(argv[i + 1]);
  };
  const quick = argv.includes('--quick');
  const json = argv.includes('--json');
  const list = (v) => v.split(',');
  const options = {
    transactions: opt('transactions', Number, quick ? 3 : 8),
    k: opt('k', Number, 2),
    random: opt('random', Number, quick ? 0 : 4),
    seed: opt('seed', Number, 1),
    modes: opt('modes', list, quick ? ['DELETE:OFF', 'DELETE:EXTRA', 'WAL:FULL'] : ALL_MODES),
    metadata: opt('metadata', list, METADATA),
    dirSync: !argv.includes('--no-dir-sync'),
    io: opt('io', String, 'write'),
    granularity: opt('granularity', String, undefined),
    ...(argv.includes('--dir') ? { base: opt('dir', String) } : {}),
  };
  const started = Date.now();
  if (!json) {
    const io = options.io === 'write' ? 'file.write' : `stores into mappings (${options.granularity ?? 'cache-line'} units)`;
    console.log(`SQLite over a udax volume through ${io}: ${options.transactions} transactions per mode; crash states at every xSync (before, after) and COMMIT, k=${options.k} + ${options.random} sampled${options.dirSync ? '' : '; the VFS never syncs a directory'}`);
    console.log(header());
  }
  const report = await crashTest({ ...options, onResult: json ? undefined : (r) => console.log(row(r)) });
  const bad = report.results.filter((r) => verdict(r) === 'VIOLATION');
  if (json) {
    console.log(JSON.stringify({ ...report, seconds: (Date.now() - started) / 1000 }, null, 2));
  } else {
    // one example per mode and kind of violation, with the models that showed it
    const examples = new Map();
    for (const r of report.results) {
      for (const e of r.examples) {
        const key = `${r.journal}:${r.synchronous} ${e.kind}`;
        if (examples.has(key)) examples.get(key).models.push(r.metadata);
        else examples.set(key, { mode: `${r.journal}:${r.synchronous}`, e, models: [r.metadata] });
      }
    }
    for (const { mode, e, models } of examples.values()) {
      console.log(`  e.g. ${mode} (${models.join(', ')}), ${e.where}: ${e.message}`);
      console.log(`       the state: ${e.files}; pending operations kept: ${e.operations.join(', ') || 'none'}; data units: ${e.units}`);
    }
    console.log(`${bad.length === 0 ? 'no violation where SQLite promises durability' : `${bad.length} mode(s) violate what SQLite promises`} (SQLite ${report.version}, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  }
  process.exitCode = bad.length === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) await main(process.argv.slice(2));
