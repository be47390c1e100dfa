// Keeps a view of a mapping another thread will unmap, then stores into it.
import { parentPort, workerData } from 'node:worker_threads';
import { attach } from 'udax';

const file = attach(workerData.fileHandle);
const bytes = file.attachMapping(workerData.mappingHandle).bytes;
parentPort.once('message', () => {
  bytes[8] = 99;
  parentPort.postMessage('stored');
});
parentPort.postMessage('ready');
