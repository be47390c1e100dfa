// Stores a counter into word 0 of file a, then into word 0 of file b, in
// program order, until told to stop: at every instant a's value is b's or
// b's + 1. A snapshot of the two files at one instant must keep that.
import { parentPort, workerData } from 'node:worker_threads';
import { attach } from 'udax';

const { a, b, control } = workerData;
const stop = new Int32Array(control);
const fa = attach(a.fileHandle);
const fb = attach(b.fileHandle);
const wa = new Int32Array(fa.attachMapping(a.mappingHandle).bytes.buffer, 0, 1024);
const wb = new Int32Array(fb.attachMapping(b.mappingHandle).bytes.buffer, 0, 1024);
parentPort.postMessage('ready');
let c = 0;
while (Atomics.load(stop, 0) === 0) {
  c++;
  wa[0] = c;
  wb[0] = c;
  if ((c & 1023) === 0) Atomics.store(stop, 1, c);  // progress, for the test
}
fa.close();
fb.close();
parentPort.postMessage({ stopped: c });
