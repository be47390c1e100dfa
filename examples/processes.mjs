// Two processes, one file: the child stores, the parent's sync writes it back (README "Processes").
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { open } from 'udax';

const path = `/dev/shm/udax-processes-example-${process.pid}`;
const file = open(path, { create: true, size: 65536, media: 'shadow' });
const child = spawn(process.execPath, ['--input-type=module', '-e', `
  import { open } from 'udax';
  const mapping = open(${JSON.stringify(path)}).map();  // joins the parent's entry table
  mapping.bytes.set(Buffer.from('stored by the child'), 0);
  console.log('stored');
  process.stdin.on('end', () => process.exit()).resume();  // stays attached until told
`], { stdio: ['pipe', 'pipe', 'inherit'] });
await once(child.stdout, 'data');
file.sync();                                                      // harvests the child's page tables too
console.log(readFileSync(`${path}.media`, 'latin1').slice(0, 19)); // stored by the child
console.log(file.stats().dirtyEntries);                           // 0
child.stdin.end();
await once(child, 'exit');
file.close();                                                     // the last process out removes the shared table
