// Layer 2: dirty tracking and writeback on one thread.
import { afterAll, describe, expect, test } from 'vitest';
import { open, PMD_SIZE, type DaxFile } from 'udax';
import { noFaultHook, removeScratch, scratchPath, writablePages, writesSeen } from './helpers.js';

afterAll(removeScratch);

const PAGE = 4096;

function freshFile(size = 64 * PAGE, entrySize = PAGE): DaxFile {
  return open(scratchPath(), { create: true, size, entrySize });
}

describe('write faults', () => {
  // Each store kind must fault once per page per sync epoch, whatever the API.
  const stores: Record<string, (bytes: Uint8Array, page: number) => void> = {
    'typed array index': (b, p) => { b[p * PAGE + 7] = 1; b[p * PAGE + 99] = 2; },
    'Float64Array': (b, p) => { new Float64Array(b.buffer, b.byteOffset + p * PAGE, 4)[1] = 1.5; },
    'DataView': (b, p) => { const dv = new DataView(b.buffer, b.byteOffset); dv.setUint32(p * PAGE + 8, 0xdeadbeef); dv.setBigUint64(p * PAGE + 64, 1n); },
    'Buffer.write': (b, p) => { Buffer.from(b.buffer, b.byteOffset, b.byteLength).write('hello', p * PAGE + 10); },
    'Buffer.writeUInt32LE': (b, p) => { Buffer.from(b.buffer, b.byteOffset, b.byteLength).writeUInt32LE(42, p * PAGE); },
    'Buffer.copy': (b, p) => { Buffer.from('copied').copy(Buffer.from(b.buffer, b.byteOffset, b.byteLength), p * PAGE + 1); },
    'Buffer.fill': (b, p) => { Buffer.from(b.buffer, b.byteOffset, b.byteLength).fill(7, p * PAGE, p * PAGE + 100); },
    'TypedArray.set': (b, p) => { b.set([1, 2, 3], p * PAGE + 5); },
    'Atomics.store': (b, p) => { Atomics.store(new Int32Array(b.buffer, b.byteOffset + p * PAGE, 4), 0, 5); },
  };
  for (const [name, store] of Object.entries(stores)) {
    test(`${name}: one fault per page per sync epoch`, () => {
      const f = freshFile();
      const m = f.map();
      for (let epoch = 0; epoch < 3; epoch++) {
        const before = writesSeen(f);
        for (const page of [3, 4, 9]) { store(m.bytes, page); store(m.bytes, page); }
        expect(writesSeen(f) - before).toBe(3);
        expect(f.dirtyRanges()).toEqual([{ offset: 3 * PAGE, length: 2 * PAGE }, { offset: 9 * PAGE, length: PAGE }]);
        expect(f.sync()).toEqual({ entries: 3, bytes: 3 * PAGE });
        expect(f.dirtyRanges()).toEqual([]);
      }
      f.close();
    });
  }

  test('the store lands and reads back, with no fault for reads', () => {
    const f = freshFile();
    const m = f.map();
    const x = m.bytes[100];
    expect(x).toBe(0);
    expect(writesSeen(f)).toBe(0);  // async: a page only read is not reported
    m.bytes[100] = 200;
    expect(m.bytes[100]).toBe(200);
    f.close();
  });
});

describe('sync', () => {
  // sigsegv, sigbus: the page protections are the tracker's own (async maps read-write)
  test.skipIf(noFaultHook)('clears DIRTY and write-protects exactly the dirty pages, which a store re-dirties', () => {
    const f = freshFile(16 * PAGE);
    const m = f.map();
    expect(writablePages(m).every((w) => !w)).toBe(true);
    m.bytes[2 * PAGE] = 1;
    m.bytes[5 * PAGE] = 1;
    expect(writablePages(m).map((w, i) => (w ? i : -1)).filter((i) => i >= 0)).toEqual([2, 5]);
    f.sync();
    expect(writablePages(m).some((w) => w)).toBe(false);
    expect(f.stats()).toMatchObject({ syncs: 1, entriesCleaned: 2, bytesFlushed: 2 * PAGE, dirtyEntries: 0 });
    m.bytes[5 * PAGE + 1] = 2;
    expect(f.dirtyRanges()).toEqual([{ offset: 5 * PAGE, length: PAGE }]);
    expect(writablePages(m, 5 * PAGE, PAGE)).toEqual([true]);
    f.close();
  });

  // sigsegv, sigbus: the page protections are the tracker's own (async maps read-write)
  test.skipIf(noFaultHook)('a range sync writes back only that range', () => {
    const f = freshFile(16 * PAGE);
    const m = f.map();
    for (const p of [1, 6, 12]) m.bytes[p * PAGE] = 1;
    expect(f.sync(4 * PAGE, 4 * PAGE)).toEqual({ entries: 1, bytes: PAGE });
    expect(f.dirtyRanges()).toEqual([{ offset: PAGE, length: PAGE }, { offset: 12 * PAGE, length: PAGE }]);
    expect(writablePages(m, 6 * PAGE, PAGE)).toEqual([false]);
    expect(writablePages(m, 12 * PAGE, PAGE)).toEqual([true]);
    f.close();
  });

  test('a sync of a clean file does nothing', () => {
    const f = freshFile();
    expect(f.sync()).toEqual({ entries: 0, bytes: 0 });
    f.close();
  });

  // sigsegv, sigbus: the page protections are the tracker's own (async maps read-write)
  test.skipIf(noFaultHook)('two shared mappings of one file are both cleaned', () => {
    const f = freshFile(16 * PAGE);
    const a = f.map();
    const b = f.map({ offset: 4 * PAGE, length: 8 * PAGE });
    a.bytes[4 * PAGE] = 1;          // entry 4 via a
    b.bytes[0 + 1] = 2;             // entry 4 via b
    b.bytes[PAGE] = 3;              // entry 5 via b
    expect(a.bytes[4 * PAGE + 1]).toBe(2);  // same file pages
    expect(writablePages(a, 4 * PAGE, PAGE)).toEqual([true]);
    expect(writablePages(b, 0, 2 * PAGE)).toEqual([true, true]);
    expect(f.sync()).toEqual({ entries: 2, bytes: 2 * PAGE });
    expect(writablePages(a).some((w) => w)).toBe(false);
    expect(writablePages(b).some((w) => w)).toBe(false);
    b.bytes[0] = 9;
    expect(f.stats().writeFaults).toBe(4);
    f.close();
  });

  test('a page dirtied through a mapping that was then unmapped is still written back', () => {
    const f = freshFile();
    const m = f.map();
    m.bytes[3 * PAGE] = 1;
    m.unmap();
    expect(f.dirtyRanges()).toEqual([{ offset: 3 * PAGE, length: PAGE }]);
    expect(f.sync()).toEqual({ entries: 1, bytes: PAGE });
    f.close();
  });
});

describe('private mappings', () => {
  test('are copy-on-write, writable at once, and not tracked', () => {
    const f = freshFile();
    const shared = f.map();
    const priv = f.map({ private: true });
    priv.bytes[10] = 5;
    expect(shared.bytes[10]).toBe(0);
    expect(f.stats().writeFaults).toBe(0);
    expect(f.dirtyRanges()).toEqual([]);
    shared.bytes[PAGE] = 1;
    f.sync();
    expect(writablePages(priv, 0, PAGE)).toEqual([true]);  // sync leaves private mappings alone
    f.close();
  });
});

describe('PMD (2 MiB) entries', () => {
  // sigsegv, sigbus: counts faults and page protections (async: test/38-async)
  test.skipIf(noFaultHook)('a store anywhere dirties and unprotects the whole block; sync flushes all of it', () => {
    const f = freshFile(2 * PMD_SIZE, PMD_SIZE);
    expect(f.entrySize).toBe(PMD_SIZE);
    const m = f.map();
    m.bytes[PMD_SIZE + 12345] = 1;
    expect(f.stats().writeFaults).toBe(1);
    expect(f.dirtyRanges()).toEqual([{ offset: PMD_SIZE, length: PMD_SIZE }]);
    const w = writablePages(m);
    expect(w.slice(0, 512).some((x) => x)).toBe(false);
    expect(w.slice(512).every((x) => x)).toBe(true);
    m.bytes[2 * PMD_SIZE - 1] = 2;               // same entry: no new fault
    expect(f.stats().writeFaults).toBe(1);
    expect(f.sync()).toEqual({ entries: 1, bytes: PMD_SIZE });
    expect(writablePages(m).some((x) => x)).toBe(false);
    f.close();
  });

  test('a mapping covering part of a PMD entry unprotects only its part', () => {
    const f = freshFile(PMD_SIZE, PMD_SIZE);
    const m = f.map({ offset: 64 * PAGE, length: 16 * PAGE });
    m.bytes[0] = 1;
    expect(writablePages(m).every((x) => x)).toBe(true);
    expect(f.sync()).toEqual({ entries: 1, bytes: PMD_SIZE });
    f.close();
  });
});

describe('prepareWrite and system calls', () => {
  // sigsegv, sigbus: the page protections are the tracker's own (async maps read-write)
  test.skipIf(noFaultHook)('fs.readSync into a write-protected page fails; prepareWrite makes it work and dirty', async () => {
    const { openSync, readSync, writeFileSync, closeSync } = await import('node:fs');
    const src = scratchPath('src');
    writeFileSync(src, Buffer.alloc(3 * PAGE, 0x5a));
    const fd = openSync(src, 'r');
    const f = freshFile();
    const m = f.map();
    expect(() => readSync(fd, m.view(PAGE, PAGE), 0, PAGE, 0)).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    m.prepareWrite(PAGE, 2 * PAGE);
    expect(f.dirtyRanges()).toEqual([{ offset: PAGE, length: 2 * PAGE }]);
    expect(readSync(fd, m.view(PAGE, 2 * PAGE), 0, 2 * PAGE, 0)).toBe(2 * PAGE);
    expect(m.bytes[PAGE + 5]).toBe(0x5a);
    f.sync();
    expect(m.readFromFile(fd, 0, 8 * PAGE, 3 * PAGE)).toBe(3 * PAGE);
    expect(f.dirtyRanges()).toEqual([{ offset: 8 * PAGE, length: 3 * PAGE }]);
    expect(m.bytes[10 * PAGE + 100]).toBe(0x5a);
    closeSync(fd);
    f.close();
  });

  test('readFromFileAsync reads a file region into the mapping', async () => {
    const { writeFileSync } = await import('node:fs');
    const { open: openAsync } = await import('node:fs/promises');
    const src = scratchPath('src');
    writeFileSync(src, Buffer.alloc(4 * PAGE, 0x33));
    const fh = await openAsync(src, 'r');
    const f = freshFile();
    const m = f.map();
    expect(await m.readFromFileAsync(fh, PAGE, 0, 4 * PAGE)).toBe(3 * PAGE);  // short at EOF
    expect(m.bytes[2 * PAGE]).toBe(0x33);
    expect(m.bytes[3 * PAGE]).toBe(0);
    await fh.close();
    f.close();
  });
});

describe('unmap and close', () => {
  test('detaches this thread\'s views: stores are dropped, the file is untouched', () => {
    const path = scratchPath();
    const f = open(path, { create: true, size: 4 * PAGE });
    const m = f.map();
    const bytes = m.bytes;
    const view = m.view(PAGE, 16);
    m.unmap();
    expect(bytes.length).toBe(0);
    expect(view.length).toBe(0);
    bytes[0] = 1;
    view[0] = 1;
    const again = f.map();
    expect(again.bytes[0]).toBe(0);
    expect(again.bytes[PAGE]).toBe(0);
    f.close();
    expect(again.unmapped).toBe(true);
  });

  test('data written and synced is in the file for a plain read', async () => {
    const { readFileSync } = await import('node:fs');
    const path = scratchPath();
    const f = open(path, { create: true, size: 2 * PAGE });
    f.map().bytes.set(Buffer.from('persist me'), 100);
    f.sync();
    f.close();
    expect(readFileSync(path).subarray(100, 110).toString()).toBe('persist me');
    const g = open(path);
    expect(Buffer.from(g.map().view(100, 10)).toString()).toBe('persist me');
    g.close();
  });
});

describe('explicit resource management', () => {
  test('DaxFile, Mapping and DaxHandle dispose (using): unmap, close, close', () => {
    const f = freshFile();
    const m = f.map();
    const h = f.openHandle();
    m[Symbol.dispose]();
    expect(m.unmapped).toBe(true);
    h[Symbol.dispose]();
    expect(() => h.sync()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    f[Symbol.dispose]();
    expect(f.closed).toBe(true);
  });
});
