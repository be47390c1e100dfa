// The persistence model (issue #4): media, crash images, errseq writeback
// errors, injected failures, timing, and a write-ahead log checked over every
// enumerated crash state. Uses the compiled package, like the child processes.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import * as udax from 'udax';
import { errseqCheckAndAdvance, errseqSample, errseqSet } from 'udax/testing';
import { distIndex, removeScratch, scratchPath } from './helpers.js';
// @ts-expect-error: a plain .mjs example without types
import { Wal, recoverWal } from '../examples/wal.mjs';

const PAGE = 4096;
const scratch = (tag = 'p') => scratchPath(tag);
afterAll(removeScratch);

function shadowFile(opts: Partial<udax.OpenOptions> = {}): udax.DaxFile {
  return udax.open(scratch(), { create: true, size: 16 * PAGE, media: 'shadow', ...opts });
}

const read = (path: string) => new Uint8Array(readFileSync(path));

describe('media: updated only by flushes', () => {
  test('a store not synced is absent from crashImage(none) and present with all', () => {
    const f = shadowFile();
    const m = f.map();
    m.bytes[100] = 7;
    const img = `${f.path}.img`;
    const none = f.crashImage(img, { units: 'none' });
    expect(read(img)[100]).toBe(0);
    expect(none.differed).toEqual([{ offset: 64, length: 64 }]);
    expect(none.persisted).toEqual([]);
    const all = f.crashImage(img, { units: 'all' });
    expect(read(img)[100]).toBe(7);
    expect(all.persisted).toEqual([{ offset: 64, length: 64 }]);
    expect(read(f.media.path!)[100]).toBe(0);  // the media itself is untouched
    f.close();
  });

  test.each([
    ['cache-line', undefined, PAGE, 64],
    ['page', undefined, PAGE, 4096],
    ['page', 512, PAGE, 512],
    ['byte8', undefined, PAGE, 8],
    ['cache-line', undefined, udax.PMD_SIZE, 64],
  ] as const)('granularity %s (sector %s, entry %i): media equals the data after sync', (granularity, sectorSize, entrySize, unit) => {
    const f = udax.open(scratch(), { create: true, size: 2 * udax.PMD_SIZE, entrySize, media: 'shadow', granularity, sectorSize });
    expect(f.media).toMatchObject({ kind: 'shadow', granularity, unitSize: unit });
    const m = f.map();
    for (let i = 0; i < 200; i++) m.bytes[(i * 7919 * 13) % m.length] = i + 1;
    expect(Buffer.compare(read(f.path), read(f.media.path!))).not.toBe(0);
    const differed = f.crashImage(`${f.path}.img`).differed;
    expect(differed.length).toBeGreaterThan(0);
    expect(differed.every((u) => u.length === unit && u.offset % unit === 0)).toBe(true);
    f.sync();
    expect(Buffer.compare(read(f.path), read(f.media.path!))).toBe(0);
    expect(f.crashImage(`${f.path}.img`, { units: 'all' }).differed).toEqual([]);
    expect(f.stats().persistence.mediaBytes).toBeGreaterThan(0);
    f.close();
  });

  test('a range sync copies only its entries; stores during later syncs re-dirty and reach the media next time', () => {
    const f = shadowFile();
    const m = f.map();
    m.bytes[10] = 1;
    m.bytes[5 * PAGE] = 2;
    f.sync(0, PAGE);
    expect(read(f.media.path!)[10]).toBe(1);
    expect(read(f.media.path!)[5 * PAGE]).toBe(0);
    m.bytes[11] = 3;  // faults again (write-protected by the sync)
    expect(f.crashImage(`${f.path}.img`).differed.map((u) => u.offset)).toEqual([0, 5 * PAGE]);
    f.sync();
    expect(Array.from(read(f.media.path!).subarray(10, 12))).toEqual([1, 3]);
    expect(read(f.media.path!)[5 * PAGE]).toBe(2);
    f.close();
  });

  test('random crash images: same seed, same image', () => {
    const f = shadowFile({ granularity: 'byte8' });
    const m = f.map();
    for (let i = 0; i < 400; i += 8) m.bytes[i] = 0xff;
    const a = f.crashImage(`${f.path}.img`, { units: 'random', seed: 42 });
    const imgA = read(`${f.path}.img`);
    const b = f.crashImage(`${f.path}.img`, { seed: 42 });
    expect(b.units).toBe('random');
    expect(b.persisted).toEqual(a.persisted);
    expect(Buffer.compare(read(`${f.path}.img`), imgA)).toBe(0);
    const c = f.crashImage(`${f.path}.img`, { seed: 43 });
    expect(c.persisted).not.toEqual(a.persisted);
    expect(a.persisted.length).toBeGreaterThan(0);
    expect(a.persisted.length).toBeLessThan(a.differed.length);
    f.close();
  });

  test('crash images need a media; bad options are refused', () => {
    const plain = udax.open(scratch(), { create: true, size: PAGE });
    expect(plain.media.kind).toBe('none');
    expect(() => plain.crashImage(`${plain.path}.img`)).toThrow(/ERR_UDAX_NO_MEDIA/);
    plain.close();
    expect(() => udax.open(scratch(), { create: true, size: PAGE, media: 'disk' as never })).toThrow(TypeError);
    expect(() => udax.open(scratch(), { create: true, size: PAGE, media: 'shadow', granularity: 'page', sectorSize: 100 })).toThrow(RangeError);
    expect(() => udax.open(scratch(), { create: true, size: PAGE, mediaPath: '/tmp/x' })).toThrow(TypeError);
    expect(() => udax.open(scratch(), { create: true, size: PAGE, timing: 'floppy' as never })).toThrow(RangeError);
  });
});

describe('a real kill -9', () => {
  test('leaves a media file equal to the last synced state, with nothing unsynced', async () => {
    const path = scratch('kill');
    const script = `
      import * as udax from ${JSON.stringify(distIndex)};
      const f = udax.open(${JSON.stringify(path)}, { create: true, size: 65536, media: 'shadow' });
      const m = f.map();
      m.bytes.set(new TextEncoder().encode('synced'), 0);
      m.bytes[40000] = 1;
      f.sync();
      m.bytes.set(new TextEncoder().encode('UNSYNCED'), 100);  // same entry as a synced store
      m.bytes[50000] = 2;                                      // an entry never synced
      console.log('READY');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`child not ready: ${out} ${err}`)), 20_000);
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('READY')) { clearTimeout(t); resolve(); }
      });
    });
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const expected = new Uint8Array(65536);
    expected.set(new TextEncoder().encode('synced'), 0);
    expected[40000] = 1;
    expect(Buffer.compare(read(`${path}.media`), expected)).toBe(0);
    // The data file (page cache) kept the unsynced stores: only the media is
    // the post-power-failure image.
    const data = read(path);
    expect(new TextDecoder().decode(data.subarray(100, 108))).toBe('UNSYNCED');
    expect(data[50000]).toBe(2);
  });
});

describe('writeback errors (errseq_t)', () => {
  test('errseq word: unseen errors collapse, a new opener sees an unseen error, SEEN ones are not replayed', () => {
    const w = new Int32Array(new SharedArrayBuffer(4));
    const a = errseqSample(w, 0);
    errseqSet(w, 0, 5);
    errseqSet(w, 0, 28);  // unseen: replaces the errno, same counter
    expect(errseqSample(w, 0)).toBe(0);  // opened now: still told
    const r = errseqCheckAndAdvance(w, 0, a);
    expect(r.errno).toBe(28);
    expect(errseqCheckAndAdvance(w, 0, r.cursor).errno).toBe(0);
    const late = errseqSample(w, 0);  // opened after it was seen: not told
    expect(errseqCheckAndAdvance(w, 0, late).errno).toBe(0);
    errseqSet(w, 0, 5);
    expect(errseqCheckAndAdvance(w, 0, late).errno).toBe(5);
  });

  test('two handles each see the error once, like fsync on two fds', () => {
    const f = shadowFile();
    const m = f.map();
    const h1 = f.openHandle();
    const h2 = f.openHandle();
    m.bytes[0] = 1;
    f.injectWritebackError({ offset: 0, length: PAGE, errno: 'EIO' });
    expect(() => h1.sync()).toThrow(expect.objectContaining({ code: 'EIO', errno: 5, syscall: 'fsync' }));
    expect(() => h1.sync()).not.toThrow();
    expect(() => h2.sync()).toThrow(expect.objectContaining({ code: 'EIO' }));  // nothing dirty, still told
    expect(() => h2.sync()).not.toThrow();
    expect(() => f.sync()).toThrow(expect.objectContaining({ code: 'EIO' }));  // the DaxFile is a handle too
    expect(() => f.sync()).not.toThrow();
    const h3 = f.openHandle();  // opened after the error was seen
    expect(() => h3.sync()).not.toThrow();
    // A second error, ENOSPC this time: every handle is told once again.
    m.bytes[PAGE] = 1;
    f.injectWritebackError({ offset: PAGE, length: PAGE, errno: 28 });
    expect(() => h3.sync()).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
    for (const h of [h1, h2, h3]) {
      if (h !== h3) expect(() => h.sync()).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
      expect(() => h.sync()).not.toThrow();
    }
    expect(f.stats().persistence.errorsReported).toBe(6);
    h1.close();
    expect(() => h1.sync()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    f.close();
  });

  test('mark-clean (ext4/XFS): the failed data is lost exactly as on Linux', () => {
    const f = shadowFile();
    const m = f.map();
    m.bytes[1000] = 42;
    m.bytes[2 * PAGE] = 9;  // another entry: written back fine
    f.injectWritebackError({ offset: 0, length: 1, data: 'mark-clean' });
    expect(() => f.sync()).toThrow(expect.objectContaining({ code: 'EIO' }));
    expect(f.dirtyRanges()).toEqual([]);  // marked clean
    expect(m.bytes[1000]).toBe(42);  // the page (cache) still shows the new data
    expect(read(f.media.path!)[1000]).toBe(0);  // it never reached the media
    expect(read(f.media.path!)[2 * PAGE]).toBe(9);
    // The retry "succeeds": nothing is dirty, the error was already reported.
    // This is the PostgreSQL 2018 fsync problem: retrying fsync does not
    // write the data again.
    expect(f.sync()).toEqual({ entries: 0, bytes: 0 });
    expect(read(f.media.path!)[1000]).toBe(0);
    // And no crash image can bring it back: it is not even a candidate.
    const r = f.crashImage(`${f.path}.img`, { units: 'all' });
    expect(r.differed).toEqual([]);
    expect(read(`${f.path}.img`)[1000]).toBe(0);
    expect(f.stats().persistence).toMatchObject({ failedEntries: 1, lostEntries: 1 });
    // Only a new store re-dirties it (it faults: the page was write-protected).
    m.bytes[1001] = 1;
    f.sync();
    expect(read(f.media.path!)[1000]).toBe(42);
    f.close();
  });

  test('keep-dirty: the entry stays dirty and the next sync persists it', () => {
    const f = shadowFile();
    const m = f.map();
    m.bytes[1000] = 42;
    f.injectWritebackError({ offset: 0, length: PAGE, data: 'keep-dirty', times: 2 });
    expect(() => f.sync()).toThrow(expect.objectContaining({ code: 'EIO' }));
    expect(f.dirtyRanges()).toEqual([{ offset: 0, length: PAGE }]);
    expect(() => f.sync()).toThrow(expect.objectContaining({ code: 'EIO' }));  // second failure: a new error
    expect(read(f.media.path!)[1000]).toBe(0);
    expect(f.stats().entriesCleaned).toBe(0);  // flushed twice, cleaned never
    expect(f.sync().entries).toBe(1);  // third: the device works again
    expect(read(f.media.path!)[1000]).toBe(42);
    expect(f.dirtyRanges()).toEqual([]);
    expect(f.stats().persistence).toMatchObject({ failedEntries: 2, lostEntries: 0 });
    f.close();
  });

  test('injected errors work without a media, and misuse is refused', () => {
    const f = udax.open(scratch(), { create: true, size: 4 * PAGE });
    const m = f.map();
    m.bytes[0] = 1;
    f.injectWritebackError({ times: Infinity });
    expect(() => f.sync()).toThrow(expect.objectContaining({ code: 'EIO' }));
    m.bytes[0] = 2;
    expect(() => f.sync()).toThrow(expect.objectContaining({ code: 'EIO' }));
    expect(() => f.injectWritebackError({ errno: 'ENOPE' })).toThrow(RangeError);
    expect(() => f.injectWritebackError({ offset: 8 * PAGE })).toThrow(RangeError);
    expect(() => f.injectWritebackError({ data: 'drop' as never })).toThrow(RangeError);
    f.close();
  });
});

describe('timing emulation', () => {
  test('the optane preset charges per flushed line and per fence, reported in stats', () => {
    const f = shadowFile({ timing: 'optane' });
    const m = f.map();
    for (let p = 0; p < 8; p++) m.bytes[p * PAGE] = 1;
    const r = f.sync();
    const lines = r.bytes / 64;
    const expected = lines * udax.OPTANE.lineNs + udax.OPTANE.fenceNs;  // one run, one fence
    const { delayNs } = f.stats().persistence;
    expect(delayNs).toBeGreaterThanOrEqual(expected * 0.99);
    expect(delayNs).toBeLessThan(expected * 20 + 1e6);
    f.close();
  });
});

describe('crash-state enumeration and the recovery checker', () => {
  test('enumerates every subset of at most k differing units, plus all', () => {
    const f = shadowFile();
    const m = f.map();
    m.bytes[0] = 1;
    m.bytes[64] = 2;
    m.bytes[PAGE] = 3;
    const states = [...f.crashStates({ k: 2 })];
    // 3 units: C(3,0) + C(3,1) + C(3,2) = 7, plus the all-persisted state.
    expect(states.length).toBe(8);
    expect(states.map((s) => s.persisted.map((u) => u.offset))).toEqual([
      [], [0], [64], [PAGE], [0, 64], [0, PAGE], [64, PAGE], [0, 64, PAGE],
    ]);
    expect(Array.from(states[5].image.subarray(0, 1))).toEqual([1]);
    expect(states[5].image[64]).toBe(0);
    expect(states[5].image[PAGE]).toBe(3);
    expect(() => f.crashStates({ k: 3, limit: 5 })).toThrow(RangeError);
    f.close();
  });

  test.each(['cache-line', 'byte8', 'page'] as const)('a write-ahead log recovers from every crash state (%s)', (granularity) => {
    const f = shadowFile({ granularity });
    const wal = new Wal(f);
    let points = 0;
    for (let i = 0; i < 5; i++) {
      wal.append(`record ${i}`, () => {
        points++;
        udax.assertRecovers(f, (image) => { recoverWal(image); }, { k: 2, random: 20, seed: 1000 * i });
      });
    }
    expect(points).toBe(10);
    expect(recoverWal(read(f.media.path!))).toEqual(['record 0', 'record 1', 'record 2', 'record 3', 'record 4']);
    f.close();
  });

  test('the seeded bug (a missing sync) is caught, with the units that differed', () => {
    const f = shadowFile();
    const wal = new Wal(f, { buggy: true });
    let report: udax.RecoveryReport | undefined;
    wal.append('first', () => {
      const r = udax.checkRecovery(f, (image) => { recoverWal(image); });
      if (!r.ok) report ??= r;
    });
    expect(report).toBeDefined();
    const failure = report!.failure!;
    expect(failure.kind).toBe('enumerated');
    // The header line (count = 1) persisted, the record line did not.
    expect(failure.persisted).toEqual([{ offset: 0, length: 64 }]);
    expect(failure.differed).toEqual([{ offset: 0, length: 64 }, { offset: 64, length: 64 }]);
    expect(report!.message).toMatch(/committed record 0 .* torn or missing/);
    expect(report!.message).toContain('[0, 64)');
    // Random sampling finds it too, and names the seed that reproduces it.
    wal.append('second', (step: string) => {
      if (step !== 'count written') return;
      const r = udax.checkRecovery(f, (image) => { recoverWal(image); }, { k: 0, includeAll: false, random: 50, seed: 7 });
      expect(r.ok).toBe(false);
      expect(r.failure!.kind).toBe('random');
      const seed = r.failure!.seed!;
      f.crashImage(`${f.path}.img`, { seed });
      expect(() => recoverWal(read(`${f.path}.img`))).toThrow(/torn or missing/);
    });
    f.close();
  });
});

describe('workers share the model', () => {
  test('a sync in a worker copies to the media and its errors reach the opener\'s handles', () => {
    const path = scratch('worker');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
      import * as udax from ${JSON.stringify(distIndex)};
      import { Worker } from 'node:worker_threads';
      import { readFileSync } from 'node:fs';
      const f = udax.open(${JSON.stringify(path)}, { create: true, size: 65536, media: 'shadow' });
      const h = f.openHandle();
      const code = \`
        import * as udax from ${JSON.stringify(pathToFileURL(distIndex).href)};
        import { workerData, parentPort } from 'node:worker_threads';
        const f = udax.attach(workerData);
        const m = f.map();
        m.bytes[5] = 55;
        f.sync();
        m.bytes[9000] = 1;
        try { f.sync(); } catch (e) { parentPort.postMessage(e.code); }
        f.close();
      \`;
      f.injectWritebackError({ offset: 8192, length: 4096 });
      const w = new Worker(new URL('data:text/javascript,' + encodeURIComponent(code)), { workerData: f.handle() });
      w.on('message', (m) => console.log('worker', m));
      w.on('exit', () => {
        console.log('media', readFileSync(${JSON.stringify(path + '.media')})[5], readFileSync(${JSON.stringify(path + '.media')})[9000]);
        try { h.sync(); } catch (e) { console.log('handle', e.code); }
        f.close();
      });
    `], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('worker EIO');
    expect(r.stdout).toContain('media 55 0');
    expect(r.stdout).toContain('handle EIO');
  });
});

describe('the fsync-semantics walkthrough', () => {
  test('examples/fsync-experiment.mjs runs as written', () => {
    const script = fileURLToPath(new URL('../examples/fsync-experiment.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('experiment complete');
  });
});

describe('the DAX write path: file.write and file.read', () => {
  test('a write is durable on return, with no mapping, no fault and no dirty entry', () => {
    const f = shadowFile();
    const path = f.path;
    expect(f.write(Buffer.from('durable'), PAGE + 10)).toBe(7);
    expect(f.dirtyRanges()).toEqual([]);
    expect(f.stats()).toMatchObject({ writeFaults: 0, syncs: 0 });
    expect(Buffer.from(read(`${path}.media`).subarray(PAGE + 10, PAGE + 17)).toString()).toBe('durable');
    const [none] = f.crashStates({ k: 0, includeAll: false });
    expect(Buffer.from(none.image.subarray(PAGE + 10, PAGE + 17)).toString()).toBe('durable');
    const back = Buffer.alloc(7);
    expect(f.read(back, PAGE + 10)).toBe(7);
    expect(back.toString()).toBe('durable');
    expect(Buffer.from(f.map().view(PAGE + 10, 7)).toString()).toBe('durable');  // mappings see it
    f.close();
  });

  test('stores made through a mapping stay undurable beside a write to the same entry', () => {
    const f = shadowFile();
    const m = f.map();
    m.bytes[0] = 1;                                   // a store: dirty, in the cache
    f.write(new Uint8Array([2, 2]), 100);             // a write to the same page: durable
    const [none] = f.crashStates({ k: 0, includeAll: false });
    expect([none.image[0], none.image[100], none.image[101]]).toEqual([0, 2, 2]);
    expect(f.dirtyRanges()).toEqual([{ offset: 0, length: PAGE }]);
    f.sync();
    expect(read(`${f.path}.media`)[0]).toBe(1);
    f.close();
  });

  test('read stops at the end of the file; the timing model charges a write', () => {
    const f = shadowFile({ timing: { lineNs: 1000, fenceNs: 500 } });
    f.write(Buffer.alloc(128, 3), 64);                // 2 lines + a fence
    expect(f.stats().persistence.delayNs).toBeGreaterThanOrEqual(2500);
    const tail = Buffer.alloc(100);
    expect(f.read(tail, f.size - 10)).toBe(10);
    expect(f.read(tail, f.size)).toBe(0);
    f.close();
  });

  test('bad writes: past what the file can grow to, bad data, a read-only file; nothing changes', () => {
    const f = shadowFile();
    const size = f.size;
    expect(() => f.write(Buffer.alloc(10), 2 ** 40)).toThrow(expect.objectContaining({ code: 'EFBIG', syscall: 'ftruncate' }));
    expect([f.size, statSync(f.path).size, statSync(`${f.path}.media`).size]).toEqual([size, size, size]);
    expect(() => f.write('text' as unknown as Uint8Array, 0)).toThrow(TypeError);
    expect(() => f.write(Buffer.alloc(1), -1)).toThrow(RangeError);
    expect(read(f.path).every((b) => b === 0)).toBe(true);
    f.close();
    expect(() => f.write(Buffer.alloc(1), 0)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'pwrite' }));
    const ro = udax.open(f.path, { readOnly: true });
    expect(() => ro.write(Buffer.alloc(1), 0)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'pwrite' }));
    ro.close();
  });
});
