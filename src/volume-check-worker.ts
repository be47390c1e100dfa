// A worker of the state pool (src/volume-check-pool.ts): imports the user's
// recovery, rebuilds the snapshot on its own copy of the base image, and
// checks the states at its positions.
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { toWire } from './crash-points-pool.js';
import { VolumeCrashStates, type PlannedState } from './volume-crash.js';
import { choiceOf, runRecover, type VolumeRecoverFn } from './volume-check.js';
import { ABORT, FIRST_FAILING, type StateWorkerMessage, type StateWorkerSetup } from './volume-check-pool.js';

const setup = workerData as StateWorkerSetup;
const port = parentPort!;
const send = (m: StateWorkerMessage) => port.postMessage(m);

/** Every state in the one-thread order, with its position. */
function* positions(states: VolumeCrashStates): Generator<[number, PlannedState]> {
  let position = 0;
  for (const p of states.planned()) yield [position++, p];
  for (const p of states.plannedSample(setup.random, setup.sample)) yield [position++, p];
}

/** Check this worker's states (positions worker, worker + workers, ...);
 * returns how many it checked. */
function checkMine(states: VolumeCrashStates, recover: VolumeRecoverFn): number {
  const flags = new Int32Array(setup.flags);
  const total = setup.wire.count + setup.random;
  let checked = 0;
  let last = Date.now();
  for (const [position, p] of positions(states)) {
    if (position % setup.workers !== setup.worker) continue;
    if (Atomics.load(flags, ABORT) !== 0 || (setup.stopAtFirst && position > Atomics.load(flags, FIRST_FAILING))) break;
    const failure = states.build(p, (st) => {
      const verdict = runRecover(recover, st);
      return verdict && { position, kind: st.kind, index: st.index, seed: st.seed, class: verdict.class, error: toWire(verdict.error), choice: choiceOf(states, st) };
    });
    checked++;
    if (failure) {
      send({ type: 'failure', failure });
      // Lower the first failing position to this one (no Atomics.min: compare and swap).
      for (let cur = Atomics.load(flags, FIRST_FAILING); position < cur; cur = Atomics.load(flags, FIRST_FAILING)) {
        if (Atomics.compareExchange(flags, FIRST_FAILING, cur, position) === cur) break;
      }
    }
    if (Date.now() - last >= 50 && checked * setup.workers < total) {
      last = Date.now();
      send({ type: 'progress', checked });
    }
  }
  return checked;
}

try {
  const mod = await import(pathToFileURL(setup.module.path).href) as Record<string, unknown>;
  const recover = mod[setup.module.recover];
  if (typeof recover !== 'function') throw new TypeError(`module '${setup.module.path}' must export a function ${setup.module.recover}`);
  const states = new VolumeCrashStates(setup.wire, { dir: setup.dir });
  let checked: number;
  try {
    checked = checkMine(states, recover as VolumeRecoverFn);
  } finally {
    states.close();  // its descriptors are the process's: closed before 'done' (the pool then ends the thread)
  }
  send({ type: 'done', checked });
} catch (e) {
  send({ type: 'error', error: toWire(e) });
}
