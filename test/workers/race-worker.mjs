// Stores one byte into page 1 of the attached mapping when told to.
import { parentPort, workerData } from 'node:worker_threads';
import { attach } from 'udax';

const file = attach(workerData.fileHandle);
const mapping = file.attachMapping(workerData.mappingHandle);
const bytes = mapping.bytes;
parentPort.on('message', (msg) => {
  if (msg === 'store') {
    parentPort.postMessage('storing');
    bytes[4096 + 1] = 42;
    parentPort.postMessage('stored');
  } else if (msg === 'exit') {
    mapping.unmap();
    file.close();
    parentPort.close();
  }
});
parentPort.postMessage('ready');
