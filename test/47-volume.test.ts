// Volumes (issue #12): a directory of DAX files, its namespace and the
// metadata model (what a crash keeps of creates, unlinks, renames), and
// crash states of the whole volume built by patching one base image.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import * as udax from 'udax';
import { ddmin } from 'udax/testing';
import { Worker } from 'node:worker_threads';
import { distIndex, nextMessage, runChild, scratchPath, sleep, workerUrl } from './helpers.js';

const PAGE = 4096;
const made: string[] = [];
afterAll(() => {
  for (const p of made) for (const q of [p, `${p}.states`, `${p}.states.stash`]) rmSync(q, { recursive: true, force: true });
});

function volumeDir(): string {
  const dir = scratchPath('vol');
  made.push(dir);
  return dir;
}

function newVolume(opts: udax.VolumeOptions = {}): udax.Volume {
  return udax.openVolume(volumeDir(), { create: true, ...opts });
}

/** Every file of a directory, recursively, with its bytes. */
function tree(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of readdirSync(dir, { recursive: true }).map(String).sort()) {
    const p = join(dir, name);
    if (statSync(p).isFile()) out.set(name, readFileSync(p));
  }
  return out;
}

/** Run fn over every state (enumerated), collecting what it returns. */
function eachState<T>(v: udax.Volume, fn: (s: udax.VolumeCrashState) => T, opts: Partial<udax.VolumeCrashStatesOptions> = {}): T[] {
  const states = v.crashStates({ dir: `${v.dir}.states`, ...opts });
  try {
    const out: T[] = [];
    for (const s of states) out.push(fn(s));  // a state lives until the next is built
    return out;
  } finally {
    states.close();
  }
}

const text = (b: Buffer | undefined, n: number) => b?.subarray(0, n).toString();

function expectCode(fn: () => unknown, code: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeDefined();
  expect((err as { code?: string }).code).toBe(code);
}

describe('one opener per volume', () => {
  /** openVolume(dir) in a child process: its error's code and path, or 'opened'. */
  const openInChild = (dir: string, then = 'v.close()') => {
    const r = runChild(`
      import { openVolume } from ${JSON.stringify(distIndex)};
      try {
        const v = openVolume(${JSON.stringify(dir)});
        console.log(JSON.stringify({ opened: v.list().map((e) => e.name) }));
        ${then};
      } catch (e) {
        console.log(JSON.stringify({ code: e.code, path: e.path, name: e.name }));
      }`);
    expect(r.error, 'the child timed out').toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  };
  const privateFiles = (dir: string) => readdirSync(join(dir, '.udax')).sort();

  test('a second process opening the volume gets ERR_UDAX_VOLUME_LOCKED naming it, and changes nothing', () => {
    const v = newVolume();
    const a = v.create('a');
    a.write(Buffer.from('alpha'), 0);
    v.create('b');
    v.unlink('b');  // pending: b's bytes are kept in .udax
    const before = privateFiles(v.dir);
    expect(openInChild(v.dir)).toEqual({ code: 'ERR_UDAX_VOLUME_LOCKED', path: v.dir, name: 'DaxError' });
    expect(privateFiles(v.dir)).toEqual(before);
    expect(v.pendingOperations()).toEqual(["create 'a'", "create 'b'", "unlink 'b'"]);
    expect(eachState(v, (s) => tree(s.path).size, { k: 0 }).length).toBeGreaterThan(0);  // its media still there
    v.close();
    expect(openInChild(v.dir)).toEqual({ opened: ['a'] });  // closed: the next opener may
  });

  test('a second openVolume in the same process is refused too (an OFD lock is per open, not per process)', () => {
    const v = newVolume();
    v.create('a');
    expectCode(() => udax.openVolume(v.dir), 'ERR_UDAX_VOLUME_LOCKED');
    expect(v.pendingOperations()).toEqual(["create 'a'"]);
    v.close();
    const again = udax.openVolume(v.dir);
    expect(again.list().map((e) => e.name)).toEqual(['a']);
    again.close();
  });

  test('a process that dies holding the volume releases it', () => {
    const dir = volumeDir();
    udax.openVolume(dir, { create: true }).close();
    expect(openInChild(dir, 'process.exit(0)')).toEqual({ opened: [] });  // exits without close(): .udax/ stays, locked by no one
    const v = udax.openVolume(dir);
    expect(v.list()).toEqual([]);
    v.close();
  });
});

describe('namespace', () => {
  test('create, open, list, rename, unlink, mkdir, rmdir change the directory as a reader sees it', () => {
    const v = newVolume();
    const a = v.create('a', 2 * PAGE);
    expect(a.size).toBe(2 * PAGE);
    a.write(Buffer.from('alpha'), 0);
    v.mkdir('d');
    v.create('d/b').write(Buffer.from('beta'), 0);
    expect(v.list()).toEqual([{ name: 'a', path: 'a', type: 'file' }, { name: 'd', path: 'd', type: 'directory' }]);
    expect(v.list('d')).toEqual([{ name: 'b', path: 'd/b', type: 'file' }]);
    v.rename('a', 'd/a2');
    expect(readFileSync(join(v.dir, 'd/a2')).subarray(0, 5).toString()).toBe('alpha');
    expect(v.open('d/a2').size).toBe(2 * PAGE);
    expect(v.stat('d/a2')).toEqual({ type: 'file', size: 2 * PAGE });
    expect(v.stat('d')).toEqual({ type: 'directory' });
    v.unlink('d/b');
    expect(existsSync(join(v.dir, 'd/b'))).toBe(false);
    v.unlink('d/a2');
    v.rmdir('d');
    expect(v.list()).toEqual([]);
    expect(readdirSync(v.dir)).toEqual(['.udax']);
    v.close();
    expect(existsSync(join(v.dir, '.udax'))).toBe(false);
  });

  test('rename replaces the target atomically; handles of the replaced file throw ERR_UDAX_UNLINKED', () => {
    const v = newVolume();
    const old = v.create('db');
    old.write(Buffer.from('old'), 0);
    const tmp = v.create('tmp');
    tmp.write(Buffer.from('new'), 0);
    v.rename('tmp', 'db');
    expect(readFileSync(join(v.dir, 'db')).subarray(0, 3).toString()).toBe('new');
    expect(tmp.name).toBe('db');
    expectCode(() => old.write(Buffer.from('x'), 0), 'ERR_UDAX_UNLINKED');
    expectCode(() => old.map(), 'ERR_UDAX_UNLINKED');
    expectCode(() => old.sync(), 'ERR_UDAX_UNLINKED');
    expect(v.list().map((e) => e.name)).toEqual(['db']);
    v.close();
  });

  test('an existing directory opens with its files durable, opened only when used', () => {
    const dir = volumeDir();
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'sub/f'), Buffer.alloc(PAGE, 7));
    const v = udax.openVolume(dir);
    expect(v.list('sub')).toEqual([{ name: 'f', path: 'sub/f', type: 'file' }]);
    expect(v.pendingOperations()).toEqual([]);
    const [state] = eachState(v, (s) => tree(s.path));
    expect(state.get('sub/f')).toEqual(Buffer.alloc(PAGE, 7));
    const f = v.open('sub/f');
    expect(f.file.media.kind).toBe('shadow');
    v.close();
  });

  test('bad names and bad operations are typed errors, and change nothing', () => {
    const v = newVolume();
    v.create('keep').write(Buffer.from('k'), 0);
    v.mkdir('d');
    v.create('d/x');
    const before = { list: v.list(), sub: v.list('d'), pending: v.pendingOperations(), files: tree(v.dir) };
    for (const bad of ['../x', '/abs', 'a/../b', './a', 'a//b', 'a/', '.udax', '.udax/0.media']) {
      expectCode(() => v.create(bad), 'ERR_UDAX_BAD_NAME');
      expectCode(() => v.open(bad), 'ERR_UDAX_BAD_NAME');
      expectCode(() => v.rename('keep', bad), 'ERR_UDAX_BAD_NAME');
      expectCode(() => v.unlink(bad), 'ERR_UDAX_BAD_NAME');
      expectCode(() => v.mkdir(bad), 'ERR_UDAX_BAD_NAME');
    }
    expectCode(() => v.create('a\0b'), 'ERR_INVALID_ARG_VALUE');
    expectCode(() => v.create(42 as unknown as string), 'ERR_INVALID_ARG_TYPE');
    expectCode(() => v.create('x'.repeat(256)), 'ENAMETOOLONG');
    expectCode(() => v.create('keep'), 'EEXIST');
    expectCode(() => v.create('nodir/x'), 'ENOENT');
    expectCode(() => v.create('keep/x'), 'ENOTDIR');
    expectCode(() => v.create('big', 100), 'ERR_OUT_OF_RANGE');
    expectCode(() => v.open('missing'), 'ENOENT');
    expectCode(() => v.open('d'), 'EISDIR');
    expectCode(() => v.unlink('missing'), 'ENOENT');
    expectCode(() => v.unlink('d'), 'EISDIR');
    expectCode(() => v.rename('missing', 'y'), 'ENOENT');
    expectCode(() => v.rename('d', 'y'), 'EISDIR');
    expectCode(() => v.rename('keep', 'd'), 'EISDIR');
    expectCode(() => v.rename('keep', 'nodir/y'), 'ENOENT');
    expectCode(() => v.mkdir('d'), 'EEXIST');
    expectCode(() => v.rmdir('d'), 'ENOTEMPTY');
    expectCode(() => v.rmdir('keep'), 'ENOTDIR');
    expectCode(() => v.rmdir('missing'), 'ENOENT');
    expectCode(() => v.list('keep'), 'ENOTDIR');
    expectCode(() => v.syncDirectory('missing'), 'ENOENT');
    expectCode(() => v.stat('missing'), 'ENOENT');
    let tooBig: unknown;
    try {
      v.create('huge', 2 ** 46);  // more entries than a table holds, or more bytes than /dev/shm has
    } catch (e) {
      tooBig = e;
    }
    expect(['EFBIG', 'ENOSPC']).toContain((tooBig as { code?: string }).code);
    expectCode(() => udax.openVolume(volumeDir(), { metadata: 'ext3' as udax.MetadataModelName }), 'ERR_OUT_OF_RANGE');
    expect({ list: v.list(), sub: v.list('d'), pending: v.pendingOperations(), files: tree(v.dir) }).toEqual(before);
    v.close();
  });

  test('closed handles and closed volumes are EBADF', () => {
    const v = newVolume();
    const f = v.create('f');
    f.close();
    expectCode(() => f.write(Buffer.from('x'), 0), 'EBADF');
    const g = v.open('f');
    v.close();
    expectCode(() => g.map(), 'EBADF');
    expectCode(() => v.create('h'), 'EBADF');
    expectCode(() => v.list(), 'EBADF');
  });

  test('a volume of 1,000 small files', () => {
    const v = newVolume();
    for (let d = 0; d < 25; d++) v.mkdir(`d${d}`);
    for (let i = 0; i < 1000; i++) v.create(`d${i % 25}/f${i}`).write(Buffer.from(`file ${i}`), 0);
    v.syncDirectory();
    expect(v.list('d3').length).toBe(40);
    const m = v.open('d7/f7').map();
    m.bytes[0] = 0x46;  // 'F'
    const states = eachState(v, (s) => ({ count: tree(s.path).size, first: text(tree(s.path).get('d7/f7'), 6) }));
    expect(states).toEqual([{ count: 1000, first: 'file 7' }, { count: 1000, first: 'File 7' }]);
    v.close();
  });
});

describe('metadata model', () => {
  /** create + write + fsync(file), no directory fsync; then a second file dirtied. */
  function createAndFsync(metadata: udax.MetadataModelName) {
    const v = newVolume({ metadata });
    const f = v.create('new');
    f.write(Buffer.from('payload'), 0);
    f.sync();
    const present = eachState(v, (s) => text(tree(s.path).get('new'), 7), { k: 2 });
    v.close();
    return present;
  }

  test('ext4/xfs: a file fsynced is present in every crash state, directory fsync or not', () => {
    const states = createAndFsync('ext4/xfs');
    expect(states.length).toBeGreaterThan(0);
    expect(new Set(states)).toEqual(new Set(['payload']));
  });

  test('strict POSIX: some crash state lacks a file whose directory was not fsynced', () => {
    const states = createAndFsync('strict-posix');
    expect(states).toContain(undefined);
    expect(states).toContain('payload');
  });

  test('strict POSIX: a directory fsync makes the name durable', () => {
    const v = newVolume({ metadata: 'strict-posix' });
    const f = v.create('new');
    f.write(Buffer.from('payload'), 0);
    f.sync();
    v.syncDirectory();
    expect(v.pendingOperations()).toEqual([]);
    expect(new Set(eachState(v, (s) => text(tree(s.path).get('new'), 7), { k: 3 }))).toEqual(new Set(['payload']));
    v.close();
  });

  test('ext4/xfs keeps a prefix of pending operations, in issue order', () => {
    const v = newVolume();
    v.create('a');
    v.create('b');
    v.create('c');
    const names = eachState(v, (s) => [...tree(s.path).keys()].join(','), { k: 1 });
    expect(names).toEqual(['', 'a', 'a,b', 'a,b,c']);
    v.close();
  });

  test('strict POSIX keeps any dependency-closed set: b without a, but never rename without its create', () => {
    const v = newVolume({ metadata: 'strict-posix' });
    v.create('a');
    v.create('b');
    v.rename('b', 'c');
    const names = new Set(eachState(v, (s) => [...tree(s.path).keys()].join(','), { k: 3 }));
    expect(names).toEqual(new Set(['', 'a', 'b', 'a,b', 'c', 'a,c']));
    v.close();
  });

  for (const metadata of ['ext4/xfs', 'strict-posix'] as const) {
    test(`${metadata}: write temp, fsync temp, rename over, fsync dir never shows a torn target`, () => {
      const v = newVolume({ metadata, granularity: 'cache-line' });
      const db = v.create('db', PAGE);
      db.write(Buffer.alloc(PAGE, 'o'), 0);
      db.sync();
      v.syncDirectory();
      const tmp = v.create('db.tmp', PAGE);
      const m = tmp.map();
      m.bytes.fill('n'.charCodeAt(0));
      const seen = new Set<string>();
      const check = (s: udax.VolumeCrashState) => {
        const t = tree(s.path).get('db')!;
        const kinds = new Set(t);
        expect(kinds.size, `state ${s.index} ${s.operations.map((o) => o.description)}`).toBe(1);
        seen.add(String.fromCharCode(t[0]));
      };
      tmp.sync();
      v.rename('db.tmp', 'db');
      eachState(v, check, { k: 2 });
      v.syncDirectory();
      eachState(v, check, { k: 2 });
      expect(seen).toEqual(new Set(['o', 'n']));
      v.close();
    });

    test(`${metadata}: without fsync of the temp file, a rename can show a torn target (the model finds it)`, () => {
      const v = newVolume({ metadata });
      const tmp = v.create('db.tmp', PAGE);
      tmp.map().bytes.fill(1);
      v.rename('db.tmp', 'db');
      const torn = eachState(v, (s) => {
        const t = tree(s.path).get('db');
        return t !== undefined && new Set(t).size > 1;
      }, { k: 3 });  // strict-posix: create + rename are 2 units, then one line
      expect(torn).toContain(true);
      v.close();
    });

    test(`${metadata}: unlink then re-create shows the old incarnation or the new one, never a mix`, () => {
      const v = newVolume({ metadata });
      const j1 = v.create('journal', PAGE);
      j1.write(Buffer.alloc(PAGE, 'A'), 0);
      j1.sync();
      v.syncDirectory();
      v.unlink('journal');
      const j2 = v.create('journal', PAGE);
      const m = j2.map();
      m.bytes.fill('B'.charCodeAt(0), 0, 128);  // two lines of the new one, not synced
      const contents = new Set(eachState(v, (s) => {
        const t = tree(s.path).get('journal');
        if (!t) return 'absent';
        const a = t.filter((c) => c === 65).length;
        const b = t.filter((c) => c === 66).length;
        expect(a === 0 || b === 0, `state ${s.index}: a mix of both incarnations`).toBe(true);
        return a === PAGE ? 'old' : 'new';
      }, { k: 3 }));
      expect(contents.has('old')).toBe(true);
      expect(contents.has('new')).toBe(true);
      v.close();
    });
  }

  test('mkdir and rmdir are operations a crash may lose', () => {
    const v = newVolume();
    v.mkdir('d');
    v.create('d/f');
    v.syncDirectory();
    v.unlink('d/f');
    v.rmdir('d');
    const shapes = eachState(v, (s) => readdirSync(s.path, { recursive: true }).map(String).sort().join(','));
    expect(shapes).toEqual(['d,d/f', 'd', '']);
    v.close();
  });
});

describe('crash states of a volume', () => {
  function twoFiles(size: number) {
    const v = newVolume();
    const a = v.create('a', size);
    const b = v.create('b', size);
    v.syncDirectory();
    const ma = a.map();
    const mb = b.map();
    ma.bytes[0] = 1;
    ma.bytes[size - 1] = 2;
    mb.bytes[PAGE] = 3;
    return { v, a, b, ma, mb };
  }

  test('an empty file: create(name, 0) is empty in every crash state until written and fsynced', () => {
    const v = newVolume({ metadata: 'strict-posix' });
    const f = v.create('journal', 0);
    v.syncDirectory();
    expect(f.size).toBe(0);
    f.sync();
    expect(eachState(v, (s) => statSync(join(s.path, 'journal')).size)).toEqual([0]);
    f.write(Buffer.from('hdr'), 0);
    expect(v.pendingOperations()).toEqual([`size 'journal' -> ${PAGE}`]);
    expect(eachState(v, (s) => [statSync(join(s.path, 'journal')).size, text(readFileSync(join(s.path, 'journal')), 3)])).toEqual([[0, ''], [PAGE, 'hdr']]);
    f.sync();
    expect(eachState(v, (s) => text(readFileSync(join(s.path, 'journal')), 3))).toEqual(['hdr']);
    v.close();
  });

  /** The size of each of names in every state (absent: -1). */
  const sizesIn = (v: udax.Volume, names: string[], k = 1) =>
    eachState(v, (s) => names.map((n) => (existsSync(join(s.path, n)) ? statSync(join(s.path, n)).size : -1)).join(' '), { k });

  test('sizes are metadata: a size change is durable at the file\'s fsync under both models, and shows the media\'s bytes', () => {
    for (const metadata of ['ext4/xfs', 'strict-posix'] as const) {
      const v = newVolume({ metadata });
      const f = v.create('log', PAGE);
      f.sync();
      v.syncDirectory();
      f.write(new Uint8Array(PAGE).fill(7), PAGE);  // past the end: the file grows, the data is durable on return
      expect(f.size).toBe(2 * PAGE);
      expect(f.file.durableSize).toBe(PAGE);
      // Not durable yet: a crash keeps the old size or the new one, with the written bytes.
      expect(eachState(v, (s) => { const b = readFileSync(join(s.path, 'log')); return [b.length, b[PAGE]]; })).toEqual([[PAGE, undefined], [2 * PAGE, 7]]);
      f.sync();
      expect(v.pendingOperations()).toEqual([]);
      expect(eachState(v, (s) => [statSync(join(s.path, 'log')).size, readFileSync(join(s.path, 'log'))[PAGE]])).toEqual([[2 * PAGE, 7]]);
      f.resize(PAGE);
      const states = eachState(v, (s) => { const b = readFileSync(join(s.path, 'log')); return [b.length, b[PAGE]]; });
      expect(states).toEqual([[2 * PAGE, 7], [PAGE, undefined]]);  // the shrink not kept shows the old bytes
      f.sync();
      expect(eachState(v, (s) => statSync(join(s.path, 'log')).size)).toEqual([PAGE]);
      v.close();
    }
  });

  test('ext4/xfs: another file\'s fsync commits a pending size change (grow and shrink); strict-posix: it does not', () => {
    for (const metadata of ['ext4/xfs', 'strict-posix'] as const) {
      const v = newVolume({ metadata });
      const a = v.create('a', PAGE);
      const b = v.create('b', PAGE);
      a.sync();
      b.sync();
      v.syncDirectory();
      a.write(new Uint8Array(PAGE).fill(9), PAGE);  // grow a
      expect(sizesIn(v, ['a'])).toEqual([`${PAGE}`, `${2 * PAGE}`]);  // before b's fsync: old or new
      b.sync();
      if (metadata === 'ext4/xfs') {
        expect(a.file.durableSize).toBe(2 * PAGE);  // the journal commit carried it: the file's own authority says so
        expect(eachState(v, (s) => { const x = readFileSync(join(s.path, 'a')); return [x.length, x[PAGE]]; })).toEqual([[2 * PAGE, 9]]);
      } else {
        expect(a.file.durableSize).toBe(PAGE);
        expect(sizesIn(v, ['a'])).toEqual([`${PAGE}`, `${2 * PAGE}`]);
        v.syncDirectory();  // a directory fsync does not carry a size change either
        expect(sizesIn(v, ['a'])).toEqual([`${PAGE}`, `${2 * PAGE}`]);
        a.sync();
      }
      expect(sizesIn(v, ['a'])).toEqual([`${2 * PAGE}`]);
      a.resize(PAGE);  // shrink a
      expect(sizesIn(v, ['a'])).toEqual([`${2 * PAGE}`, `${PAGE}`]);
      b.sync();
      expect(sizesIn(v, ['a'])).toEqual(metadata === 'ext4/xfs' ? [`${PAGE}`] : [`${2 * PAGE}`, `${PAGE}`]);
      if (metadata === 'ext4/xfs') expect(a.file.durableSize).toBe(PAGE);
      // A grow after the shrink (durable under ext4/xfs, pending under
      // strict-posix, where the media still holds the cut bytes): the cut
      // bytes are gone in every state that keeps the grow, zeros.
      a.resize(3 * PAGE);
      b.sync();
      const grown = eachState(v, (s) => readFileSync(join(s.path, 'a')), { k: 2 }).filter((x) => x.length === 3 * PAGE);
      expect(grown.length).toBeGreaterThan(0);
      for (const x of grown) expect(x.subarray(PAGE).every((c) => c === 0)).toBe(true);
      v.close();
    }
  });

  // ext4 and xfs do not reuse a freed block before the transaction that
  // freed it commits: a state that keeps a grow but not the shrink after it
  // shows the bytes as they were before the shrink, never what a write put
  // into the re-grown range since (nor a store through a mapping there).
  test('grow, shrink, write into the re-grown range: a state without the shrink shows the bytes before it', () => {
    for (const metadata of ['ext4/xfs', 'strict-posix'] as const) {
      const v = newVolume({ metadata });
      const f = v.create('log', PAGE);
      f.sync();
      v.syncDirectory();
      f.write(Buffer.from('first'), PAGE);  // grow (size op 0), data durable on return
      f.resize(PAGE);  // shrink (size op 1): the media keeps 'first' until fsync
      f.write(Buffer.from('second'), PAGE);  // grow again (size op 2), into the range the shrink cut
      const m = f.map();
      m.bytes[PAGE + 100] = 7;  // a store into the new block: a unit
      expect(v.pendingOperations()).toEqual([`size 'log' -> ${2 * PAGE}`, `size 'log' -> ${PAGE}`, `size 'log' -> ${2 * PAGE}`]);
      const seen = eachState(v, (s) => {
        const b = readFileSync(join(s.path, 'log'));
        return `${s.operations.map((o) => o.index).join(',')}:${b.length}:${text(b.subarray(PAGE), 6) ?? ''}:${b[PAGE + 100] ?? '-'}`;
      }, { k: 4 });
      // Kept through op 0 only: 'first' and no unit of the new block; through op 2: 'second', with or without the store.
      expect(seen).toEqual([
        `:${PAGE}::-`, `0:${2 * PAGE}:first\0:0`, `0,1:${PAGE}::-`, `0,1,2:${2 * PAGE}:second:0`, `0,1,2:${2 * PAGE}:second:7`,
      ]);
      const states = v.crashStates({ dir: `${v.dir}.states`, k: 4 });
      expect(states.with({ operations: [0], units: states.units.map((_, i) => i) }, (s) => [s.units.length, readFileSync(join(s.path, 'log'))[PAGE + 100]])).toEqual([0, 0]);
      states.close();
      f.sync();
      expect(eachState(v, (s) => text(readFileSync(join(s.path, 'log')).subarray(PAGE), 6))).toEqual(['second']);
      v.close();
    }
  });

  test('a size change through the DaxFile (vf.file, an attach of it) is refused: the volume records them; after close it is the file\'s again', () => {
    const v = newVolume();
    const f = v.create('log', PAGE);
    f.sync();
    v.syncDirectory();
    const attached = udax.attach(f.file.handle());  // as a worker would
    for (const dax of [f.file, attached]) {
      expectCode(() => dax.resize(2 * PAGE), 'ERR_UDAX_VOLUME_FILE');
      expectCode(() => dax.write(Buffer.from('x'), PAGE), 'ERR_UDAX_VOLUME_FILE');
      expect(dax.write(Buffer.from('in'), 10)).toBe(2);  // inside the size: data, allowed
    }
    expect(f.size).toBe(PAGE);
    expect(v.pendingOperations()).toEqual([]);
    f.resize(2 * PAGE);  // through the VolumeFile: recorded
    expect(v.pendingOperations()).toEqual([`size 'log' -> ${2 * PAGE}`]);
    attached.close();
    v.close();
    const plain = udax.open(join(v.dir, 'log'));
    plain.resize(3 * PAGE);
    expect(plain.size).toBe(3 * PAGE);
    plain.close();
  });

  test('ext4/xfs: a size change is kept only with every earlier pending operation (the journal\'s prefix)', () => {
    const v = newVolume();
    const a = v.create('a', PAGE);
    a.sync();
    v.syncDirectory();
    v.create('c', PAGE);  // pending, before a's grow
    a.resize(2 * PAGE);
    v.rename('c', 'd');  // pending, after it
    expect(v.pendingOperations()).toEqual(["create 'c'", `size 'a' -> ${2 * PAGE}`, "rename 'c' -> 'd'"]);
    expect(sizesIn(v, ['a', 'c', 'd'], 3)).toEqual([`${PAGE} -1 -1`, `${PAGE} ${PAGE} -1`, `${2 * PAGE} ${PAGE} -1`, `${2 * PAGE} -1 ${PAGE}`]);
    const states = v.crashStates({ dir: `${v.dir}.states` });
    expect(states.pending.map((o) => [o.kind, o.size])).toEqual([['create', undefined], ['size', 2 * PAGE], ['rename', undefined]]);
    expect(states.with({ operations: [1], units: [] }, (s) => s.operations.map((o) => o.description))).toEqual(["create 'c'", `size 'a' -> ${2 * PAGE}`]);
    states.close();
    v.close();
  });

  test('strict-posix: a size change depends on nothing but the file\'s earlier size changes', () => {
    const v = newVolume({ metadata: 'strict-posix' });
    const a = v.create('a', PAGE);
    a.resize(2 * PAGE);
    a.resize(3 * PAGE);
    // The create is pending (no directory fsync): a size change kept without it shows nothing of a.
    expect(new Set(sizesIn(v, ['a'], 3))).toEqual(new Set(['-1', `${PAGE}`, `${2 * PAGE}`, `${3 * PAGE}`]));
    const states = v.crashStates({ dir: `${v.dir}.states`, k: 3 });
    const kept = [...states].map((s) => s.operations.map((o) => o.index).join(','));
    expect(kept).toEqual(['', '0', '1', '0,1', '1,2', '0,1,2']);  // never 2 without 1
    states.close();
    a.sync();  // its own fsync: both size changes durable, the name still not
    expect(v.pendingOperations()).toEqual(["create 'a'"]);
    expect(sizesIn(v, ['a'])).toEqual(['-1', `${3 * PAGE}`]);
    v.close();
  });

  test('mapped stores past the durable size are units of the states that keep the grow', () => {
    const v = newVolume();
    const a = v.create('a', PAGE);
    a.sync();
    a.resize(2 * PAGE);
    const m = a.map();
    m.bytes[PAGE] = 5;
    const seen = eachState(v, (s) => { const x = readFileSync(join(s.path, 'a')); return `${x.length}:${x[PAGE] ?? '-'}:${s.units.length}`; }, { k: 2 });
    expect(seen).toEqual([`${PAGE}:-:0`, `${2 * PAGE}:0:0`, `${2 * PAGE}:5:1`]);
    v.close();
  });

  test('enumeration: every subset of at most k units, each once, deterministic', () => {
    const { v } = twoFiles(4 * PAGE);
    const states = v.crashStates({ dir: `${v.dir}.states`, k: 2 });
    expect(states.units.map((u) => [u.file, u.offset, u.length])).toEqual([['a', 0, 64], ['a', 4 * PAGE - 64, 64], ['b', PAGE, 64]]);
    expect(states.count).toBe(1 + 3 + 3 + 1);
    const seen = [...states].map((s) => s.units.map((u) => `${u.file}@${u.offset}`).join(' '));
    expect(seen).toEqual(['', 'a@0', 'a@16320', 'b@4096', 'a@0 a@16320', 'a@0 b@4096', 'a@16320 b@4096', 'a@0 a@16320 b@4096']);
    states.close();
    expect(existsSync(`${v.dir}.states`)).toBe(false);
    v.close();
  });

  test('each state is a plain directory with the units it names, and is undone after', () => {
    const { v } = twoFiles(4 * PAGE);
    const states = v.crashStates({ dir: `${v.dir}.states`, k: 3 });
    for (const s of states) {
      const t = tree(s.path);
      expect(t.get('a')![0]).toBe(s.units.some((u) => u.file === 'a' && u.offset === 0) ? 1 : 0);
      expect(t.get('a')![4 * PAGE - 1]).toBe(s.units.some((u) => u.file === 'a' && u.offset > 0) ? 2 : 0);
      expect(t.get('b')![PAGE]).toBe(s.units.some((u) => u.file === 'b') ? 3 : 0);
      expect(s.cost.bytes).toBe(64 * s.units.length);
    }
    const base = tree(states.dir);
    expect(base.get('a')!.every((c) => c === 0)).toBe(true);
    states.close();
    v.close();
  });

  test('sampling: the same seed gives the same states; k bounds the units', () => {
    const v = newVolume();
    const f = v.create('f', 16 * PAGE);
    const m = f.map();
    for (let p = 0; p < 16; p++) m.bytes[p * PAGE] = p + 1;
    v.create('g');
    const states = v.crashStates({ dir: `${v.dir}.states`, limit: 1 << 20 });
    const draw = (opts: udax.SampleOptions) => [...states.sample(20, opts)].map((s) => ({ ops: s.operations.length, units: s.units.map((u) => u.offset) }));
    const first = draw({ seed: 7 });
    expect(draw({ seed: 7 })).toEqual(first);
    expect(draw({ seed: 8 })).not.toEqual(first);
    for (const s of draw({ seed: 9, k: 3 })) expect(s.ops > 0 ? s.units.length + 1 : s.units.length).toBeLessThanOrEqual(3);
    expect(new Set(first.map((s) => s.units.length)).size).toBeGreaterThan(1);
    states.close();
    v.close();
  });

  test('a state costs the units it changes, not the file size', () => {
    const costs: { bytes: number; namespaceOps: number }[][] = [];
    for (const size of [16 * PAGE, 4096 * PAGE]) {
      const { v } = twoFiles(size);
      v.create('c');
      costs.push(eachState(v, (s) => s.cost, { k: 2 }));
      v.close();
    }
    expect(costs[1]).toEqual(costs[0]);
    expect(Math.max(...costs[0].map((c) => c.bytes))).toBe(3 * 64);
  });

  test('the recovery may copy a state; the next state is unaffected', () => {
    const { v } = twoFiles(4 * PAGE);
    const states = v.crashStates({ dir: `${v.dir}.states`, k: 1 });
    const copy = `${v.dir}.copy`;
    made.push(copy);
    states.with({ operations: [], units: [0] }, (s) => s.copyTo(copy));
    expect(tree(copy).get('a')![0]).toBe(1);
    expect(tree(states.dir).get('a')![0]).toBe(0);
    states.close();
    v.close();
  });

  test('crash-state misuse: over the limit, a second state at once, after close', () => {
    const { v } = twoFiles(4 * PAGE);
    const dir = `${v.dir}.states`;
    expectCode(() => v.crashStates({ dir, k: 3, limit: 4 }), 'ERR_OUT_OF_RANGE');
    expect(existsSync(dir)).toBe(false);
    const states = v.crashStates({ dir, k: 1 });
    expectCode(() => states.with({ operations: [], units: [0] }, () => states.with({ operations: [], units: [1] }, () => 0)), 'ERR_OUT_OF_RANGE');
    expect(tree(dir).get('a')![0]).toBe(0);  // the outer state was undone too
    states.close();
    expectCode(() => states.with({ operations: [], units: [] }, () => 0), 'EBADF');
    v.close();
  });

  test('a file opened without media refuses crash states (ERR_UDAX_NO_MEDIA), building nothing', () => {
    const v = newVolume({ media: 'none' });
    v.create('f');
    expectCode(() => v.crashStates({ dir: `${v.dir}.states` }), 'ERR_UDAX_NO_MEDIA');
    expect(existsSync(`${v.dir}.states`)).toBe(false);
    expectCode(() => v.crashStates({ dir: join(v.dir, 'inside') }), 'ERR_UDAX_SAME_FILE');
    v.close();
  });

  /** Take `rounds` snapshots of v while worker w stores a counter into
   * files a then b (test/workers/volume-writer.mjs, volume-mapper.mjs:
   * stopped by flags[0], its progress in flags[1]); every snapshot shows a
   * equal to b or b + 1. Then stop it, sync both: the durable state is the
   * live files, holding its last counter. beforeRound runs before each. */
  async function expectNeverTorn(v: udax.Volume, [a, b]: udax.VolumeFile[], w: Worker, flags: Int32Array, rounds: number, beforeRound?: (round: number) => void): Promise<void> {
    let last: number;
    try {
      await nextMessage(w, (m) => m === 'ready');
      let snapshots = 0;
      for (let round = 0; round < rounds; round++) {
        if (round % 10 === 0) await sleep(1);
        beforeRound?.(round);
        const states = v.crashStates({ dir: `${v.dir}.states`, k: 0 });
        states.with({ operations: [], units: states.units.map((_, i) => i) }, (s) => {
          const t = tree(s.path);
          const x = t.get('a')!.readInt32LE(0);
          const y = t.get('b')!.readInt32LE(0);
          if (x !== 0) snapshots++;
          expect([y, y + 1], `snapshot ${round}`).toContain(x);
        });
        states.close();
      }
      expect(snapshots).toBeGreaterThan(0);
      expect(Atomics.load(flags, 1)).toBeGreaterThan(0);
    } finally {
      Atomics.store(flags, 0, 1);
      last = (await nextMessage(w, (m) => (m as { stopped?: number }).stopped !== undefined)).stopped;
      await w.terminate();
    }
    a.sync();
    b.sync();
    const [durable] = eachState(v, (s) => tree(s.path));
    for (const name of ['a', 'b']) {
      expect(durable.get(name)!.readInt32LE(0)).toBe(last);
      expect(durable.get(name)).toEqual(readFileSync(join(v.dir, name)));
    }
  }

  // Under every tracker: snapshots taken while another thread stores lose no
  // store (after a final sync the media equals the live file), leave no
  // writable page behind a clean entry, and are never torn: the writer waits
  // while a snapshot is taken (sigsegv, sigbus: on the write-protected
  // entries; async: on its mappings frozen read-only, native/freeze.cc).
  test('snapshots while a writer thread stores: nothing lost, never torn', async () => {
    const v = newVolume();
    const a = v.create('a');
    const b = v.create('b');
    v.syncDirectory();
    const [ma, mb] = [a.map(), b.map()];
    const control = new SharedArrayBuffer(8);
    const flags = new Int32Array(control);
    const w = new Worker(workerUrl('volume-writer.mjs'), {
      workerData: {
        a: { fileHandle: a.file.handle(), mappingHandle: ma.handle() },
        b: { fileHandle: b.file.handle(), mappingHandle: mb.handle() },
        control,
      },
    });
    await expectNeverTorn(v, [a, b], w, flags, 200, (round) => {
      if (round % 20 === 5) a.sync();
    });
    ma.bytes[8] = 1;  // the page is write-protected again: the store is seen
    expect(a.file.dirtyRanges()).toEqual([{ offset: 0, length: PAGE }]);
    v.close();
  });

  // A mapping made while a snapshot is taken holds its stores back too
  // (async: mapRegion waits for the thaw when the file is frozen,
  // native/freeze.cc): a writer that maps both files afresh for each store
  // never shows b ahead of a, and loses nothing.
  test('snapshots while a writer thread maps and stores: never torn', async () => {
    const v = newVolume();
    const a = v.create('a');
    const b = v.create('b');
    v.syncDirectory();
    const control = new SharedArrayBuffer(8);
    const flags = new Int32Array(control);
    const w = new Worker(workerUrl('volume-mapper.mjs'), { workerData: { a: a.file.handle(), b: b.file.handle(), control } });
    await expectNeverTorn(v, [a, b], w, flags, 300);
    v.close();
  });
});

describe('checkVolumeRecovery', () => {
  /** The recovery of a tiny engine: 'db', if present, is one value throughout. */
  const untorn = (dir: string) => {
    const p = join(dir, 'db');
    if (!existsSync(p)) return;
    if (new Set(readFileSync(p)).size !== 1) throw new Error('torn db');
  };

  function commit(v: udax.Volume, value: number, fsyncTemp: boolean): void {
    const tmp = v.create('db.tmp');
    tmp.map().bytes.fill(value);
    if (fsyncTemp) tmp.sync();
    v.rename('db.tmp', 'db');
  }

  test('the write-temp, fsync, rename, fsync-dir protocol passes at every step', () => {
    for (const metadata of ['ext4/xfs', 'strict-posix'] as const) {
      const v = newVolume({ metadata });
      for (let value = 1; value <= 3; value++) {
        commit(v, value, true);
        const r = udax.checkVolumeRecovery(v, untorn, { dir: `${v.dir}.states`, k: 2 });
        expect(r.message).toBe('');
        expect(r.checked).toBeGreaterThan(1);
        v.syncDirectory();
      }
      v.close();
    }
  });

  test('renaming a temp file that was never fsynced fails; the failure is reduced to one unit and the rename', () => {
    const v = newVolume();
    commit(v, 1, false);
    const progress: number[] = [];
    const r = udax.checkVolumeRecovery(v, untorn, { dir: `${v.dir}.states`, k: 2, progress: (n) => progress.push(n) });
    expect(r.ok).toBe(false);
    expect(r.failures.length).toBe(1);
    expect(progress[progress.length - 1]).toBe(r.checked);
    const f = r.failures[0];
    expect((f.error as Error).message).toBe('torn db');
    expect(f.minimal!.units.length).toBe(1);
    expect(f.minimal!.units[0].file).toBe('db');
    expect(f.minimal!.operations.map((o) => o.description)).toEqual(["create 'db.tmp'", "rename 'db.tmp' -> 'db'"]);
    expect(r.message).toMatch(/under the ext4\/xfs metadata model: torn db/);
    const all = udax.checkVolumeRecovery(v, untorn, { dir: `${v.dir}.states`, k: 2, stop: 'all', reduce: false });
    expect(all.failures.length).toBe(64);  // one per cache line of the page, each with the rename
    expect(all.failures.every((x) => x.minimal === undefined)).toBe(true);
    const sampled = udax.checkVolumeRecovery(v, untorn, { dir: `${v.dir}.states`, k: 0, includeAll: false, random: 50, seed: 3, stop: 'all', reduce: false });
    expect(sampled.failures.length).toBeGreaterThan(0);
    expect(sampled.failures.every((x) => x.kind === 'random')).toBe(true);
    v.close();
  });

  test('workers: the state pool reports what one thread reports (failures, classes, minimal sets, order), and leaves no directory', async () => {
    const v = newVolume();
    commit(v, 1, false);
    const t = v.create('other');
    t.map().bytes.fill(9);  // units of a second file: states the recovery accepts
    const mod = `${v.dir}.recover.mjs`;
    made.push(mod);
    // torn 'db' is a throw (class 'Error'), a missing 'other' a class string
    writeFileSync(mod, "import { existsSync, readFileSync } from 'node:fs';\nimport { join } from 'node:path';\n" +
      "export function recover(dir) { const p = join(dir, 'db'); if (existsSync(p) && new Set(readFileSync(p)).size !== 1) throw new Error('torn db'); return existsSync(join(dir, 'other')) || 'lost-other'; }\n");
    const { recover } = await import(mod);
    const plain = (r: udax.VolumeRecoveryReport) => ({ ...r, failures: r.failures.map((f) => ({ ...f, error: f.error instanceof Error ? `${f.error.name}: ${f.error.message}` : f.error })) });
    const dir = `${v.dir}.states`;
    for (const stop of ['all', 'first'] as const) {
      const opts = { dir, k: 2, random: 20, seed: 5, stop };
      const one = udax.checkVolumeRecovery(v, recover, opts);
      expect(one.ok).toBe(false);
      if (stop === 'all') expect(new Set(one.failures.map((f) => f.class))).toEqual(new Set(['Error', 'lost-other']));
      for (const workers of [1, 2, 3]) {
        const progress: number[] = [];
        const pooled = await udax.checkVolumeRecovery(v, recover, { ...opts, workers, module: { path: mod }, progress: (n) => progress.push(n) });
        expect(plain(pooled)).toEqual(plain(one));
        expect(progress.length).toBeGreaterThan(0);
        for (const p of [dir, `${dir}.stash`, ...[0, 1, 2].flatMap((n) => [`${dir}.w${n}`, `${dir}.w${n}.stash`])]) expect(existsSync(p)).toBe(false);
      }
    }
    v.close();
  });

  test('workers: with grows, shrinks, creates, renames and unlinks pending, every state a worker builds equals the one built in-thread (files and bytes), both models', async () => {
    const mod = `${volumeDir()}.listing.mjs`;
    made.push(mod);
    // The recovery names the state's directory: every file and its bytes (a class string, so every state reports it).
    writeFileSync(mod, "import { readdirSync, readFileSync, statSync } from 'node:fs';\nimport { join } from 'node:path';\n" +
      'export function recover(dir) { const out = []; for (const n of readdirSync(dir, { recursive: true }).map(String).sort()) { const p = join(dir, n); ' +
      "out.push(statSync(p).isFile() ? [n, readFileSync(p).toString('base64')] : [n, 'dir']); } return JSON.stringify(out); }\n");
    const { recover } = await import(mod);
    for (const metadata of ['ext4/xfs', 'strict-posix'] as const) {
      const v = newVolume({ metadata });
      const a = v.create('a', 2 * PAGE);
      const b = v.create('b', 2 * PAGE);
      const c = v.create('c', PAGE);
      v.create('u', PAGE).map().bytes.fill(4);
      for (const f of [a, b, c]) f.map().bytes.fill(1, 0, 64);
      b.map().bytes.fill(1, PAGE, PAGE + 64);  // bytes the shrink cuts (a unit where a state keeps the grow after it)
      for (const f of [a, b, c, v.open('u')]) f.sync();
      v.syncDirectory();
      a.write(new Uint8Array(PAGE).fill(7), 2 * PAGE);  // grow by a write past the end
      a.map().bytes.fill(2, 0, 64);  // a unit below the durable size
      b.resize(PAGE);  // shrink, then grow: the cut bytes are zeros where the grow is kept
      b.resize(3 * PAGE);
      b.map().bytes.fill(3, 2 * PAGE, 2 * PAGE + 64);  // a unit past the durable size
      v.create('d', PAGE).write(new Uint8Array(100).fill(8), 0);
      v.rename('c', 'e');
      v.unlink('u');
      expect(v.pendingOperations().length).toBeGreaterThanOrEqual(6);
      const opts = { dir: `${v.dir}.states`, k: 2, random: 30, seed: 11, stop: 'all' as const, reduce: false };
      const one = udax.checkVolumeRecovery(v, recover, opts);
      const listings = one.failures.map((f) => f.class);
      expect(listings.length).toBe(one.checked);  // every state reported its directory
      expect(new Set(listings).size).toBeGreaterThan(8);  // and they differ
      for (const workers of [2, 3]) {
        const pooled = await udax.checkVolumeRecovery(v, recover, { ...opts, workers, module: { path: mod } });
        expect(pooled.checked).toBe(one.checked);
        expect(pooled.failures.map((f) => [f.kind, f.index, f.class])).toEqual(one.failures.map((f) => [f.kind, f.index, f.class]));
      }
      v.close();
    }
  });

  test('workers: a worker error comes back typed, a dying worker fails the call, nothing hangs or stays behind', async () => {
    const v = newVolume();
    commit(v, 1, false);
    const dir = `${v.dir}.states`;
    const write = (name: string, body: string) => {
      const p = `${v.dir}.${name}.mjs`;
      made.push(p);
      writeFileSync(p, body);
      return p;
    };
    const coded = write('coded', "throw Object.assign(new Error('no engine here'), { code: 'ERR_MY_ENGINE' });\n");
    const exits = write('exits', 'export function recover() { process.exit(3); }\n');
    const none = write('none', 'export const check = () => true;\n');
    const ok = () => true;
    await expect(udax.checkVolumeRecovery(v, ok, { dir, workers: 2, module: { path: coded } })).rejects.toMatchObject({ code: 'ERR_MY_ENGINE', message: 'no engine here' });
    await expect(udax.checkVolumeRecovery(v, ok, { dir, workers: 2, module: { path: exits } })).rejects.toThrow(/worker exited \(code 3\)/);
    await expect(udax.checkVolumeRecovery(v, ok, { dir, workers: 2, module: { path: none } })).rejects.toThrow(/must export a function recover/);
    await expect(udax.checkVolumeRecovery(v, ok, { dir, workers: 2, module: { path: none, recover: 'check' } })).resolves.toMatchObject({ ok: true });
    const stop = () => { throw new RangeError('progress says stop'); };
    await expect(udax.checkVolumeRecovery(v, ok, { dir, workers: 2, module: { path: none, recover: 'check' }, progress: stop })).rejects.toThrow('progress says stop');
    await expect(udax.checkVolumeRecovery(v, ok, { dir, workers: 2, module: { path: none, recover: 'check' } })).resolves.toMatchObject({ ok: true });
    expect(() => udax.checkVolumeRecovery(v, ok, { dir, workers: 2 } as unknown as udax.CheckVolumeRecoveryPoolOptions)).toThrow(TypeError);
    expect(() => udax.checkVolumeRecovery(v, ok, { dir, workers: 0, module: { path: none } })).toThrow(RangeError);
    for (const p of [dir, `${dir}.stash`, `${dir}.w0`, `${dir}.w0.stash`, `${dir}.w1`, `${dir}.w1.stash`]) expect(existsSync(p)).toBe(false);
    v.close();
  });

  test('workers: workers are reused across calls, never after they died; idle ones do not keep the process alive', async () => {
    const v = newVolume();
    commit(v, 1, false);
    const dir = `${v.dir}.states`;
    const flag = `${v.dir}.exit-flag`;
    const mod = `${v.dir}.flagged.mjs`;
    made.push(flag, mod);
    // Dies while the flag exists; else counts the states this instance of the module saw.
    writeFileSync(mod, "import { existsSync } from 'node:fs';\nlet seen = 0;\n" +
      `export function recover() { if (existsSync(${JSON.stringify(flag)})) process.exit(3); seen++; return true; }\nexport const seenBy = () => seen;\n`);
    writeFileSync(flag, '');
    await expect(udax.checkVolumeRecovery(v, () => true, { dir, workers: 2, module: { path: mod } })).rejects.toThrow(/worker exited \(code 3\)/);
    rmSync(flag);
    const opts = { dir, k: 2, workers: 2, module: { path: mod } };
    const first = await udax.checkVolumeRecovery(v, () => true, opts);
    const second = await udax.checkVolumeRecovery(v, () => true, opts);
    expect(first).toMatchObject({ ok: true });
    expect(second).toEqual(first);
    for (const p of [dir, `${dir}.stash`, `${dir}.w0`, `${dir}.w0.stash`, `${dir}.w1`, `${dir}.w1.stash`]) expect(existsSync(p)).toBe(false);
    v.close();
    // A process whose last call used workers exits at once (the idle workers are unreferenced; they would end after 10 s).
    // Run with -e and --input-type=module: pool workers must not inherit those.
    made.push(`${v.dir}.child`);
    const child = runChild(`
      import * as udax from ${JSON.stringify(distIndex)};
      const v = udax.openVolume(${JSON.stringify(`${v.dir}.child`)}, { create: true });
      v.create('a', 4096).map().bytes.fill(1);
      const t0 = Date.now();
      const r = await udax.checkVolumeRecovery(v, () => true, { dir: ${JSON.stringify(`${v.dir}.child.states`)}, workers: 2, module: { path: ${JSON.stringify(mod)} } });
      v.close();
      console.log(r.ok, r.checked);
      process.on('exit', () => console.log('exit after', Date.now() - t0 < 8000 ? 'less than 8 s' : 'too long'));
    `, { timeout: 30_000 });
    expect(child.stderr).toBe('');
    expect(child.stdout.trim().split('\n')).toEqual(['true 3', 'exit after less than 8 s']);
  });

  test('ddmin finds a 1-minimal failing subset', () => {
    const fails = (s: number[]) => s.includes(3) && s.includes(7);
    expect(ddmin(Array.from({ length: 20 }, (_, i) => i), fails).sort()).toEqual([3, 7]);
  });
});
