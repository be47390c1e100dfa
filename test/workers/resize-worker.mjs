// Threads for test/42-resize: a writer storing sequence numbers into the
// stable part of the file, a resizer growing and shrinking the rest (and
// storing into what it grew), or a one-shot check that a worker sees a size
// another thread set.
import { parentPort, workerData } from 'node:worker_threads';
import { attach } from 'udax';

const { role, fileHandle, control, base, extra, id, seed } = workerData;
const stop = control && new Int32Array(control);
const file = attach(fileHandle);
const PAGE = 4096;

let state = seed >>> 0 || 1;
const random = (n) => {
  state ^= state << 13; state ^= state >>> 17; state ^= state << 5;
  return (state >>> 0) % n;
};

if (role === 'writer') {
  const m = file.map({ offset: 0, length: base });
  const words = new Int32Array(m.bytes.buffer, m.bytes.byteOffset, base / 4);
  let seq = 0;
  parentPort.postMessage({ ready: true });
  while (Atomics.load(stop, 0) === 0) {
    for (let k = 0; k < 64; k++) words[random(base / PAGE) * 1024 + id] = ++seq;
  }
  m.unmap();
  parentPort.postMessage({ done: true, stores: seq });
} else if (role === 'resizer') {
  let resizes = 0;
  parentPort.postMessage({ ready: true });
  while (Atomics.load(stop, 0) === 0) {
    const size = base + (1 + random(extra / PAGE)) * PAGE;
    file.resize(size);
    resizes++;
    // Store into what this thread grew (no other thread shrinks it).
    const m = file.map({ offset: base, length: size - base });
    m.bytes[random(size - base)] = 1 + random(255);
    if (random(4) === 0) file.sync(base, size - base);
    m.unmap();
    if (random(2) === 0) {
      file.resize(base);
      resizes++;
    }
  }
  parentPort.postMessage({ done: true, resizes });
} else if (role === 'observer') {
  // Told of a resize made by the opener: see it, map the new tail, store.
  parentPort.on('message', ({ size }) => {
    const seen = file.size;
    const m = file.map({ offset: size - PAGE, length: PAGE });
    m.bytes.fill(0x5a);
    file.sync(size - PAGE, PAGE);
    m.unmap();
    parentPort.postMessage({ seen, dirty: file.dirtyRanges() });
    file.close();
    parentPort.close();
  });
  parentPort.postMessage({ ready: true });
}
