// A worker of the crash-point pool (src/crash-points-pool.ts): imports the
// user's module, then explores each point it is sent, on its own volume.
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { explorePoint, type PointContext, type PointJob } from './crash-points.js';
import { failuresToWire, toWire, type WorkerMessage, type WorkerSetup } from './crash-points-pool.js';

const setup = workerData as WorkerSetup;
const port = parentPort!;
const mod = await import(pathToFileURL(setup.module.path).href) as Record<string, unknown>;
const workload = mod[setup.module.workload];
const recover = mod[setup.module.recover];
const send = (m: WorkerMessage) => port.postMessage(m);

port.on('message', (job: PointJob) => {
  void (async () => {
    try {
      if (typeof workload !== 'function' || typeof recover !== 'function') {
        throw new TypeError(`module '${setup.module.path}' must export functions ${setup.module.workload} and ${setup.module.recover}`);
      }
      const ctx: PointContext = {
        volumeDir: setup.volumeDir, statesDir: setup.statesDir, volumeOptions: setup.volumeOptions, at: setup.at,
        workload: workload as PointContext['workload'], recover: recover as PointContext['recover'], check: { ...setup.check, checked: 0 },
      };
      let last = 0;
      const result = await explorePoint(ctx, job, (checked, total) => {
        const now = Date.now();
        if (now - last < 50 && checked < total) return;  // progress messages at most every 50 ms
        last = now;
        send({ type: 'progress', index: job.index, checked, total });
      });
      send({ type: 'done', result: { ...result, failures: failuresToWire(result.failures) as typeof result.failures } });
    } catch (e) {
      send({ type: 'error', error: toWire(e) });
    }
  })();
});
