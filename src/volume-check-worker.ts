// A worker of the state pool (src/volume-check-pool.ts): imports the user's
// module once (a call names the export that is its recovery), and for each
// call copies the snapshot's base image, rebuilds the snapshot from its
// parts and checks the batches of states it is sent. Requests are handled
// one at a time, in order, each with one reply.
import { cpSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { toWire } from './crash-points-pool.js';
import { VolumeCrashStates } from './volume-crash.js';
import { choiceOf, runRecover, type VolumeRecoverFn } from './volume-check.js';
import { ABORT, decodeBatch, FIRST_FAILING, type StateWorkerReply, type StateWorkerRequest, type WireFailure } from './volume-check-pool.js';

const { path } = workerData as { path: string };
const port = parentPort!;
const reply = (r: StateWorkerReply) => port.postMessage(r);

const loaded: Promise<Record<string, unknown>> = import(pathToFileURL(path).href);
loaded.catch(() => {});  // reported to the first call

interface Call { states: VolumeCrashStates; recover: VolumeRecoverFn; flags: Int32Array; stopAtFirst: boolean }
let call: Call | undefined;

/** Close this call's states: its descriptors are the process's. */
function endCall(): void {
  const c = call;
  call = undefined;
  c?.states.close();
}

async function begin(m: Extract<StateWorkerRequest, { type: 'call' }>): Promise<void> {
  endCall();
  const recover = (await loaded)[m.recover];
  if (typeof recover !== 'function') throw new TypeError(`module '${path}' must export a function ${m.recover}`);
  cpSync(m.base, m.dir, { recursive: true });
  cpSync(`${m.base}.stash`, `${m.dir}.stash`, { recursive: true });
  call = { states: new VolumeCrashStates(m.wire, { dir: m.dir }), recover: recover as VolumeRecoverFn, flags: new Int32Array(m.flags), stopAtFirst: m.stopAtFirst };
}

/** Check a batch of consecutive positions from first; skip those after the
 * first failure (stop-at-first) and all once a worker failed. */
function checkBatch(c: Call, first: number, encoded: Float64Array): StateWorkerReply {
  const t0 = performance.now();
  const failures: WireFailure[] = [];
  let checked = 0;
  const batch = decodeBatch(encoded);
  for (let i = 0; i < batch.length; i++) {
    const position = first + i;
    if (Atomics.load(c.flags, ABORT) !== 0 || (c.stopAtFirst && position > Atomics.load(c.flags, FIRST_FAILING))) break;
    const failure = c.states.build(batch[i], (st): WireFailure | undefined => {
      const verdict = runRecover(c.recover, st);
      return verdict && { position, kind: st.kind, index: st.index, seed: st.seed, class: verdict.class, error: toWire(verdict.error), choice: choiceOf(c.states, st) };
    });
    checked++;
    if (!failure) continue;
    failures.push(failure);
    // Lower the first failing position to this one (no Atomics.min: compare and swap).
    for (let cur = Atomics.load(c.flags, FIRST_FAILING); c.stopAtFirst && position < cur; cur = Atomics.load(c.flags, FIRST_FAILING)) {
      if (Atomics.compareExchange(c.flags, FIRST_FAILING, cur, position) === cur) break;
    }
  }
  return { type: 'checked', checked, ms: performance.now() - t0, failures };
}

async function handle(m: StateWorkerRequest): Promise<void> {
  try {
    if (m.type === 'call') {
      await begin(m);
      reply({ type: 'ready' });
    } else if (m.type === 'batch') {
      if (!call) throw new Error('a batch without a call');
      reply(checkBatch(call, m.first, m.states));
    } else {
      endCall();
      reply({ type: 'ended' });
    }
  } catch (e) {
    try {
      endCall();
    } finally {
      reply({ type: 'error', error: toWire(e) });
    }
  }
}

let queue = Promise.resolve();
port.on('message', (m: StateWorkerRequest) => {
  queue = queue.then(() => handle(m));
});
