// The sigbus tracker (userfaultfd write-protect in sync mode with
// UFFD_FEATURE_SIGBUS): its fault protocol, what it refuses, how its SIGBUS
// is told apart from a genuine one, system calls into its pages, workers.
// The files force tracker: 'sigbus', so they run in every pass of npm test;
// the rest of the suite runs with it in the UDAX_TRACKER=sigbus pass
// (including the stress oracle of test/60-threads).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync, openSync, readSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, test } from 'vitest';
import { open, PMD_SIZE } from 'udax';
import { ENTRY_BITS, entryWord, mappingAddress, sigbusTrackerAvailability, vmaUsage } from 'udax/testing';
import { daxError, distIndex, nextMessage, removeScratch, runChild, scratchPath, uffdProtectedPages } from './helpers.js';

afterAll(removeScratch);

const PAGE = 4096;
const { DIRTY, LOCKED } = ENTRY_BITS;
const testingIndex = distIndex.replace(/index\.js$/, 'testing.js');
const cli = distIndex.replace(/src\/index\.js$/, 'cli/udax.js');
const sigbus = sigbusTrackerAvailability();
if (!sigbus.available) console.warn(`skipped the sigbus tracker's tests: ${sigbus.reason}`);

/** VMAs of /proc/self/maps overlapping [address, address+length). */
function vmasOver(address: number, length: number): number {
  return readFileSync('/proc/self/maps', 'utf8').trim().split('\n').filter((l) => {
    const [a, b] = l.split(' ')[0].split('-').map((x) => parseInt(x, 16));
    return b > address && a < address + length;
  }).length;
}

describe.skipIf(!sigbus.available)('the sigbus tracker', () => {
  test('the self-test passed once per process; udax info shows it with the reason', () => {
    expect(sigbus.reason).toMatch(/UFFD_FEATURE_SIGBUS self-test passed/);
    const udaxInfo = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      spawnSync(process.execPath, [cli, 'info', ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } });
    expect(udaxInfo(['/dev/shm']).stdout).toMatch(/\n {2}sigbus: +available: userfaultfd write-protect \+ UFFD_FEATURE_SIGBUS self-test passed/);
    const disk = udaxInfo([tmpdir(), '--json'], { UDAX_TRACKER: 'sigbus' });
    const info = JSON.parse(disk.stdout);
    expect(info.udax.trackers.default).toBeUndefined();  // forced sigbus cannot run on ext4
    expect(info.udax.trackers.reason).toMatch(/ERR_UDAX_TRACKER_UNAVAILABLE.*needs a tmpfs file; this one is on ext4/);
  });

  test('fault protocol: a store to a write-protected page faults once, DIRTY and un-protected; sync protects it again; no VMA is split', () => {
    const f = open(scratchPath(), { create: true, size: 16 * PAGE, tracker: 'sigbus' });
    expect(f.tracker).toBe('sigbus');
    const m = f.map();
    const base = mappingAddress(m);
    const vmas = vmasOver(base, m.length);
    const budgetUsed = vmaUsage().used;
    expect(uffdProtectedPages(base, m.length).every((wp) => wp)).toBe(true);  // holes too (armed)
    m.bytes[3 * PAGE + 7] = 1;
    m.bytes[3 * PAGE + 8] = 2;  // same page: no second fault
    m.bytes[9 * PAGE] = 3;
    expect(f.stats()).toMatchObject({ writeFaults: 2, pagesHarvested: 0, dirtyEntries: 2 });
    expect(f.stats().faultTimeNs).toBeGreaterThan(0);
    expect(entryWord(f, 3) & (DIRTY | LOCKED)).toBe(DIRTY);
    const wp = uffdProtectedPages(base, m.length);
    expect(wp.map((p, i) => (p ? -1 : i)).filter((i) => i >= 0)).toEqual([3, 9]);
    expect(vmasOver(base, m.length)).toBe(vmas);    // per-PTE: one VMA still
    expect(vmaUsage().used).toBe(budgetUsed);       // and nothing counted against the VMA budget
    expect(f.sync()).toEqual({ entries: 2, bytes: 2 * PAGE });
    expect(uffdProtectedPages(base, m.length).every((p) => p)).toBe(true);
    expect(f.dirtyRanges()).toEqual([]);
    m.bytes[9 * PAGE + 1] = 4;
    expect(f.stats().writeFaults).toBe(3);
    expect(f.dirtyRanges()).toEqual([{ offset: 9 * PAGE, length: PAGE }]);
    expect([...m.bytes.subarray(3 * PAGE + 7, 3 * PAGE + 9), m.bytes[9 * PAGE], m.bytes[9 * PAGE + 1]]).toEqual([1, 2, 3, 4]);
    f.close();
  });

  test('a PMD entry: a store un-protects the whole 2 MiB entry, sync protects it again', () => {
    const f = open(scratchPath(), { create: true, size: 2 * PMD_SIZE, entrySize: PMD_SIZE, tracker: 'sigbus' });
    const m = f.map();
    m.bytes[PMD_SIZE + 5] = 1;
    m.bytes[2 * PMD_SIZE - 1] = 1;
    expect(f.stats().writeFaults).toBe(1);
    const wp = uffdProtectedPages(mappingAddress(m), m.length);
    expect(wp.slice(0, 512).every((p) => p)).toBe(true);
    expect(wp.slice(512).some((p) => p)).toBe(false);
    expect(f.sync()).toEqual({ entries: 1, bytes: PMD_SIZE });
    expect(uffdProtectedPages(mappingAddress(m), m.length).every((p) => p)).toBe(true);
    f.close();
  });

  test('an ext4 file is refused with ERR_UDAX_TRACKER_UNAVAILABLE, and nothing changes', () => {
    const created = join(tmpdir(), `udax-test-${process.pid}-sigbus-new`);
    expect(() => open(created, { create: true, size: 4 * PAGE, tracker: 'sigbus' }))
      .toThrow(daxError('ERR_UDAX_TRACKER_UNAVAILABLE', 'ioctl'));
    expect(existsSync(created)).toBe(false);          // not left behind
    const existing = join(tmpdir(), `udax-test-${process.pid}-sigbus-old`);
    writeFileSync(existing, Buffer.alloc(PAGE, 1));
    try {
      expect(() => open(existing, { size: 8 * PAGE, tracker: 'sigbus' })).toThrow(/needs a tmpfs file; this one is on ext4/);
      expect(statSync(existing).size).toBe(PAGE);       // not grown
      expect(open(existing, { tracker: 'sigsegv' }).tracker).toBe('sigsegv');  // and not claimed by the refused open
    } finally {
      rmSync(existing, { force: true });
    }
  });

  test('auto: async where it runs; with PAGEMAP_SCAN refused (a kernel before 6.7), sigbus on tmpfs and sigsegv on ext4', () => {
    const disk = join(tmpdir(), `udax-test-${process.pid}-auto`);
    const r = runChild(`
      import { open } from ${JSON.stringify(distIndex)};
      import { refusePagemapScan, asyncTrackerAvailability } from ${JSON.stringify(testingIndex)};
      refusePagemapScan();
      const f = open(${JSON.stringify(scratchPath('auto'))}, { create: true, size: 4 * 4096 });
      const m = f.map();
      m.bytes[4096] = 1;
      console.log(f.tracker, f.stats().writeFaults, JSON.stringify(f.sync()));
      console.log(asyncTrackerAvailability().reason);
      const d = open(${JSON.stringify(disk)}, { create: true, size: 4 * 4096 });
      console.log(d.tracker);
      d.close();
    `, { env: { UDAX_TRACKER: '' } });
    rmSync(disk, { force: true });
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('sigbus 1 {"entries":1,"bytes":4096}');
    expect(lines[1]).toMatch(/PAGEMAP_SCAN failed .*errno 25$/);  // ENOTTY
    expect(lines[2]).toBe('sigsegv');
  });

  test('fs.readSync into a clean page fails with EFAULT (user-mode userfaultfd); readFromFile (prepareWrite) works and dirties', () => {
    const src = scratchPath('src');
    writeFileSync(src, Buffer.alloc(3 * PAGE, 0x5a));
    const fd = openSync(src, 'r');
    const f = open(scratchPath(), { create: true, size: 16 * PAGE, tracker: 'sigbus' });
    const m = f.map();
    expect(() => readSync(fd, m.view(PAGE, PAGE), 0, PAGE, 0)).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    expect(f.dirtyRanges()).toEqual([]);
    expect(m.readFromFile(fd, 0, 4 * PAGE, 3 * PAGE)).toBe(3 * PAGE);
    expect(m.bytes[6 * PAGE + 100]).toBe(0x5a);
    expect(f.dirtyRanges()).toEqual([{ offset: 4 * PAGE, length: 3 * PAGE }]);
    expect(f.stats().writeFaults).toBe(0);  // no fault: prepareWrite un-protected them
    expect(f.sync()).toEqual({ entries: 3, bytes: 3 * PAGE });
    expect(uffdProtectedPages(mappingAddress(m) + 4 * PAGE, 3 * PAGE)).toEqual([true, true, true]);
    closeSync(fd);
    f.close();
  });

  // A genuine SIGBUS must crash as without udax, and never loop: the handler
  // dirties and un-protects the write-protected marker past EOF once, then
  // the retry faults on a page neither present nor protected: not ours.
  for (const what of ['store', 'load'] as const) {
    test(`a ${what} past the end of a file shrunk underneath dies of SIGBUS, as without udax (no loop)`, () => {
      const path = scratchPath('eof');
      const r = runChild(`
        import { open } from ${JSON.stringify(distIndex)};
        import { truncateSync } from 'node:fs';
        const f = open(${JSON.stringify(path)}, { create: true, size: 8 * 4096, tracker: 'sigbus' });
        const m = f.map();
        m.bytes[0] = 1;
        m.bytes[5 * 4096] = 1;  // a present page, then truncated away
        truncateSync(${JSON.stringify(path)}, 4096);
        console.log('shrunk');
        ${what === 'store' ? 'm.bytes[6 * 4096 + 3] = 2; m.bytes[5 * 4096 + 1] = 2;' : 'console.log(m.bytes[6 * 4096]);'}
        console.log('survived');
      `, { timeout: 10_000 });
      expect(r.error, 'the child hung (timeout)').toBeUndefined();
      expect(r.signal, `status ${r.status} stderr ${r.stderr}`).toBe('SIGBUS');
      expect(r.stdout).toBe('shrunk\n');
    });
  }

  test('SIGBUS sent with kill() still kills the process', () => {
    const r = runChild(`
      import { open } from ${JSON.stringify(distIndex)};
      const f = open(${JSON.stringify(scratchPath('kill'))}, { create: true, size: 4096, tracker: 'sigbus' });
      f.map().bytes[0] = 1;
      process.kill(process.pid, 'SIGBUS');
      setTimeout(() => console.log('survived'), 500);
    `, { timeout: 10_000 });
    expect(r.signal).toBe('SIGBUS');
    expect(r.stdout).not.toContain('survived');
  });

  test('a sync of a file truncated by another process is a DaxError, not SIGBUS (the guard still works)', () => {
    const path = scratchPath('guard');
    const r = runChild(`
      import { open } from ${JSON.stringify(distIndex)};
      import { truncateSync } from 'node:fs';
      const f = open(${JSON.stringify(path)}, { create: true, size: 8 * 4096, tracker: 'sigbus' });
      const m = f.map();
      m.bytes[6 * 4096] = 1;
      truncateSync(${JSON.stringify(path)}, 4096);
      try { f.sync(); console.log('no error'); } catch (e) { console.log(e.name, e.code); }
    `, { timeout: 10_000 });
    expect(r.signal).toBeNull();
    expect(r.stdout.trim()).toBe('DaxError ERR_UDAX_FILE_SHRANK');
  });

  test('a worker that attaches runs sigbus too; its faults count in the shared stats and the sync re-protects its page', async () => {
    const f = open(scratchPath(), { create: true, size: 8 * PAGE, tracker: 'sigbus' });
    const m = f.map();
    const w = new Worker(`
      const { parentPort, workerData } = require('node:worker_threads');
      import(${JSON.stringify(distIndex)}).then(({ attach }) => {
        const file = attach(workerData.fileHandle);
        const mapping = file.attachMapping(workerData.mappingHandle);
        parentPort.on('message', (msg) => {
          if (msg === 'store') { mapping.bytes[2 * 4096 + 1] += 1; parentPort.postMessage('stored'); }
          else { mapping.unmap(); file.close(); parentPort.close(); }
        });
        parentPort.postMessage(file.tracker);
      });
    `, { eval: true, workerData: { fileHandle: f.handle(), mappingHandle: m.handle() } });
    expect(await nextMessage(w)).toBe('sigbus');
    w.postMessage('store');
    await nextMessage(w, (x) => x === 'stored');
    expect(f.stats().writeFaults).toBe(1);
    expect(f.dirtyRanges()).toEqual([{ offset: 2 * PAGE, length: PAGE }]);
    expect(f.sync()).toEqual({ entries: 1, bytes: PAGE });
    expect(uffdProtectedPages(mappingAddress(m) + 2 * PAGE, PAGE)).toEqual([true]);
    w.postMessage('store');
    await nextMessage(w, (x) => x === 'stored');
    expect(f.stats().writeFaults).toBe(2);
    expect(m.bytes[2 * PAGE + 1]).toBe(2);
    w.postMessage('exit');
    await new Promise((r) => w.once('exit', r));
    f.close();
  });

  test('a file open with sigbus refuses another explicit tracker; auto joins it', () => {
    const path = scratchPath('join');
    const a = open(path, { create: true, size: 4 * PAGE, tracker: 'sigbus' });
    expect(open(path, { tracker: 'auto' }).tracker).toBe('sigbus');
    expect(() => open(path, { tracker: 'sigsegv' })).toThrow(daxError('ERR_UDAX_ALREADY_OPEN', 'open'));
    a.close();
  });
});
