// Files that grow and shrink: file.resize() and write() past the end, with
// the kernel's semantics for mappings that reach past the new end, the entry
// table growing in place under concurrent users, and sizes as metadata in
// the persistence model (durable at fsync).
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, test } from 'vitest';
import * as udax from 'udax';
import { daxError, distIndex, nextMessage, removeScratch, runChild, scratchPath, shmFree, TRACKER, workerUrl, writablePages } from './helpers.js';

const PAGE = 4096;
afterAll(removeScratch);

function shadowFile(pages = 4, opts: udax.OpenOptions = {}): udax.DaxFile {
  return udax.open(scratchPath('resize'), { create: true, size: pages * PAGE, media: 'shadow', ...opts });
}

/** The crash image with no dirty unit persisted (what was synced), as bytes. */
function syncedImage(f: udax.DaxFile): Buffer {
  const path = `${f.path}.img`;
  f.crashImage(path, { units: 'none' });
  return readFileSync(path);
}

/** Everything a failed call must leave as it was. */
function state(f: udax.DaxFile) {
  const s = f.stats();
  return {
    size: f.size, onDisk: statSync(f.path).size, media: statSync(`${f.path}.media`).size, durable: f.durableSize,
    dirty: f.dirtyRanges(), dirtyEntries: s.dirtyEntries, cleaned: s.entriesCleaned,
  };
}

describe('grow', () => {
  test('grow, store, sync: the crash image has the old size until the fsync, then the new bytes', () => {
    const f = shadowFile(4);
    f.map().bytes[0] = 1;
    f.sync();
    f.resize(8 * PAGE);
    expect([f.size, statSync(f.path).size, f.durableSize]).toEqual([8 * PAGE, 8 * PAGE, 4 * PAGE]);
    expect(f.dirtyRanges()).toEqual([]);                     // new entries start clean
    const m = f.map();                                        // the grown file
    expect(m.length).toBe(8 * PAGE);
    expect(m.bytes.subarray(4 * PAGE).every((b) => b === 0)).toBe(true);
    m.bytes[6 * PAGE] = 7;
    expect(f.dirtyRanges()).toEqual([{ offset: 6 * PAGE, length: PAGE }]);
    let image = syncedImage(f);
    expect(image.length).toBe(4 * PAGE);                      // old durable size, old bytes only
    expect(image[0]).toBe(1);
    f.sync(0, 8 * PAGE);                                      // a range sync: data, not the size
    expect(f.durableSize).toBe(4 * PAGE);
    expect(syncedImage(f).length).toBe(4 * PAGE);
    expect(f.crashImage(`${f.path}.img`, { units: 'all' }).differed).toEqual([]);
    f.sync();                                                 // fsync: size + data durable
    expect(f.durableSize).toBe(8 * PAGE);
    image = syncedImage(f);
    expect([image.length, image[0], image[6 * PAGE]]).toEqual([8 * PAGE, 1, 7]);
    expect(readFileSync(`${f.path}.media`)).toEqual(readFileSync(f.path));
    f.close();
  });

  test('write past the end grows the file (to whole pages); data durable on return, size at fsync', () => {
    const f = shadowFile(2);
    expect(f.write(Buffer.from('tail'), 3 * PAGE + 10)).toBe(4);
    expect([f.size, statSync(f.path).size, f.durableSize]).toEqual([4 * PAGE, 4 * PAGE, 2 * PAGE]);
    expect(f.dirtyRanges()).toEqual([]);
    expect(syncedImage(f).length).toBe(2 * PAGE);            // the size is not durable yet
    expect(readFileSync(`${f.path}.media`).subarray(3 * PAGE + 10, 3 * PAGE + 14).toString()).toBe('tail');
    f.sync();
    expect(syncedImage(f).subarray(3 * PAGE + 10, 3 * PAGE + 14).toString()).toBe('tail');
    const back = Buffer.alloc(4);
    expect(f.read(back, 3 * PAGE + 10)).toBe(4);
    expect(back.toString()).toBe('tail');
    f.close();
  });

  test('2 MiB entries: grow by part of an entry, store in the new part, sync', () => {
    const MiB = 2 ** 20;
    const f = udax.open(scratchPath('pmd'), { create: true, size: 3 * MiB, entrySize: udax.PMD_SIZE, media: 'shadow' });
    const before = f.map();
    before.bytes[3 * MiB - 1] = 1;
    f.resize(5 * MiB);                                        // entry 1 grows to whole, entry 2 is new
    const m = f.map({ offset: 2 * MiB, length: 3 * MiB });
    m.bytes[2 * MiB] = 2;                                     // file offset 4 MiB
    expect(f.dirtyRanges()).toEqual([{ offset: 2 * MiB, length: 3 * MiB }]);
    f.sync();
    expect(f.dirtyRanges()).toEqual([]);
    const image = syncedImage(f);
    expect([image.length, image[3 * MiB - 1], image[4 * MiB]]).toEqual([5 * MiB, 1, 2]);
    f.resize(3 * MiB + PAGE);                                 // shrink inside entry 1
    expect(f.size).toBe(3 * MiB + PAGE);
    f.sync();
    expect(syncedImage(f).length).toBe(3 * MiB + PAGE);
    f.close();
  });
});

describe('shrink', () => {
  test('entries past the end are dropped, dirty or not; the crash image keeps the old length and bytes until fsync', () => {
    const f = shadowFile(8);
    const m = f.map();
    m.bytes[PAGE] = 1;
    m.bytes[6 * PAGE] = 2;
    f.sync();
    m.bytes[0] = 3;
    m.bytes[6 * PAGE] = 4;                                    // dirty, then cut: gone
    m.unmap();
    f.resize(4 * PAGE);
    expect([f.size, statSync(f.path).size, f.durableSize]).toEqual([4 * PAGE, 4 * PAGE, 8 * PAGE]);
    expect(f.dirtyRanges()).toEqual([{ offset: 0, length: PAGE }]);
    expect(f.stats().dirtyEntries).toBe(1);
    let image = syncedImage(f);
    expect([image.length, image[PAGE], image[6 * PAGE]]).toEqual([8 * PAGE, 1, 2]);  // old length, old bytes
    f.sync();
    expect(statSync(`${f.path}.media`).size).toBe(4 * PAGE);  // the media is cut at fsync
    image = syncedImage(f);
    expect([image.length, image[0], image[PAGE]]).toEqual([4 * PAGE, 3, 1]);
    f.close();
  });

  test('a shrink then a grow before fsync: the regrown pages are zeros, and stale media bytes are candidates, not durable', () => {
    const f = shadowFile(8);
    const m = f.map();
    m.bytes[6 * PAGE] = 9;
    f.sync();
    m.unmap();
    f.resize(4 * PAGE);
    f.resize(8 * PAGE);
    const again = f.map();
    expect(again.bytes[6 * PAGE]).toBe(0);
    // The media still holds the old byte: the regrown entries are dirty until fsync.
    expect(f.dirtyRanges()).toEqual([{ offset: 4 * PAGE, length: 4 * PAGE }]);
    expect(syncedImage(f)[6 * PAGE]).toBe(9);
    f.sync();
    expect(syncedImage(f)[6 * PAGE]).toBe(0);
    expect(readFileSync(`${f.path}.media`)).toEqual(readFileSync(f.path));
    f.close();
  });

  test('to zero and back: an empty file syncs, attaches in a worker and grows again', async () => {
    const f = shadowFile(4);
    f.map().bytes[0] = 1;
    f.sync();
    f.resize(0);
    expect([f.size, statSync(f.path).size, f.dirtyRanges(), f.stats().dirtyEntries]).toEqual([0, 0, [], 0]);
    expect(syncedImage(f).length).toBe(4 * PAGE);
    expect(f.sync()).toEqual({ entries: 0, bytes: 0 });
    expect([statSync(`${f.path}.media`).size, syncedImage(f).length]).toEqual([0, 0]);
    const w = new Worker(workerUrl('resize-worker.mjs'), { workerData: { role: 'observer', fileHandle: f.handle() } });
    await nextMessage(w, (m: any) => m.ready);
    f.resize(2 * PAGE);
    w.postMessage({ size: 2 * PAGE });
    expect(await nextMessage(w, (m: any) => 'seen' in m)).toEqual({ seen: 2 * PAGE, dirty: [] });
    await w.terminate();
    f.sync();
    const image = syncedImage(f);
    expect([image.length, image[0], image[PAGE]]).toEqual([2 * PAGE, 0, 0x5a]);
    f.close();
  });

  test('a mapping reaching past the end keeps its length; udax calls give typed errors or work in range; growing makes it valid again', () => {
    const f = udax.open(scratchPath('past'), { create: true, size: 8 * PAGE });  // media 'none': exact tags
    const m = f.map();
    m.bytes[PAGE] = 1;
    m.bytes[6 * PAGE] = 1;                                     // written, then cut: gone, and not reported later
    f.resize(4 * PAGE);
    expect(m.length).toBe(8 * PAGE);
    expect(f.dirtyRanges()).toEqual([{ offset: PAGE, length: PAGE }]);
    m.prepareWrite(0, 8 * PAGE);                              // the in-file part only
    expect(f.dirtyRanges()).toEqual([{ offset: 0, length: 4 * PAGE }]);
    expect(f.sync()).toEqual({ entries: 4, bytes: 4 * PAGE });
    expect(() => f.sync(0, 8 * PAGE)).toThrow(RangeError);    // past the end: misuse
    expect(() => f.map({ offset: 4 * PAGE })).toThrow(daxError('EINVAL', 'mmap'));
    expect(m.view(0, PAGE)[0]).toBe(0);
    const fd = openSync(f.path, 'r');                          // a system call into the cut part: EFAULT, no signal
    expect(() => m.readFromFile(fd, 0, 6 * PAGE, PAGE)).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    expect(f.dirtyRanges()).toEqual([]);
    expect(m.readFromFile(fd, 0, 3 * PAGE, 2 * PAGE)).toBe(PAGE);  // straddling the end: a partial read, as read(2)
    expect(f.dirtyRanges()).toEqual([{ offset: 3 * PAGE, length: PAGE }]);
    f.sync();
    closeSync(fd);
    f.resize(8 * PAGE);                                        // the tail is valid again, zero-filled
    expect(m.bytes[6 * PAGE]).toBe(0);
    expect(f.dirtyRanges()).toEqual([]);
    m.bytes[6 * PAGE] = 5;                                     // tracked exactly, both trackers
    expect(f.dirtyRanges()).toEqual([{ offset: 6 * PAGE, length: PAGE }]);
    f.sync();
    expect(f.dirtyRanges()).toEqual([]);
    if (TRACKER === 'sigsegv') expect(writablePages(m).some((w) => w)).toBe(false);
    m.bytes[6 * PAGE] = 6;
    expect(f.dirtyRanges()).toEqual([{ offset: 6 * PAGE, length: PAGE }]);
    f.close();
  });

  test('a store or a load past the end dies of SIGBUS, as without udax', () => {
    for (const op of ['store', 'load']) {
      const path = scratchPath('sigbus');
      const r = runChild(`
        import { open } from ${JSON.stringify(distIndex)};
        const f = open(${JSON.stringify(path)}, { create: true, size: ${8 * PAGE}, media: 'shadow' });
        const m = f.map();
        m.bytes[0] = 1;
        f.resize(${4 * PAGE});
        f.sync();
        console.log('synced');
        ${op === 'store' ? `m.bytes[${6 * PAGE}] = 1;` : `console.log(m.bytes[${6 * PAGE}]);`}
        console.log('survived');
      `);
      expect(r.stdout).toContain('synced');
      expect(r.stdout).not.toContain('survived');
      expect(r.signal).toBe('SIGBUS');
    }
  });
});

describe('errors change nothing', () => {
  test('bad sizes, a closed or read-only file, no space, past the reservation, a mapping past the new end', () => {
    const f = shadowFile(8);
    const m = f.map({ offset: 6 * PAGE, length: 2 * PAGE });
    m.bytes[0] = 1;
    const before = state(f);
    expect(() => f.resize('8' as unknown as number)).toThrow(TypeError);
    expect(() => f.resize(-PAGE)).toThrow(RangeError);
    expect(() => f.resize(PAGE + 1)).toThrow(RangeError);
    expect(() => f.resize(1.5)).toThrow(RangeError);
    const huge = Math.ceil((shmFree() + 64 * PAGE) / PAGE) * PAGE;
    expect(() => f.resize(f.size + huge)).toThrow(daxError('ENOSPC', 'ftruncate'));
    expect(() => f.resize(2 ** 40)).toThrow(daxError('EFBIG', 'ftruncate'));
    expect(() => f.resize(4 * PAGE)).toThrow(daxError('ERR_UDAX_MAPPED_PAST_END', 'ftruncate'));
    expect(() => f.withEntriesLocked(0, PAGE, () => f.resize(16 * PAGE))).toThrow(daxError('ERR_UDAX_DEADLOCK'));
    expect(() => f.write(Buffer.alloc(1), 2 ** 40)).toThrow(daxError('EFBIG', 'ftruncate'));
    expect(state(f)).toEqual(before);
    f.resize(6 * PAGE);                                        // to the mapping's start: allowed (all of it past EOF)
    expect(f.size).toBe(6 * PAGE);
    m.unmap();
    const ro = udax.open(f.path, { readOnly: true });
    expect(() => ro.resize(8 * PAGE)).toThrow(daxError('EBADF', 'ftruncate'));
    ro.close();
    f.close();
    expect(() => f.resize(8 * PAGE)).toThrow(daxError('EBADF', 'ftruncate'));
    expect(statSync(f.path).size).toBe(6 * PAGE);
  });
});

describe('threads', () => {
  test('a worker that attached sees a resize made by the opener, and its stores there are synced', async () => {
    const f = shadowFile(4);
    const w = new Worker(workerUrl('resize-worker.mjs'), { workerData: { role: 'observer', fileHandle: f.handle() } });
    await nextMessage(w, (m: any) => m.ready);
    // Listen for the exit now: a worker that ends right after its answer can
    // emit 'exit' in the same turn as the message, before a later listener.
    const exited = new Promise((resolve) => w.once('exit', resolve));
    f.resize(8 * PAGE);
    w.postMessage({ size: 8 * PAGE });
    const r = await nextMessage(w, (m: any) => 'seen' in m);
    expect(r).toEqual({ seen: 8 * PAGE, dirty: [] });
    await exited;
    f.sync();
    const image = syncedImage(f);
    expect(image.length).toBe(8 * PAGE);
    expect(image.subarray(7 * PAGE).every((b) => b === 0x5a)).toBe(true);
    f.close();
  });

  test('stores in worker threads while another thread grows and shrinks the file: flushed == live after a final sync', async () => {
    const base = 32 * PAGE, extra = 64 * PAGE;
    const f = shadowFile(base / PAGE);
    const control = new SharedArrayBuffer(4);
    const stop = new Int32Array(control);
    const spawn = (workerData: object) => new Worker(workerUrl('resize-worker.mjs'), { workerData: { fileHandle: f.handle(), control, base, extra, ...workerData } });
    const workers = [spawn({ role: 'writer', id: 0, seed: 11 }), spawn({ role: 'writer', id: 1, seed: 12 }), spawn({ role: 'resizer', seed: 13 })];
    await Promise.all(workers.map((w) => nextMessage(w, (m: any) => m.ready)));
    const until = Date.now() + 1500;
    let syncs = 0;
    while (Date.now() < until) {
      f.sync(0, base);
      if (++syncs % 8 === 0) f.sync();
      await new Promise((resolve) => setImmediate(resolve));
    }
    Atomics.store(stop, 0, 1);
    const done = await Promise.all(workers.map((w) => nextMessage(w, (m: any) => m.done)));
    expect(done[2].resizes).toBeGreaterThan(10);
    expect(done[0].stores + done[1].stores).toBeGreaterThan(1000);
    await Promise.all(workers.map((w) => w.terminate()));  // each is done
    f.sync();
    expect(f.dirtyRanges()).toEqual([]);
    const live = readFileSync(f.path);
    expect(live.length).toBe(f.size);
    expect(readFileSync(`${f.path}.media`).equals(live)).toBe(true);
    expect(syncedImage(f).equals(live)).toBe(true);
    if (TRACKER === 'sigsegv') {
      const m = f.map();
      expect(writablePages(m).some((w) => w)).toBe(false);
      m.unmap();
    }
    f.close();
  });
});
