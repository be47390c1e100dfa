// Like volume-writer.mjs, but maps both files afresh for every store (and
// unmaps them 32 at a time: an async unmap harvests, which waits for a
// snapshot), so mappings are made while the main thread takes snapshots: a
// mapping made during a snapshot must hold its stores back as the frozen
// ones do (native/freeze.cc), or a snapshot sees b ahead of a.
import { parentPort, workerData } from 'node:worker_threads';
import { attach } from 'udax';

const { a, b, control } = workerData;
const stop = new Int32Array(control);
const fa = attach(a);
const fb = attach(b);
parentPort.postMessage('ready');
let c = 0;
const mapped = [];
while (Atomics.load(stop, 0) === 0) {
  c++;
  const ma = fa.map({ offset: 0, length: 4096 });
  const mb = fb.map({ offset: 0, length: 4096 });
  new Int32Array(ma.bytes.buffer, ma.bytes.byteOffset, 1)[0] = c;
  new Int32Array(mb.bytes.buffer, mb.bytes.byteOffset, 1)[0] = c;
  mapped.push(ma, mb);
  if (mapped.length === 64) for (const m of mapped.splice(0)) m.unmap();
  if ((c & 63) === 0) Atomics.store(stop, 1, c);  // progress, for the test
}
fa.close();
fb.close();
parentPort.postMessage({ stopped: c });
