// Layer 6: threads, races and the hard edges. The invariant under test:
// while any shared mapping holds an entry writable, that entry is DIRTY.
import { readFileSync, rmSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, test } from 'vitest';
import { open, PMD_SIZE, type DaxFile, type Mapping } from 'udax';
import { ENTRY_BITS, entryWord, mappingAddress, setVmaBudget, setWriteFault, vmaUsage } from 'udax/testing';
import { distIndex, nextMessage, noFaultHook, notSigsegv, removeScratch, runChild, scratchPath, shortOfShm, sleep, TRACKER, uffdProtectedPages, workerUrl, writablePages, writesSeen } from './helpers.js';

afterAll(removeScratch);

const PAGE = 4096;
const { DIRTY, LOCKED } = ENTRY_BITS;
interface MappingRef { address: number; offset: number; length: number }

/** The checked point: with every entry lock held (no fault or writeback can
 * change any entry), no page of any mapping is writable behind a clean entry
 * (writable: in a writable VMA and, with the sigbus tracker, not userfaultfd
 * write-protected). Returns the pages checked. */
function checkInvariant(file: DaxFile, mappings: MappingRef[]): number {
  return file.withEntriesLocked(0, file.size, () => {
    const maps = readFileSync('/proc/self/maps', 'utf8').trim().split('\n').map((l) => {
      const [range, perms] = l.split(' ');
      const [a, b] = range.split('-').map((x) => parseInt(x, 16));
      return { a, b, w: perms[1] === 'w' };
    });
    let checked = 0;
    for (const m of mappings) {
      const base = m.address;
      const wp = TRACKER === 'sigbus' ? uffdProtectedPages(base, m.length) : undefined;
      for (const vma of maps) {
        if (!vma.w || vma.b <= base || vma.a >= base + m.length) continue;
        for (let addr = Math.max(vma.a, base); addr < Math.min(vma.b, base + m.length); addr += PAGE) {
          if (wp?.[(addr - base) / PAGE]) continue;
          const entry = Math.floor((m.offset + addr - base) / file.entrySize);
          if (!(entryWord(file, entry) & DIRTY)) {
            throw new Error(`writable page with a clean entry: file offset ${m.offset + addr - base}`);
          }
          checked++;
        }
      }
    }
    return checked;
  });
}

describe('worker threads', () => {
  test('a worker attaches to the file and a mapping; stores and syncs on either side see the same tags', async () => {
    const f = open(scratchPath(), { create: true, size: 8 * PAGE });
    const m = f.map();
    const w = new Worker(workerUrl('race-worker.mjs'), { workerData: { fileHandle: f.handle(), mappingHandle: m.handle() } });
    await nextMessage(w, (x) => x === 'ready');
    w.postMessage('store');
    await nextMessage(w, (x) => x === 'stored');
    expect(m.bytes[PAGE + 1]).toBe(42);
    expect(f.dirtyRanges()).toEqual([{ offset: PAGE, length: PAGE }]);
    expect(writesSeen(f)).toBe(1);
    expect(f.sync()).toEqual({ entries: 1, bytes: PAGE });
    if (TRACKER !== 'async') expect(writablePages(m, PAGE, PAGE)).toEqual([false]);
    w.postMessage('store');  // re-dirties after our sync
    await nextMessage(w, (x) => x === 'stored');
    expect(writesSeen(f)).toBe(2);
    w.postMessage('exit');
    await new Promise((r) => w.once('exit', r));
    expect(f.dirtyRanges()).toEqual([{ offset: PAGE, length: PAGE }]);
    f.close();
  });
});

// sigsegv, sigbus: setWriteFault replaces the tracker's fault hook (async has none)
describe.skipIf(noFaultHook)('the 2016 race, forced', () => {
  // A worker's fault sleeps between tagging DIRTY and making the page
  // writable, while this thread runs a sync in that window.
  async function forcedInterleaving(order2016: boolean) {
    const f = open(scratchPath(), { create: true, size: 4 * PAGE });
    const m = f.map();
    const w = new Worker(workerUrl('race-worker.mjs'), { workerData: { fileHandle: f.handle(), mappingHandle: m.handle() } });
    await nextMessage(w, (x) => x === 'ready');
    setWriteFault(m, order2016 ? '2016' : 'delayed', 400e6);
    try {
      w.postMessage('store');
      await nextMessage(w, (x) => x === 'storing');
      await sleep(100);  // the fault is inside its window now
      const during = entryWord(f, 1);
      const synced = f.sync();
      await nextMessage(w, (x) => x === 'stored');
      const writable = writablePages(m, PAGE, PAGE)[0];
      const dirty = f.dirtyRanges().length > 0;
      const faults = f.stats().writeFaults;
      m.bytes[PAGE + 2] = 7;  // a later store from this thread
      const result = { during, synced, writable, dirty, refaulted: f.stats().writeFaults > faults, dirtyAfter: f.dirtyRanges(), faultsTotal: f.stats().writeFaults };
      w.postMessage('exit');
      await new Promise((r) => w.once('exit', r));
      f.close();
      return result;
    } finally {
      if (!m.unmapped) setWriteFault(m, 'dax');
    }
  }

  test('our ordering: the sync waits for the fault, then cleans and write-protects; the next store faults', async () => {
    const r = await forcedInterleaving(false);
    expect(r.during & (DIRTY | LOCKED)).toBe(DIRTY | LOCKED);   // the fault holds the lock in its window
    expect(r.synced).toEqual({ entries: 1, bytes: PAGE });
    // The fault unlocks, then its store retries. Usually the store lands
    // before the waiting sync write-protects; if the sync is first, the
    // retried store faults again and re-dirties the page, as on real DAX.
    // Either way: writable only behind a DIRTY entry, and one fault for
    // each tracked store (the worker's, this thread's later one).
    expect(r.writable).toBe(r.dirty);
    expect(r.refaulted).toBe(!r.dirty);
    expect(r.faultsTotal).toBe(2);
    expect(r.dirtyAfter).toEqual([{ offset: PAGE, length: PAGE }]);
  });

  test('the 2016 ordering leaves a writable page behind a clean entry, and later stores are lost', async () => {
    const r = await forcedInterleaving(true);
    expect(r.during & (DIRTY | LOCKED)).toBe(DIRTY);            // tagged and already unlocked
    expect(r.synced).toEqual({ entries: 1, bytes: PAGE });
    expect(r.writable).toBe(true);                               // the bad state
    expect(r.dirty).toBe(false);
    expect(r.refaulted).toBe(false);                             // no fault: untracked
    expect(r.dirtyAfter).toEqual([]);                            // the next sync would skip it
  });
});

describe('stress: writers and syncers on many threads', () => {
  // Faults per run (UDAX_STRESS_FAULTS=N for longer runs). A PMD entry
  // faults once per sync epoch for 512 pages, so it gets fewer.
  const scale = Number(process.env.UDAX_STRESS_FAULTS ?? 30_000) / 30_000;
  const seconds = Number(process.env.UDAX_STRESS_SECONDS ?? 25);
  for (const entrySize of [PAGE, PMD_SIZE]) {
    // file + media: 4 MiB (PTE) or 128 MiB (PMD) written
    test.skipIf(shortOfShm(entrySize === PAGE ? 16 << 20 : 192 << 20, `${entrySize === PAGE ? 'PTE' : 'PMD'} stress`))(`${entrySize === PAGE ? 'PTE' : 'PMD'} entries: no writable page behind a clean entry, no lost store`, async () => {
      const pages = entrySize === PAGE ? 512 : 16384;
      const targetFaults = Math.round((entrySize === PAGE ? 30_000 : 3_000) * scale);
      const writers = 3;
      // The media receives exactly what writeback flushed (under the entry locks).
      const path = scratchPath();
      const f = open(path, { create: true, size: pages * PAGE, entrySize, media: 'shadow', mediaPath: `${path}.media` });
      const m = f.map();
      const control = new SharedArrayBuffer(4);
      const expected = new SharedArrayBuffer(pages * writers * 4);
      const stop = new Int32Array(control);
      const common = { fileHandle: f.handle(), mappingHandle: m.handle(), control, expected, writers, pages };
      const threads: Worker[] = [];
      const mappings: MappingRef[] = [{ address: mappingAddress(m), offset: m.offset, length: m.length }];
      for (let id = 0; id < writers; id++) {
        const w = new Worker(workerUrl('stress-worker.mjs'), { workerData: { ...common, role: 'writer', id, ownMapping: id === 0, seed: 7 + id } });
        const ref = await nextMessage(w);
        if (ref.address !== mappings[0].address) mappings.push(ref);
        threads.push(w);
      }
      const syncer = new Worker(workerUrl('stress-worker.mjs'), { workerData: { ...common, role: 'syncer', id: 99, seed: 99, mediaPath: `${path}.media` } });
      await nextMessage(syncer);
      threads.push(syncer);
      const finished = threads.map((w) => nextMessage(w, (x: any) => x?.done));
      // Listen now: a worker may exit before the others report done.
      const exited = threads.map((w) => new Promise((r) => w.once('exit', r)));

      let checks = 0, checkedPages = 0, mainSyncs = 0;
      const deadline = Date.now() + seconds * 1000;
      // async: no page is ever read-only, so the invariant is the oracle
      // below (the harvest lock is what makes it hold: trap 6)
      const faultHook = TRACKER !== 'async';
      // async: written pages pile up between harvests; count syncs instead
      const more = () => (faultHook ? writesSeen(f) < targetFaults : mainSyncs < 200);
      while (more() && Date.now() < deadline) {
        if (faultHook) checkedPages += checkInvariant(f, mappings);
        checks++;
        f.sync(0, (pages / 2) * PAGE);  // overlaps the syncer's ranges
        mainSyncs++;
        await sleep(2);
      }
      Atomics.store(stop, 0, 1);
      const reports = await Promise.all(finished);
      await Promise.all(exited);

      // Quiescent: one last sync cleans everything and leaves no page writable.
      if (faultHook) checkedPages += checkInvariant(f, mappings.slice(0, 1));  // the workers' own mappings are unmapped
      f.sync();
      expect(f.dirtyRanges()).toEqual([]);
      if (faultHook) expect(writablePages(m).some((x) => x)).toBe(false);
      // What the flushes persisted equals the live content.
      const media = readFileSync(`${path}.media`);
      expect(media.length).toBe(m.length);
      expect(Buffer.compare(media, Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.length))).toBe(0);
      rmSync(`${path}.media`, { force: true });
      // Every store's last value is in the file.
      const words = new Int32Array(m.bytes.buffer, m.bytes.byteOffset, m.length / 4);
      const last = new Int32Array(expected);
      const persisted = new Int32Array(media.buffer, media.byteOffset, media.length / 4);
      let lost = 0, stored = 0;
      for (let p = 0; p < pages; p++) {
        for (let w = 0; w < writers; w++) {
          if (last[p * writers + w]) stored++;
          if (words[p * 1024 + w] !== last[p * writers + w] || persisted[p * 1024 + w] !== last[p * writers + w]) lost++;
        }
      }
      const s = f.stats();
      console.log(`stress ${TRACKER} ${entrySize === PAGE ? 'PTE' : 'PMD'}: ${s.writeFaults} faults, ${s.pagesHarvested} harvested, ${s.syncs} syncs (${mainSyncs} main, ` +
        `${reports.find((r) => r.syncs !== undefined).syncs} worker), ${checks} checked points over ${checkedPages} writable pages, ` +
        `${reports.reduce((n, r) => n + (r.stores ?? 0), 0)} stores, ${stored} page slots, ${lost} lost, ` +
        `${reports.find((r) => r.syncs !== undefined).late} not durable when a sync returned`);
      expect(lost).toBe(0);
      // and each of the syncer's syncs made what was stored before it durable
      expect(reports.find((r) => r.syncs !== undefined).late).toBe(0);
      expect(writesSeen(f)).toBeGreaterThan(targetFaults / 10);
      f.close();
    }, (seconds + 60) * 1000);
  }
});

describe('mappings that come and go', () => {
  test('threads map, store and unmap while others sync through every mapping', async () => {
    const pages = 256, writers = 2;
    const f = open(scratchPath(), { create: true, size: pages * PAGE });
    const control = new SharedArrayBuffer(4);
    const expected = new SharedArrayBuffer(pages * writers * 4);
    const common = { fileHandle: f.handle(), control, expected, writers, pages };
    const threads = [0, 1].map((id) => new Worker(workerUrl('stress-worker.mjs'), { workerData: { ...common, role: 'remapper', id, seed: 3 + id } }));
    await Promise.all(threads.map((w) => nextMessage(w)));
    const finished = threads.map((w) => nextMessage(w, (x: any) => x?.done));
    const exited = threads.map((w) => new Promise((r) => w.once('exit', r)));
    const until = Date.now() + 3000;
    let syncs = 0;
    while (Date.now() < until) {
      f.sync();
      syncs++;
      await sleep(0);
    }
    Atomics.store(new Int32Array(control), 0, 1);
    const reports = await Promise.all(finished);
    await Promise.all(exited);
    f.sync();
    expect(f.dirtyRanges()).toEqual([]);
    const words = new Int32Array(f.map().bytes.buffer);
    const last = new Int32Array(expected);
    for (let i = 0; i < pages * writers; i++) expect(words[Math.floor(i / writers) * 1024 + (i % writers)]).toBe(last[i]);
    console.log(`remap: ${reports.reduce((n, r) => n + r.maps, 0)} map/unmap cycles against ${syncs} syncs`);
    f.close();
  }, 60_000);
});

describe('the last view released by a thread that ends', () => {
  // A worker that ends releases its views of a mapping while the owner may
  // be unmapping it: the unmap must finish its tombstone before the slot can
  // be freed (it once wrote the freed flags: SIGSEGV in about 1 in 15 runs).
  test('the owner closes while workers that stored through the mapping are ending: no crash, 30 times', () => {
    const r = runChild(`
      import { Worker } from 'node:worker_threads';
      import { open } from ${JSON.stringify(distIndex)};
      import { rmSync } from 'node:fs';
      const worker = \`
        import { workerData, parentPort } from 'node:worker_threads';
        const { attach } = await import(workerData.index);
        const m = attach(workerData.fh).attachMapping(workerData.mh);
        for (let p = 0; p < 256; p++) m.bytes[p * 4096 + workerData.k] = 1;
        parentPort.postMessage('done');
      \`;
      for (let round = 0; round < 30; round++) {
        const path = ${JSON.stringify(scratchPath('last-view'))} + round;
        const f = open(path, { create: true, size: 256 * 4096 });
        const m = f.map();
        const ws = [0, 1].map((k) => new Worker(worker, { eval: true, workerData: { index: ${JSON.stringify(distIndex)}, fh: f.handle(), mh: m.handle(), k } }));
        const exited = ws.map((w) => new Promise((ok) => w.once('exit', ok)));
        await Promise.all(ws.map((w) => new Promise((ok) => w.once('message', ok))));
        f.close();  // while the workers end and drop their views
        await Promise.all(exited);
        rmSync(path);
      }
      console.log('ok');
    `, { timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.stdout.trim()).toBe('ok');
  });
});

describe('use after unmap from another thread', () => {
  test('a stale view in a worker crashes with a message and never writes the file', () => {
    const path = scratchPath('uau');
    const r = runChild(`
      import * as udax from ${JSON.stringify(distIndex)};
      import { Worker } from 'node:worker_threads';
      const file = udax.open(${JSON.stringify(path)}, { create: true, size: 65536 });
      const m = file.map();
      const w = new Worker(new URL(${JSON.stringify(workerUrl("stale-view-worker.mjs").href)}),
        { execArgv: [], workerData: { fileHandle: file.handle(), mappingHandle: m.handle() } });
      w.once('message', () => {
        m.unmap();
        const other = udax.open(${JSON.stringify(path + '-other')}, { create: true, size: 65536 }).map();
        w.postMessage('go');
        w.once('message', (x) => console.log(x));
      });
    `);
    expect(r.signal, `status ${r.status} stdout ${r.stdout} stderr ${r.stderr}`).toBe('SIGSEGV');
    expect(r.stdout).not.toContain('stored');
    expect(r.stderr).toContain(`udax: access to ${path} at file offset 0x8 through a view of a mapping that was unmapped`);
    expect(readFileSync(path)[8]).toBe(0);
    expect(readFileSync(path + '-other').every((b) => b === 0)).toBe(true);
    removeScratchExtra(path + '-other');
  });
});

function removeScratchExtra(path: string) {
  rmSync(path, { force: true });
}

// sigsegv: only mprotect'ed islands split VMAs
describe.skipIf(notSigsegv)('VMA budget', () => {
  function scatteredStores(m: Mapping, pages: number, count: number, seed: number): Map<number, number> {
    const stored = new Map<number, number>();
    const windowPages = Math.min(pages, 2 ** 30 / PAGE);
    const windows: Int32Array[] = [];
    for (let k = 0; k * windowPages < pages; k++) {
      const v = m.view(k * windowPages * PAGE, Math.min(windowPages, pages - k * windowPages) * PAGE);
      windows.push(new Int32Array(v.buffer, v.byteOffset, v.length / 4));
    }
    let s = seed;
    for (let i = 0; i < count; i++) {
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
      const page = (s >>> 0) % pages;
      const value = i + 1;
      windows[Math.floor(page / windowPages)][(page % windowPages) * 1024 + 3] = value;
      stored.set(page, value);
    }
    return stored;
  }

  function verify(m: Mapping, pages: number, stored: Map<number, number>): number {
    let lost = 0;
    const windowPages = Math.min(pages, 2 ** 30 / PAGE);
    for (const [page, value] of stored) {
      const k = Math.floor(page / windowPages);
      const v = m.view(k * windowPages * PAGE + (page % windowPages) * PAGE + 12, 4);
      if (new Int32Array(v.buffer, v.byteOffset, 1)[0] !== value) lost++;
    }
    return lost;
  }

  function mappingVmas(m: Mapping): number {
    const base = mappingAddress(m);
    return readFileSync('/proc/self/maps', 'utf8').trim().split('\n').filter((l) => {
      const [a, b] = l.split(' ')[0].split('-').map((x) => parseInt(x, 16));
      return a >= base && b <= base + m.length;
    }).length;
  }

  test('past a small budget, faults coarsen to 2 MiB blocks; nothing is lost', () => {
    const pages = 16384;
    const f = open(scratchPath(), { create: true, size: pages * PAGE });  // installs the tracker first
    const { budget, used: usedBefore } = vmaUsage();  // used: other tests' live islands
    setVmaBudget(400 + usedBefore);
    try {
      const m = f.map();
      const stored = scatteredStores(m, pages, 3000, 12345);
      const s = f.stats();
      expect(s.coarsenedBlocks).toBeGreaterThan(0);
      expect(mappingVmas(m)).toBeLessThan(400 + 2 * 32 + 10);  // a block past the budget adds at most 2
      expect(vmaUsage().used - usedBefore).toBeLessThanOrEqual(400 + 2 * 32);
      f.sync();
      expect(f.dirtyRanges()).toEqual([]);
      expect(mappingVmas(m)).toBe(1);
      expect(vmaUsage().used).toBe(usedBefore);
      expect(verify(m, pages, stored)).toBe(0);
      f.close();
    } finally {
      setVmaBudget(budget);
    }
  });

  test('near the budget, map and prepareWrite write the file back early', () => {
    const pages = 4096;
    const f = open(scratchPath(), { create: true, size: pages * PAGE });
    const { budget, used: usedBefore } = vmaUsage();
    setVmaBudget(usedBefore + 400);
    try {
      const m = f.map();
      for (let p = 0; p < 120; p++) m.bytes[p * 2 * PAGE] = 1;  // 120 islands: ~240 VMAs, under 3/4
      m.prepareWrite(PAGE, PAGE);
      expect(f.stats()).toMatchObject({ earlyWritebacks: 0, syncs: 0 });
      for (let p = 120; p < 200; p++) m.bytes[p * 2 * PAGE] = 1;  // ~400: past 3/4
      expect(f.stats().coarsenedBlocks).toBe(0);
      m.prepareWrite(3 * PAGE, PAGE);
      expect(f.stats()).toMatchObject({ earlyWritebacks: 1, syncs: 1 });
      expect(f.dirtyRanges()).toEqual([{ offset: 3 * PAGE, length: PAGE }]);  // only what came after
      expect(mappingVmas(m)).toBeLessThanOrEqual(3);
      for (let p = 0; p < 200; p++) m.bytes[p * 2 * PAGE] = 2;
      f.map({ length: PAGE });
      expect(f.stats().earlyWritebacks).toBe(2);
      f.close();
    } finally {
      setVmaBudget(budget);
    }
  });

  // sparse, but ~750 MiB of it is written
  test.skipIf(shortOfShm(1 << 30, '8 GiB file'))('an 8 GiB file, 200,000 random pages stored through view windows, then a sync: nothing lost', () => {
    const pages = (8 * 2 ** 30) / PAGE;
    const f = open(scratchPath('8g'), { create: true, size: pages * PAGE });
    const m = f.map();
    expect(() => m.bytes).toThrow(RangeError);
    const t0 = performance.now();
    const stored = scatteredStores(m, pages, 200_000, 987654321);
    const t1 = performance.now();
    const s = f.stats();
    expect(vmaUsage().used).toBeLessThanOrEqual(vmaUsage().budget + 2 * 4096);
    const synced = f.sync();
    const t2 = performance.now();
    expect(f.dirtyRanges()).toEqual([]);
    expect(mappingVmas(m)).toBe(1);
    expect(verify(m, pages, stored)).toBe(0);
    console.log(`8 GiB: ${stored.size} distinct pages, ${s.writeFaults} faults, ${s.coarsenedBlocks} coarsened blocks, ` +
      `${s.coarsenedMappings} coarsened mappings, stores ${(t1 - t0).toFixed(0)} ms, sync ${(t2 - t1).toFixed(0)} ms ` +
      `(${synced.entries} entries, ${(synced.bytes / 2 ** 20).toFixed(0)} MiB flushed)`);
    // tracking goes on after the sync
    const again = scatteredStores(m, pages, 1000, 42);
    expect(f.stats().writeFaults).toBeGreaterThan(s.writeFaults);
    f.sync();
    expect(verify(m, pages, again)).toBe(0);
    m.unmap();
    f.close();
  }, 120_000);
});
