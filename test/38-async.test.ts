// Layer 3b: the tracker option, and the async tracker's traps
// (/work/shared/TRACKERS.md §2): holes, read-only pages, zapped pages, PMD
// entries, system calls, unmap with unflushed stores, no fault hook (and the freeze a volume snapshot takes), and the
// fallback when userfaultfd is refused.
import { openSync, closeSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, test } from 'vitest';
import { open, PMD_SIZE } from 'udax';
import { harvest, madvise, setHarvestDelay, withAsyncStoresFrozen } from 'udax/testing';
import { daxError, distIndex, nextMessage, notAsync, removeScratch, runChild, scratchPath, shortOfShm, sleep, TRACKER } from './helpers.js';

afterAll(removeScratch);

const PAGE = 4096;

/** Run fn with environment variables set (undefined: removed), then restore them. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) if (x === undefined) delete process.env[k]; else process.env[k] = x;
  };
  apply(vars);
  try {
    return fn();
  } finally {
    apply(saved);
  }
}
const testingIndex = distIndex.replace(/index\.js$/, 'testing.js');

describe('the tracker option', () => {
  test('file.tracker says which runs; every open of the file agrees, an explicit other one is refused', () => {
    const path = scratchPath('opt');
    const a = open(path, { create: true, size: 4 * PAGE, tracker: 'sigsegv' });
    expect(a.tracker).toBe('sigsegv');
    // the default: auto joins; the sigbus run's UDAX_TRACKER=sigbus is explicit, so it is refused
    if (TRACKER === 'sigbus') expect(() => open(path)).toThrow(daxError('ERR_UDAX_ALREADY_OPEN', 'open'));
    else expect(open(path).tracker).toBe('sigsegv');
    expect(open(path, { tracker: 'auto' }).tracker).toBe('sigsegv');
    if (TRACKER !== 'sigsegv') expect(() => open(path, { tracker: TRACKER })).toThrow(daxError('ERR_UDAX_ALREADY_OPEN', 'open'));
    a.close();
  });

  test('a bad tracker option or UDAX_TRACKER is a TypeError', () => {
    expect(() => open(scratchPath('bad'), { create: true, size: PAGE, tracker: 'uffd' as never })).toThrow(TypeError);
    const r = runChild(`
      import { open } from ${JSON.stringify(distIndex)};
      try { open(${JSON.stringify(scratchPath('badenv'))}, { create: true, size: 4096 }); } catch (e) { console.log(e.name, e.code); }
    `, { env: { UDAX_TRACKER: 'fast' } });
    expect(r.stdout.trim()).toBe('TypeError ERR_INVALID_ARG_VALUE');
  });

  test('userfaultfd refused (a seccomp filter, as Docker\'s): auto falls back to sigsegv with the reason; forcing async throws', () => {
    const r = runChild(`
      import { open } from ${JSON.stringify(distIndex)};
      import { refuseUserfaultfd, asyncTrackerAvailability } from ${JSON.stringify(testingIndex)};
      refuseUserfaultfd();
      const f = open(${JSON.stringify(scratchPath('refused'))}, { create: true, size: 4 * 4096 });
      const m = f.map();
      m.bytes[4096] = 1;
      console.log(f.tracker, JSON.stringify(f.sync()), asyncTrackerAvailability().reason);
      try { open(${JSON.stringify(scratchPath('forced'))}, { create: true, size: 4096, tracker: 'async' }); }
      catch (e) { console.log(e.code, e.syscall); }
    `, { env: { UDAX_TRACKER: '' } });
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^sigsegv \{"entries":1,"bytes":4096\} no userfaultfd with UFFD_FEATURE_WP_ASYNC: userfaultfd failed with errno 1$/);
    expect(lines[1]).toBe('ERR_UDAX_TRACKER_UNAVAILABLE userfaultfd');
  });
});

describe.skipIf(notAsync)('the async tracker (async runs only)', () => {
  // A 64 MiB tmpfs file is scanned populated by default (src/scan.ts); armed
  // when UDAX_ASYNC_SCAN says so. Both find stores to holes exactly; a page
  // only read is reported once by populated, never by armed.
  for (const scan of ['armed', 'populated'] as const) {
    test(`${scan}: stores to holes of a sparse file are found exactly; pages only read are reported ${scan === 'armed' ? 'never' : 'once'}`, () => {
      const f = withEnv({ UDAX_ASYNC_SCAN: scan === 'armed' ? 'armed' : undefined }, () => open(scratchPath(`holes-${scan}`), { create: true, size: 64 << 20 }));
      expect(f.scanPolicy).toBe(scan);
      const m = f.map();
      let sum = 0;
      let read = 0;
      for (let p = 0; p < 16384; p += 97, read++) sum += m.bytes[p * PAGE];  // read-faults holes in
      expect(sum).toBe(0);
      expect(harvest(f)).toBe(scan === 'armed' ? 0 : read);
      expect(f.sync().entries).toBe(scan === 'armed' ? 0 : read);  // one needless flush each, nothing lost
      expect(harvest(f)).toBe(0);
      for (const p of [5, 6, 9000, 16383]) m.bytes[p * PAGE + 7] = 1;
      expect(f.dirtyRanges()).toEqual([
        { offset: 5 * PAGE, length: 2 * PAGE }, { offset: 9000 * PAGE, length: PAGE }, { offset: 16383 * PAGE, length: PAGE },
      ]);
      expect(f.stats()).toMatchObject({ writeFaults: 0, pagesHarvested: (scan === 'armed' ? 0 : read) + 4 });
      expect(f.sync()).toEqual({ entries: 4, bytes: 4 * PAGE });
      expect(harvest(f)).toBe(0);  // the scan write-protected them again
      m.bytes[6 * PAGE] = 2;       // a store after the sync is the next harvest's
      expect(f.dirtyRanges()).toEqual([{ offset: 6 * PAGE, length: PAGE }]);
      f.close();
    });
  }

  test('the scan policy: armed for small files, disk files and UDAX_ASYNC_SCAN=armed; populated for large tmpfs files; agreed by every open', () => {
    const small = open(scratchPath('scan-small'), { create: true, size: 8 << 20 });
    expect(small.scanPolicy).toBe('armed');
    const large = open(scratchPath('scan-large'), { create: true, size: (8 << 20) + PAGE });
    expect(large.scanPolicy).toBe('populated');
    expect(withEnv({ UDAX_ASYNC_SCAN: 'armed' }, () => open(large.path)).scanPolicy).toBe('populated');  // the first open chose
    expect(withEnv({ UDAX_ASYNC_SCAN: 'populated' }, () => open(scratchPath('scan-forced'), { create: true, size: PAGE })).scanPolicy).toBe('populated');
    expect(() => withEnv({ UDAX_ASYNC_SCAN: 'exact' }, () => open(scratchPath('scan-bad'), { create: true, size: PAGE }))).toThrow(TypeError);
    const disk = join(tmpdir(), `udax-scan-${process.pid}`);
    try {
      const d = withEnv({ UDAX_ASYNC_SCAN: 'populated' }, () => open(disk, { create: true, size: 16 << 20 }));
      expect(d.scanPolicy).toBe('armed');  // the kernel reclaims disk pages: populated could miss stores
      d.close();
    } finally {
      rmSync(disk, { force: true });
    }
    expect(open(scratchPath('scan-sigsegv'), { create: true, size: 16 << 20, tracker: 'sigsegv' }).scanPolicy).toBeUndefined();
    small.close();
    large.close();
  });

  test('a range sync harvests only its range; written pages outside it wait for a later harvest', () => {
    const f = open(scratchPath('range'), { create: true, size: 16 * PAGE });
    const m = f.map();
    m.bytes[PAGE] = 1;
    m.bytes[10 * PAGE] = 1;
    expect(f.sync(0, 2 * PAGE)).toEqual({ entries: 1, bytes: PAGE });
    expect(f.stats().pagesHarvested).toBe(2);  // stats() harvests the rest
    expect(f.dirtyRanges()).toEqual([{ offset: 10 * PAGE, length: PAGE }]);
    expect(f.sync()).toEqual({ entries: 1, bytes: PAGE });
    f.close();
  });

  test('a written page the kernel zaps (MADV_PAGEOUT, MADV_DONTNEED) is still reported: armed, not populated', () => {
    const f = open(scratchPath('zap'), { create: true, size: 16 * PAGE });
    expect(f.scanPolicy).toBe('armed');
    const m = f.map();
    m.bytes[2 * PAGE] = 1;
    m.bytes[3 * PAGE] = 1;
    madvise(m, 2 * PAGE, PAGE, 'pageout');
    madvise(m, 3 * PAGE, PAGE, 'dontneed');
    expect(m.bytes[4 * PAGE]).toBe(0);
    madvise(m, 4 * PAGE, PAGE, 'dontneed');  // a page only read, zapped: still clean
    expect(f.dirtyRanges()).toEqual([{ offset: 2 * PAGE, length: 2 * PAGE }]);
    expect(f.sync().entries).toBe(2);
    expect(readFileSync(f.path)[3 * PAGE]).toBe(1);
    f.close();
  });

  test('PMD entries are flushed through the untracked mapping: a flush does not re-dirty them', () => {
    const f = open(scratchPath('pmd'), { create: true, size: 2 * PMD_SIZE, entrySize: PMD_SIZE });
    const m = f.map();
    m.bytes[PMD_SIZE + 12345] = 1;
    expect(f.dirtyRanges()).toEqual([{ offset: PMD_SIZE, length: PMD_SIZE }]);
    expect(f.sync()).toEqual({ entries: 1, bytes: PMD_SIZE });
    expect(harvest(f)).toBe(0);
    expect(f.sync()).toEqual({ entries: 0, bytes: 0 });
    m.bytes[2 * PMD_SIZE - 1] = 2;
    expect(f.sync()).toEqual({ entries: 1, bytes: PMD_SIZE });
    f.close();
  });

  test('an ext4 file (large folios in the page cache): a partial-range sync loses no written page', () => {
    const path = join(tmpdir(), `udax-test-${process.pid}-ext4`);
    writeFileSync(path, Buffer.alloc(8 << 20, 1));  // written through the page cache: large folios
    try {
      const f = open(path);
      const m = f.map();
      const pages = Array.from({ length: 32 }, (_, k) => k * 64 + 3);
      for (const p of pages) m.bytes[p * PAGE] = 7;
      expect(f.sync(0, 4 << 20).entries).toBe(16);
      expect(f.dirtyRanges()).toEqual(pages.slice(16).map((p) => ({ offset: p * PAGE, length: PAGE })));
      expect(f.sync().entries).toBe(16);
      expect(harvest(f)).toBe(0);
      f.close();
      const data = readFileSync(path);
      expect(pages.every((p) => data[p * PAGE] === 7)).toBe(true);
    } finally {
      rmSync(path, { force: true });
    }
  });

  test('fs.readSync into a mapping just works (no EFAULT, no prepareWrite), and sync writes it back', () => {
    const src = scratchPath('src');
    writeFileSync(src, Buffer.alloc(2 * PAGE, 0x5a));
    const f = open(scratchPath('dst'), { create: true, size: 8 * PAGE, media: 'shadow' });
    const m = f.map();
    const fd = openSync(src, 'r');
    expect(readSync(fd, m.view(PAGE, 2 * PAGE), 0, 2 * PAGE, 0)).toBe(2 * PAGE);
    closeSync(fd);
    expect(f.dirtyRanges()).toEqual([{ offset: PAGE, length: 2 * PAGE }]);
    expect(f.sync()).toEqual({ entries: 2, bytes: 2 * PAGE });
    expect(readFileSync(f.media.path!).subarray(PAGE, 3 * PAGE).every((b) => b === 0x5a)).toBe(true);
    f.close();
  });

  test('unmap harvests first: unflushed stores stay DIRTY and reach the media at the next sync', () => {
    const f = open(scratchPath('unmap'), { create: true, size: 8 * PAGE, media: 'shadow' });
    const m = f.map();
    m.bytes[5 * PAGE + 1] = 9;
    m.unmap();
    expect(f.dirtyRanges()).toEqual([{ offset: 5 * PAGE, length: PAGE }]);
    expect(f.sync().entries).toBe(1);
    expect(readFileSync(f.media.path!)[5 * PAGE + 1]).toBe(9);
    f.close();
  });

  test('no fault hook: withEntriesLocked does not hold stores back (this thread may store), the next sync finds them', () => {
    const f = open(scratchPath('locked'), { create: true, size: 4 * PAGE });
    const m = f.map();
    f.withEntriesLocked(0, PAGE, () => { m.bytes[10] = 1; });  // with sigsegv: a self-deadlock abort
    expect(f.sync()).toEqual({ entries: 1, bytes: PAGE });
    f.withEntriesLocked(0, PAGE, () => { m.bytes[11] = 1; expect(f.dirtyRanges()).toEqual([{ offset: 0, length: PAGE }]); });
    f.close();
  });

  test('harvest atomicity: a sync that starts while another thread\'s harvest holds scanned, not yet DIRTY pages waits for it and returns with the store durable', async () => {
    const path = scratchPath('atomic');
    const f = open(path, { create: true, size: 4 * PAGE, media: 'shadow' });
    const m = f.map();
    m.bytes[PAGE] = 42;
    setHarvestDelay(400e6);
    try {
      const w = new Worker(`
        import { attach } from ${JSON.stringify(distIndex)};
        import { parentPort, workerData } from 'node:worker_threads';
        const file = attach(workerData);
        parentPort.postMessage('syncing');
        parentPort.postMessage(file.sync());
      `, { eval: true, workerData: f.handle() });
      await nextMessage(w, (x) => x === 'syncing');
      await sleep(100);  // the worker's scan took the written bit; the entry is not DIRTY yet
      const t0 = performance.now();
      f.sync();          // without the harvest lock: finds nothing and returns at once
      const waited = performance.now() - t0;
      const durable = readFileSync(`${path}.media`)[PAGE];
      const theirs = await nextMessage(w, (x) => typeof x === 'object');
      await w.terminate();
      expect(durable).toBe(42);
      expect(waited).toBeGreaterThan(100);
      expect(f.stats().entriesCleaned).toBe(1);  // flushed once, by one of the two syncs
      expect(theirs.entries).toBeLessThanOrEqual(1);
    } finally {
      setHarvestDelay(0);
      f.close();
    }
  });

  test('a harvest never waits for an entry lock: a sync inside withEntriesLocked while another thread\'s harvest holds the harvest lock and found a store in the locked entry finishes, and both stores reach the media', () => {
    const path = scratchPath('hlock-order');
    const r = runChild(`
      import { open } from ${JSON.stringify(distIndex)};
      import { setHarvestDelay } from ${JSON.stringify(testingIndex)};
      import { Worker } from 'node:worker_threads';
      import { readFileSync } from 'node:fs';
      const PAGE = 4096;
      const f = open(${JSON.stringify(path)}, { create: true, size: 3 * PAGE, media: 'shadow' });
      const m = f.map();
      m.bytes[0] = 1;
      m.bytes[2 * PAGE] = 2;
      const ctl = new Int32Array(new SharedArrayBuffer(8));
      const worker = (code) => new Worker(
        "import { attach } from " + JSON.stringify(${JSON.stringify(distIndex)}) + ";" +
        "import { parentPort, workerData } from 'node:worker_threads';" +
        "const file = attach(workerData.handle); const ctl = workerData.ctl;" + code,
        { eval: true, workerData: { handle: f.handle(), ctl } });
      const done = (w) => new Promise((ok, fail) => { w.once('message', ok); w.once('error', fail); });
      // The holder: entry 0 locked, then a sync of entry 2 (its harvest needs the harvest lock).
      const holder = worker("file.withEntriesLocked(0, 4096, () => { Atomics.store(ctl, 0, 1); Atomics.wait(ctl, 1, 0); file.sync(8192, 4096); }); parentPort.postMessage('holder done');");
      while (Atomics.load(ctl, 0) === 0) await new Promise((r) => setTimeout(r, 5));
      setHarvestDelay(200e6);  // the syncer's harvest holds the harvest lock, then dirties entry 0 (locked)
      const syncer = worker("Atomics.store(ctl, 0, 2); parentPort.postMessage(file.sync());");
      while (Atomics.load(ctl, 0) !== 2) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 100));  // inside its harvest's delay
      Atomics.store(ctl, 1, 1); Atomics.notify(ctl, 1);
      const [a, b] = await Promise.all([done(holder), done(syncer)]);
      setHarvestDelay(0);
      f.sync();
      const media = readFileSync(${JSON.stringify(path)} + '.media');
      console.log(JSON.stringify({ a, b, media: [media[0], media[2 * PAGE]], dirty: f.dirtyRanges() }));
      f.close();
    `, { timeout: 20_000 });
    expect(r.signal).toBeNull();  // before: a deadlock, killed by the timeout
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.a).toBe('holder done');
    expect(out.media).toEqual([1, 2]);
    expect(out.dirty).toEqual([]);
  });

  // sparse, but ~750 MiB of it is written
  test.skipIf(shortOfShm(1 << 30, '8 GiB async'))('an 8 GiB sparse file, 200,000 random stores: the sync cleans exactly the distinct pages stored, nothing lost', () => {
    const pages = (8 * 2 ** 30) / PAGE;
    const f = open(scratchPath('8g'), { create: true, size: pages * PAGE });
    const m = f.map();
    const windowPages = 2 ** 30 / PAGE;
    const windows = Array.from({ length: pages / windowPages }, (_, k) => {
      const v = m.view(k * windowPages * PAGE, windowPages * PAGE);
      return new Int32Array(v.buffer, v.byteOffset, v.length / 4);
    });
    const stored = new Map<number, number>();
    let x = 987654321;
    for (let i = 0; i < 200_000; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      const page = (x >>> 0) % pages;
      windows[Math.floor(page / windowPages)][(page % windowPages) * 1024 + 3] = i + 1;
      stored.set(page, i + 1);
    }
    const t0 = performance.now();
    expect(f.sync().entries).toBe(stored.size);  // no hole, no read page, no coarsening
    console.log(`8 GiB async: ${stored.size} distinct pages, sync ${(performance.now() - t0).toFixed(0)} ms, ` +
      `harvest ${(f.stats().harvestTimeNs / 1e6).toFixed(0)} ms`);
    expect(f.sync().entries).toBe(0);
    let lost = 0;
    for (const [page, value] of stored) if (windows[Math.floor(page / windowPages)][(page % windowPages) * 1024 + 3] !== value) lost++;
    expect(lost).toBe(0);
    m.unmap();
    f.close();
  }, 120_000);

  // The freeze a volume snapshot takes (native/freeze.cc): another thread's
  // store waits in the fault handler while the file is frozen, completes
  // after the thaw, and is tracked (the page it wrote was clean: mprotect
  // back to read-write kept its userfaultfd write-protection).
  test('a store from another thread during a freeze waits, completes after the thaw, and is tracked', async () => {
    const path = scratchPath('freeze');
    const f = open(path, { create: true, size: 4 * PAGE, media: 'shadow' });
    const m = f.map();
    m.bytes[PAGE] = 1;
    f.sync();  // page 1 clean: write-protected again
    const flags = new Int32Array(new SharedArrayBuffer(8));
    const w = new Worker(`
      import { attach } from ${JSON.stringify(distIndex)};
      import { parentPort, workerData } from 'node:worker_threads';
      const file = attach(workerData.file);
      const words = new Int32Array(file.attachMapping(workerData.mapping).bytes.buffer);
      const flags = new Int32Array(workerData.flags);
      parentPort.postMessage('ready');
      Atomics.wait(flags, 0, 0);
      words[1024] = 0x01020304;  // page 1
      Atomics.store(flags, 1, 1);
      Atomics.notify(flags, 1);
      parentPort.postMessage('stored');
    `, { eval: true, workerData: { file: f.handle(), mapping: m.handle(), flags: flags.buffer } });
    try {
      await nextMessage(w, (x) => x === 'ready');
      const during = withAsyncStoresFrozen(f, () => {
        Atomics.store(flags, 0, 1);
        Atomics.notify(flags, 0);
        const waited = Atomics.wait(flags, 1, 0, 300);  // the store cannot complete while frozen
        return { waited, value: new Int32Array(m.bytes.buffer)[1024] };
      });
      expect(during).toEqual({ waited: 'timed-out', value: 1 });
      await nextMessage(w, (x) => x === 'stored');
      expect(new Int32Array(m.bytes.buffer)[1024]).toBe(0x01020304);
      expect(f.dirtyRanges()).toEqual([{ offset: PAGE, length: PAGE }]);
      f.sync();
      expect(readFileSync(`${path}.media`)).toEqual(readFileSync(path));
      m.bytes[2 * PAGE] = 5;  // after the thaw this thread's stores are tracked too
      expect(f.dirtyRanges()).toEqual([{ offset: 2 * PAGE, length: PAGE }]);
    } finally {
      await w.terminate();
      f.close();
    }
  });

  test('a worker terminated while its store waits on a freeze ends once the freeze is lifted', async () => {
    const f = open(scratchPath('freeze-term'), { create: true, size: 4 * PAGE });
    const m = f.map();
    const flags = new Int32Array(new SharedArrayBuffer(8));
    const w = new Worker(`
      import { attach } from ${JSON.stringify(distIndex)};
      import { parentPort, workerData } from 'node:worker_threads';
      const file = attach(workerData.file);
      const bytes = file.attachMapping(workerData.mapping).bytes;
      const flags = new Int32Array(workerData.flags);
      parentPort.postMessage('ready');
      Atomics.wait(flags, 0, 0);
      bytes[0] = 9;
      for (;;) bytes[1] = (bytes[1] + 1) & 255;
    `, { eval: true, workerData: { file: f.handle(), mapping: m.handle(), flags: flags.buffer } });
    await nextMessage(w, (x) => x === 'ready');
    let ended: Promise<number> | undefined;
    withAsyncStoresFrozen(f, () => {
      Atomics.store(flags, 0, 1);
      Atomics.notify(flags, 0);
      Atomics.wait(flags, 1, 0, 100);
      ended = w.terminate();
    });
    await ended;
    expect(m.bytes[0]).toBe(9);
    expect(f.dirtyRanges()).toEqual([{ offset: 0, length: PAGE }]);
    f.close();
  });

  test('a freezer that dies (a worker terminated inside the freeze) does not hang stores: the first waiter thaws for it (a child process)', () => {
    const r = runChild(`
      import { Worker } from 'node:worker_threads';
      import { open } from ${JSON.stringify(distIndex)};
      const f = open(${JSON.stringify(scratchPath('freeze-dead'))}, { create: true, size: 4096, tracker: 'async' });
      const m = f.map();
      const w = new Worker(\`
        import { attach } from ${JSON.stringify(distIndex)};
        import { withAsyncStoresFrozen } from ${JSON.stringify(testingIndex)};
        import { parentPort, workerData } from 'node:worker_threads';
        const file = attach(workerData);
        withAsyncStoresFrozen(file, () => { parentPort.postMessage('frozen'); for (;;) {} });
      \`, { eval: true, workerData: f.handle() });
      await new Promise((r) => w.once('message', r));
      await w.terminate();
      m.bytes[0] = 3;
      console.log(JSON.stringify({ value: m.bytes[0], dirty: f.dirtyRanges() }));
    `, { timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ value: 3, dirty: [{ offset: 0, length: PAGE }] });
  });

  test('a store into a file this thread holds frozen crashes with a message (a child process), instead of hanging', () => {
    const r = runChild(`
      import { open } from ${JSON.stringify(distIndex)};
      import { withAsyncStoresFrozen } from ${JSON.stringify(testingIndex)};
      const f = open(${JSON.stringify(scratchPath('freeze-self'))}, { create: true, size: 4096, tracker: 'async' });
      const m = f.map();
      withAsyncStoresFrozen(f, () => { m.bytes[0] = 1; });
      console.log('not reached');
    `, { timeout: 20_000 });
    expect(r.signal).toBe('SIGABRT');
    expect(r.stderr).toContain('self-deadlock');
    expect(r.stdout).not.toContain('not reached');
  });

  test('a worker that attaches runs the file\'s tracker', async () => {
    const f = open(scratchPath('attach'), { create: true, size: 4 * PAGE });
    const w = new Worker(`
      import { attach } from ${JSON.stringify(distIndex)};
      import { parentPort, workerData } from 'node:worker_threads';
      const file = attach(workerData);
      file.map().bytes[4096] = 1;
      parentPort.postMessage(file.tracker);
    `, { eval: true, workerData: f.handle() });
    const tracker = await new Promise((r) => w.once('message', r));
    await w.terminate();
    expect(tracker).toBe('async');
    expect(f.dirtyRanges()).toEqual([{ offset: PAGE, length: PAGE }]);  // its store, harvested here
    f.close();
  });
});
