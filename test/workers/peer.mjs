// A peer process for test/41-processes: opens a file as a user does and runs
// commands read from stdin, one JSON object a line, answering each with one
// JSON line on stdout ({ ok: ... } or { error: { code, message } }).
//   { op: 'open', path, opts }            open it (and map it whole, if writable)
//   { op: 'store', offset, bytes }         store bytes (an array) at offset
//   { op: 'storeLoop', pages, seed, rounds, syncEvery }  random stores, syncs
//   { op: 'sync' }                         file.sync()
//   { op: 'handleSync' }                   sync through a second handle
//   { op: 'inject', opts }                 file.injectWritebackError(opts)
//   { op: 'stats' }                        file.stats()
//   { op: 'dirtyRanges' }                  file.dirtyRanges()
//   { op: 'lockAndHang', offset, length }  withEntriesLocked, never returns
//   { op: 'syncInHarvest', delayNs }       store, then sync with a long harvest delay (hangs inside)
//   { op: 'spin' }                          store into page 0 forever (answers first)
//   { op: 'mapPages', count, value }       map `count` one-page mappings (page k % pages), store value + k into byte k / pages of each
//   { op: 'crossLock', k }                 hold entry 1 + k's lock, then sync entry 2 - k (another peer holds it); a barrier in word 0
//   { op: 'openVolume', dir }              openVolume(dir) (and close it)
//   { op: 'writableClean' }                with every entry locked: offsets of pages
//                                           writable in its mapping (sigsegv: a writable
//                                           VMA) behind a clean entry (none is right)
//   { op: 'resize', size }                 file.resize(size)
//   { op: 'resizeInside', size, delayNs }  resize, sleeping inside holding the resize lock (answers first)
//   { op: 'resizeLoop', seed, rounds, minPages, maxPages }  random resizes and writes past the end
//   { op: 'size' }                         { size, durableSize } as this process sees them
//   { op: 'map', offset, length }          a new mapping; later stores go through it
//   { op: 'close' }                        close, answer, exit
// Crash images and errseq across processes:
//   { op: 'crashImage', path, units }      file.crashImage(path, { units }): { differed, persisted }
//   { op: 'crashStates', k }               file.crashStates({ k }): each state's persisted offsets
//   { op: 'openHandle' }                   another file.openHandle(): its index (the first is 0)
//   { op: 'syncHandle', index }            sync through handle index
// Children of a process that has the file open:
//   { op: 'spawnSleeper' }                 child_process.spawn('sleep'): its pid
//   { op: 'forkProbe' }                    udax/testing forkProbe(mapping): fork(); what the child finds
// The stress with the oracle:
//   { op: 'stressWriter', id, writers, ms, syncEvery, seed }  for ms, store an increasing
//       sequence number into word id of random pages (word p*1024+id), syncing every
//       syncEvery stores; answers each page's last number ([] index p, 0: never stored)
//   { op: 'syncLoop', ms }                 sync back to back for ms; answers the count
//   { op: 'reopenLoop', path, times }      times: open path, map it, store into every 16th page, close
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { open, openVolume } from 'udax';
import { ENTRY_BITS, entryWord, forkProbe, mappingAddress, setHarvestDelay, setResizeDelay } from 'udax/testing';

let file;
let mapping;
const mappings = [];  // every mapping made stays mapped (stores past a shrunk end must meet the kernel)
let handle;
const pageMappings = [];
const handles = [];
const answer = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const sleepForever = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);

function run(c) {
  switch (c.op) {
    case 'open':
      file = open(c.path, c.opts ?? {});
      if (!file.readOnly) mappings.push(mapping = file.map());
      handle = file.openHandle();
      handles.push(handle);
      return { tracker: file.tracker, size: file.size, pid: process.pid, media: file.media.kind, syncs: file.stats().syncs,
        address: mapping ? mappingAddress(mapping) : undefined };
    case 'store':
      mapping.bytes.set(c.bytes, c.offset);
      return true;
    case 'storeLoop': {
      let x = c.seed >>> 0;
      const next = () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
      const n = mapping.length;
      for (let r = 0; r < c.rounds; r++) {
        for (let k = 0; k < 64; k++) mapping.bytes[(next() >>> 8) % n] = next() >>> 24;  // high bits: an LCG's low bits cycle fast
        if (c.syncEvery && r % c.syncEvery === 0) file.sync();
      }
      return true;
    }
    case 'sync':
      file.sync();
      return true;
    case 'handleSync':
      handle.sync();
      return true;
    case 'inject':
      file.injectWritebackError(c.opts);
      return true;
    case 'stats':
      return file.stats();
    case 'dirtyRanges':
      return file.dirtyRanges();
    case 'lockAndHang':
      file.withEntriesLocked(c.offset, c.length, () => {
        answer({ ok: 'locked' });
        sleepForever();
      });
      return true;
    case 'syncInHarvest':
      mapping.bytes.set(c.bytes, c.offset);
      setHarvestDelay(c.delayNs);
      answer({ ok: 'harvesting' });
      file.sync();
      return true;
    case 'spin':
      answer({ ok: 'spinning' });
      for (let v = 0; ; v = (v + 1) & 255) mapping.bytes[(v * 4096) % mapping.length] = v;
    case 'mapPages': {
      const pages = file.size / 4096;
      for (let k = 0; k < c.count; k++) {
        const m = file.map({ offset: (k % pages) * 4096, length: 4096 });
        m.bytes[Math.floor(k / pages)] = (c.value + k) & 255;
        pageMappings.push(m);
      }
      return pageMappings.length;
    }
    case 'crossLock': {
      const other = (2 - c.k) * 4096;
      mapping.bytes[other + 1] = 1;  // the other's entry is dirty: the sync must lock it
      const bar = new Int32Array(mapping.bytes.buffer, mapping.bytes.byteOffset, 1);
      Atomics.add(bar, 0, 1);
      while (Atomics.load(bar, 0) < 2) {}
      try {
        file.withEntriesLocked((1 + c.k) * 4096, 4096, () => {
          Atomics.add(bar, 0, 1);
          while (Atomics.load(bar, 0) < 4) {}
          file.sync(other, 4096);
        });
        return 'done';
      } catch (e) {
        return e.code;
      }
    }
    case 'openVolume':
      openVolume(c.dir).close();
      return true;
    case 'writableClean':
      return file.withEntriesLocked(0, file.size, () => {
        const base = mappingAddress(mapping);
        const bad = [];
        for (const line of readFileSync('/proc/self/maps', 'utf8').trim().split('\n')) {
          const [range, perms] = line.split(' ');
          const [a, b] = range.split('-').map((x) => parseInt(x, 16));
          if (perms[1] !== 'w' || b <= base || a >= base + mapping.length) continue;
          for (let addr = Math.max(a, base); addr < Math.min(b, base + mapping.length); addr += 4096) {
            if (!(entryWord(file, Math.floor((addr - base) / file.entrySize)) & ENTRY_BITS.DIRTY)) bad.push(addr - base);
          }
        }
        return bad;
      });
    case 'resize':
      file.resize(c.size);
      return { size: file.size };
    case 'resizeInside':
      setResizeDelay(c.delayNs);
      answer({ ok: 'resizing' });
      file.resize(c.size);
      return true;
    case 'resizeLoop': {
      let x = c.seed >>> 0;
      const next = () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
      const PAGE = 4096;
      let last = file.size;
      for (let r = 0; r < c.rounds; r++) {
        const pages = c.minPages + ((next() >>> 8) % (c.maxPages - c.minPages + 1));
        if (r === c.rounds - 1 || next() & 0x100) {  // the last round resizes
          file.resize(last = pages * PAGE);
        } else {
          // A write at a random page below maxPages: past the end, it grows the file.
          const at = ((next() >>> 8) % c.maxPages) * PAGE + ((next() >>> 8) % (PAGE - 8));
          file.write(Buffer.from([next() >>> 24, next() >>> 24, 1, 2, 3, 4, 5, 6]), at);
        }
        mapping.bytes[(next() >>> 8) % (c.minPages * PAGE)] = next() >>> 24;  // below minPages: never cut
        if (r % 5 === 0) file.sync();
      }
      return { last };
    }
    case 'size':
      return { size: file.size, durableSize: file.durableSize };
    case 'map':
      mappings.push(mapping = file.map({ offset: c.offset, length: c.length }));
      return { length: mapping.length };
    case 'close':
      handle.close();
      file.close();
      answer({ ok: true });
      process.exit(0);
    // ---- crash images and errseq across processes
    case 'crashImage': {
      const r = file.crashImage(c.path, { units: c.units });
      return { differed: r.differed, persisted: r.persisted };
    }
    case 'crashStates': {
      const states = file.crashStates({ k: c.k });
      return { differed: states.differed, persisted: [...states].map((st) => st.persisted.map((u) => u.offset)) };
    }
    case 'openHandle':
      handles.push(file.openHandle());
      return handles.length - 1;
    case 'syncHandle':
      handles[c.index].sync();
      return true;
    // ---- children of a process that has the file open
    case 'spawnSleeper':
      return spawn('sleep', ['60'], { stdio: 'ignore' }).pid;
    case 'forkProbe':
      return forkProbe(mapping);
    // ---- the stress with the oracle
    case 'stressWriter': {
      const words = new Int32Array(mapping.bytes.buffer, mapping.bytes.byteOffset, mapping.length / 4);
      const pages = mapping.length / 4096;
      const last = new Array(pages).fill(0);
      let x = c.seed >>> 0;
      let seq = 0;
      for (const end = performance.now() + c.ms; performance.now() < end;) {
        for (let k = 0; k < 256; k++) {
          x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
          const p = (x >>> 8) % pages;
          words[p * 1024 + c.id] = ++seq;
          last[p] = seq;
          if (seq % c.syncEvery === 0) file.sync();
        }
      }
      return last;
    }
    case 'syncLoop': {
      let n = 0;
      for (const end = performance.now() + c.ms; performance.now() < end; n++) file.sync();
      return n;
    }
    case 'reopenLoop':
      for (let k = 0; k < c.times; k++) {
        const f = open(c.path);
        const bytes = f.map().bytes;
        for (let at = (k % 16) * 4096; at < bytes.length; at += 16 * 4096) bytes[at] = k & 255;
        f.close();
      }
      return true;
    default:
      throw new Error(`unknown op ${c.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  try {
    answer({ ok: run(JSON.parse(line)) ?? null });
  } catch (e) {
    answer({ error: { code: e.code, message: e.message, syscall: e.syscall, stack: e.stack } });
  }
});
lines.on('close', () => process.exit(0));
