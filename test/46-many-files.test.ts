// Thousands of files in one volume and one process (an LSM engine's SST
// files, a maildir): each file costs one descriptor, one VMA per mapping
// (its fallback, its media, the user's) and nothing that runs out near
// 2,000 files; the fault handlers find a mapping by a binary search, not a
// scan of every mapping. Running out of descriptors is a typed error that
// changes nothing.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import * as udax from 'udax';
import { distIndex, removeScratch, runChild, scratchPath, TRACKER } from './helpers.js';

const PAGE = 4096;
const FILES = 10_000;
const DIRS = 100;
const made: string[] = [];
afterAll(() => {
  for (const p of made) for (const q of [p, `${p}.states`, `${p}.states.stash`]) rmSync(q, { recursive: true, force: true });
  removeScratch();
});

const nameOf = (i: number) => `d${i % DIRS}/f${i}`;
const stamp = (i: number, how: string) => `${how} ${i}`;

test(`a volume of ${FILES.toLocaleString('en')} files: opened, written through mappings and write, synced, crashed (${TRACKER})`, () => {
  const dir = scratchPath('many');
  made.push(dir);
  const v = udax.openVolume(dir, { create: true });
  try {
    for (let d = 0; d < DIRS; d++) v.mkdir(`d${d}`);
    v.syncDirectory();
    const files: udax.VolumeFile[] = [];
    for (let i = 0; i < FILES; i++) files.push(v.create(nameOf(i), PAGE));
    for (let d = 0; d < DIRS; d++) v.syncDirectory(`d${d}`);
    expect(v.pendingOperations()).toEqual([]);

    // A sample of 1 in 50 is stored into through a mapping (kept mapped, as
    // an engine keeps its segments mapped), another through write().
    const mapped = new Map<number, udax.Mapping>();
    for (let i = 0; i < FILES; i += 50) {
      const m = files[i].map();
      m.bytes.set(Buffer.from(stamp(i, 'mapped')), 0);
      mapped.set(i, m);
    }
    for (let i = 25; i < FILES; i += 50) files[i].write(Buffer.from(stamp(i, 'written')), 0);
    expect(readFileSync(join(dir, nameOf(50)), 'utf8').startsWith(stamp(50, 'mapped'))).toBe(true);  // live
    for (let i = 0; i < FILES; i += 25) files[i].sync();

    // The media holds what was synced, for every sampled file.
    for (let i = 0; i < FILES; i += 25) {
      const media = readFileSync(files[i].file.media.path!);
      expect(media.subarray(0, stamp(i, 'x').length + 6).toString().replace(/\0+$/, '')).toBe(stamp(i, i % 50 === 0 ? 'mapped' : 'written'));
    }

    // One store after the syncs: a crash keeps it or not, and nothing else differs.
    mapped.get(100)!.bytes.set(Buffer.from('unsynced'), 0);
    const states = v.crashStates({ dir: `${dir}.states`, k: 1 });
    try {
      const seen: string[] = [];
      for (const s of states) {
        const at = (i: number) => readFileSync(join(s.path, nameOf(i)), 'utf8').replace(/\0+$/, '');
        seen.push(at(100).slice(0, 8));
        expect(at(50)).toBe(stamp(50, 'mapped'));
        expect(at(FILES - 25)).toBe(stamp(FILES - 25, 'written'));
        expect(at(7)).toBe('');
        expect(readdirSync(join(s.path, 'd7')).length).toBe(FILES / DIRS);
      }
      expect([...new Set(seen)].sort()).toEqual(['mapped 1', 'unsynced']);
    } finally {
      states.close();
    }
  } finally {
    v.close();
  }
}, 240_000);

test('out of descriptors: create is EMFILE and changes nothing; a file closed by its durable unlink frees one', () => {
  const dir = scratchPath('emfile');
  made.push(dir);
  const script = `
    import * as udax from ${JSON.stringify(distIndex)};
    import { readdirSync } from 'node:fs';
    const v = udax.openVolume(${JSON.stringify(dir)}, { create: true });
    let n = 0, err;
    try { for (;;) { v.create('f' + n, 4096).write(Buffer.from('x' + n), 0); n++; } } catch (e) { err = e; }
    const out = { n, name: err.name, code: err.code, syscall: err.syscall };
    out.list = v.list().length;
    out.onDisk = readdirSync(${JSON.stringify(dir)}).filter((f) => f !== '.udax').length;
    out.media = readdirSync(${JSON.stringify(dir)} + '/.udax').filter((f) => f !== 'lock').length;  // the volume's lock file
    out.pending = v.pendingOperations().length;
    v.syncDirectory();
    v.unlink('f0');
    v.syncDirectory();
    const again = v.create('f' + n, 4096);
    again.write(Buffer.from('y'), 0);
    again.sync();
    out.after = v.list().length;
    v.close();
    console.log(JSON.stringify(out));
  `;
  const r = spawnSync('/bin/sh', ['-c', 'ulimit -n 256 && exec "$0" --input-type=module -e "$1"', process.execPath, script], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env },
  });
  expect(r.stderr).toBe('');
  const out = JSON.parse(r.stdout);
  expect(out.n).toBeGreaterThan(150);  // one descriptor a file: the media's is opened only when needed
  expect(out).toMatchObject({ name: 'DaxError', code: 'EMFILE', syscall: 'open', list: out.n, onDisk: out.n, media: out.n, pending: out.n, after: out.n });
});

test('out of VMAs (vm.max_map_count): map is ENOMEM and changes nothing; the mappings given back, the file maps, stores and syncs', () => {
  const path = scratchPath('vmas');
  const script = `
    import * as udax from ${JSON.stringify(distIndex)};
    import { readFileSync, rmSync } from 'node:fs';
    const f = udax.open(${JSON.stringify(path)}, { create: true, size: 64 * 4096, media: 'shadow' });
    const maps = [];
    let err;
    try { for (;;) maps.push(f.map({ offset: 4096 * (maps.length % 64), length: 4096 })); } catch (e) { err = e; }
    const out = { n: maps.length, name: err.name, code: err.code, syscall: err.syscall };
    for (const m of maps) m.unmap();
    const m = f.map();
    m.bytes[4096 * 3] = 42;
    f.sync();
    out.media = readFileSync(${JSON.stringify(path)} + '.media')[4096 * 3];
    m.unmap();
    f.close();
    console.log(JSON.stringify(out));
  `;
  const r = runChild(script, { timeout: 120_000 });
  expect(r.stderr).toBe('');
  const out = JSON.parse(r.stdout);
  expect(out.n).toBeGreaterThan(30_000);  // a 1-page mapping is one VMA: the kernel's limit binds, not udax's
  expect(out).toMatchObject({ name: 'DaxError', code: 'ENOMEM', syscall: 'mmap', media: 42 });
}, 150_000);
