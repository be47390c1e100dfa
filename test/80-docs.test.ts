// Layer 8: the README stays true to the code.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const root = fileURLToPath(new URL('../', import.meta.url));
const readme = readFileSync(`${root}README.md`, 'utf8');

describe('README', () => {
  test('opens with the install and test commands, then the main job', () => {
    const first = readme.match(/```sh\n([\s\S]*?)```/)![1].trim().split('\n').map((l) => l.split('#')[0].trim());
    expect(first).toEqual(['npm install', 'npm test', 'npx udax bench']);
    const ci = readFileSync(`${root}.ci/run`, 'utf8');
    expect(ci).toMatch(/npm ci/);
    expect(ci).toMatch(/npm test/);
  });

  test('the Node versions the README names are the ones .ci/run smoke-tests', () => {
    const ci = readFileSync(`${root}.ci/run`, 'utf8');
    const versions = ci.match(/^for version in ([\d. ]+); do$/m)![1].trim().split(' ');
    expect(versions.map((v) => v.split('.')[0])).toEqual(['22', '24']);
    const named = readme.match(/CI tests ([\d., and]+)\./)![1];
    for (const v of versions) expect(named).toContain(v.split('.').slice(0, 2).join('.'));
  });

  test('the usage example is examples/quickstart.mjs, and it runs as documented', () => {
    const example = readFileSync(`${root}examples/quickstart.mjs`, 'utf8');
    const block = readme.match(/## Usage\n\n```js\n([\s\S]*?)```/)![1];
    expect(example.split('\n').slice(1).join('\n')).toBe(block);
    const r = spawnSync(process.execPath, ['examples/quickstart.mjs'], { cwd: root, encoding: 'utf8', timeout: 20_000 });
    rmSync('/dev/shm/udax-quickstart', { force: true });
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    // each printed line is what the comment beside the call says
    const promised = [...block.matchAll(/console\.log\(.*?\);\s*\/\/ (?:[^{[]*: )?(.*)$/gm)].map((m) => m[1]);
    expect(lines.length).toBe(promised.length);
    lines.forEach((line, i) => expect(line.replace(/\s+/g, ' ')).toBe(promised[i].replace(/\s+/g, ' ')));
  });

  test('the processes example is examples/processes.mjs, and it runs as documented', () => {
    const example = readFileSync(`${root}examples/processes.mjs`, 'utf8');
    const block = readme.match(/## Processes\n[\s\S]*?```js\n([\s\S]*?)```/)![1];
    expect(example.split('\n').slice(1).join('\n')).toBe(block);
    const r = spawnSync(process.execPath, ['examples/processes.mjs'], { cwd: root, encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    const promised = [...block.matchAll(/^console\.log\(.*?\);\s*\/\/ (.*)$/gm)].map((m) => m[1]);
    expect(lines).toEqual(promised);
  });

  test('the volume example is examples/volume.mjs, and it runs as documented', () => {
    const example = readFileSync(`${root}examples/volume.mjs`, 'utf8');
    const block = readme.match(/## Volumes: [^\n]*\n[\s\S]*?```js\n([\s\S]*?)```/)![1];
    expect(example.split('\n').slice(1).join('\n')).toBe(block);
    const r = spawnSync(process.execPath, ['examples/volume.mjs'], { cwd: root, encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    const promised = [...block.matchAll(/console\.log\(.*?\);\s*\/\/ (.*)$/gm)].map((m) => m[1]);
    expect(lines.length).toBe(promised.length);
    lines.forEach((line, i) => expect(line.replace(/\s+/g, ' ')).toBe(promised[i].replace(/\s+/g, ' ')));
  });

  test('the SQLite crash test prints what the README shows', () => {
    const [, command, shown] = readme.match(/## An integration test: [^\n]*\n[\s\S]*?```sh\n\$ (node examples\/sqlite\/crash-test\.mjs[^\n]*)\n([\s\S]*?)```/)!;
    const r = spawnSync(process.execPath, command.split(' ').slice(1), { cwd: root, encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    // the same states and verdicts (the run is deterministic), but for its time
    const lines = (text: string) => text.trim().split('\n').map((l) => l.replace(/, [\d.]+ s\)$/, ', … s)'));
    expect(lines(r.stdout)).toEqual(lines(shown));
  });

  test('the udax crash session the README shows is what the command prints', () => {
    const block = readme.match(/### Crash points: `udax crash`\n[\s\S]*?```sh\n([\s\S]*?)```/)![1];
    const sessions = block.split(/^\$ /m).filter(Boolean);
    expect(sessions.length).toBe(2);
    for (const session of sessions) {
      const [command, ...output] = session.split('\n');
      const m = command.match(/^(?:(\w+)=(\S+) )?npx udax (.*)$/)!;
      const r = spawnSync(process.execPath, ['dist/cli/udax.js', ...m[3].split(' ')], {
        cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...(m[1] ? { [m[1]]: m[2] } : {}) },
      });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(output.join('\n'));
    }
  });

  test('the commands the README names exist in --help', () => {
    const r = spawnSync(process.execPath, ['dist/cli/udax.js', '--help'], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const command of ['bench', 'crash', 'info']) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+${command}\\s`, 'm'));
      expect(readme).toContain(`udax ${command}`);
    }
  });
});

describe('error codes', () => {
  test('the README lists exactly the ERR_UDAX_* codes udax defines', async () => {
    const { UDAX_ERROR_CODES } = await import('udax');
    const block = readme.slice(readme.indexOf('<!-- udax-codes:start -->'), readme.indexOf('<!-- udax-codes:end -->'));
    const listed = [...block.matchAll(/`(ERR_UDAX_\w+)`/g)].map((m) => m[1]);
    expect(listed.sort()).toEqual(Object.keys(UDAX_ERROR_CODES).sort());
    // and the code uses no ERR_UDAX_* code the table does not have
    const { readdirSync } = await import('node:fs');
    for (const name of readdirSync(`${root}src`)) {
      const source = readFileSync(`${root}src/${name}`, 'utf8');
      for (const [, code] of source.matchAll(/'(ERR_UDAX_\w+)'/g)) expect(Object.keys(UDAX_ERROR_CODES), `${code} in src/${name}`).toContain(code);
    }
  });
});

describe('layering', () => {
  const imports = (dir: string) => readdirSync(`${root}${dir}`).filter((n) => n.endsWith('.ts')).flatMap((name) =>
    [...readFileSync(`${root}${dir}/${name}`, 'utf8').matchAll(/^import .* from '([^']+)';$/gm)].map((m) => ({ file: `${dir}/${name}`, from: m[1] })));

  test('src/ imports only src/ (never bench/ or cli/)', () => {
    for (const { file, from } of imports('src')) expect(from.startsWith('./') || from.startsWith('node:') || from === 'node-gyp-build', `${file}: ${from}`).toBe(true);
  });

  test('bench/ and cli/ use udax only through its public API and udax/testing', () => {
    for (const { file, from } of [...imports('bench'), ...imports('cli')]) {
      if (from.startsWith('../src/')) expect(['../src/index.js', '../src/testing.js'], `${file}: ${from}`).toContain(from);
    }
  });
});
