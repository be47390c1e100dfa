// A stress-test thread: a writer storing sequence numbers into random pages,
// or a syncer writing back random ranges, until told to stop.
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { attach } from 'udax';
import { mappingAddress } from 'udax/testing';

const { role, id, fileHandle, mappingHandle, ownMapping, control, expected, writers, pages, seed } = workerData;
const stop = new Int32Array(control);        // [0] = stop flag
const last = new Int32Array(expected);       // last seq stored per (page, writer)
const file = attach(fileHandle);

let state = seed >>> 0 || 1;
const random = (n) => {
  state ^= state << 13; state ^= state >>> 17; state ^= state << 5;
  return (state >>> 0) % n;
};

if (role === 'writer') {
  const mapping = ownMapping ? file.map() : file.attachMapping(mappingHandle);
  parentPort.postMessage({ address: mappingAddress(mapping), offset: mapping.offset, length: mapping.length });
  const words = new Int32Array(mapping.bytes.buffer, mapping.bytes.byteOffset, mapping.length / 4);
  let seq = 0;
  while (Atomics.load(stop, 0) === 0) {
    for (let k = 0; k < 64; k++) {
      const page = random(pages);
      seq++;
      words[page * 1024 + id] = seq;                 // the store under test
      Atomics.store(last, page * writers + id, seq);  // recorded after it completed
    }
  }
  parentPort.postMessage({ done: true, stores: seq });
  mapping.unmap();
} else if (role === 'remapper') {
  // Mappings come and go while other threads sync through every mapping.
  let maps = 0;
  parentPort.postMessage({ ready: true });
  while (Atomics.load(stop, 0) === 0) {
    const mapping = file.map();
    const words = new Int32Array(mapping.bytes.buffer, mapping.bytes.byteOffset, mapping.length / 4);
    for (let k = 0; k < 16; k++) {
      const page = random(pages);
      const seq = Atomics.add(last, page * writers + id, 1) + 1;
      words[page * 1024 + id] = seq;
    }
    mapping.unmap();
    maps++;
  }
  parentPort.postMessage({ done: true, maps });
} else {
  // Property 2 of model/README.md, per sync: every store recorded before the
  // sync began is on the media when it returns (a sample of the range's
  // pages; seqs only grow, so the media holds that seq or a later one).
  const pageSize = 4096;
  const media = workerData.mediaPath ? openSync(workerData.mediaPath, 'r') : undefined;
  const slot = new Int32Array(writers);
  let syncs = 0, late = 0;
  parentPort.postMessage({ ready: true });
  while (Atomics.load(stop, 0) === 0) {
    const whole = random(4) === 0;
    const first = whole ? 0 : random(pages);
    const count = whole ? pages : 1 + random(pages - first);
    const sample = Array.from({ length: Math.min(count, 32) }, () => first + random(count));
    const before = sample.map((p) => Array.from({ length: writers }, (_, w) => Atomics.load(last, p * writers + w)));
    if (whole) file.sync();
    else file.sync(first * pageSize, count * pageSize);
    if (media !== undefined) {
      sample.forEach((p, k) => {
        readSync(media, slot, 0, writers * 4, p * pageSize);
        for (let w = 0; w < writers; w++) if (slot[w] < before[k][w]) late++;
      });
    }
    syncs++;
  }
  if (media !== undefined) closeSync(media);
  parentPort.postMessage({ done: true, syncs, late });
}
file.close();
