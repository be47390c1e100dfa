// Layer 9: the package as a user gets it. `npm pack` (prepack builds the
// prebuilt binary), then the tarball installed into an empty project with
// install scripts ignored and no network: it loads through require and
// import, the quickstart runs, `npx udax --version` works, and its typings
// compile with skipLibCheck off.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

const root = fileURLToPath(new URL('../', import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { version: string; devDependencies: Record<string, string> };
const work = mkdtempSync(join(tmpdir(), 'udax-package-'));
const consumer = join(work, 'consumer');
const installed = join(consumer, 'node_modules', 'udax');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A user's shell: none of the npm_* variables of the `npm test` running us. */
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));

function run(cmd: string, args: string[], cwd: string, timeout = 120_000): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.signal ?? r.status}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile()).map((d) => relative(dir, join(d.parentPath, d.name)));
}

let packStderr = '';
let installOutput = '';

beforeAll(() => {
  // Pack a copy of the checkout: prepack rebuilds the addon, and must not
  // do so under the other test files, which load build/Release/udax.node.
  const stage = join(work, 'stage');
  const skip = new Set(['node_modules', 'build', 'dist', 'prebuilds', '.git']);
  cpSync(root, stage, { recursive: true, filter: (src) => !skip.has(relative(root, src).split('/')[0]) && !src.endsWith('.tgz') });
  symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'));
  const packed = run('npm', ['pack', '--silent', '--pack-destination', work], stage);
  packStderr = packed.stderr;
  const tarball = join(work, packed.stdout.trim().split('\n').pop()!);
  mkdirSync(consumer);
  cpSync(join(root, 'examples', 'quickstart.mjs'), join(consumer, 'quickstart.mjs'));
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  const i = run('npm', ['install', '--ignore-scripts', '--offline', '--no-audit', '--no-fund', tarball, `@types/node@${pkg.devDependencies['@types/node']}`], consumer);
  installOutput = i.stdout + i.stderr;
}, 180_000);

describe('the packed tarball', () => {
  test('packs and installs without a warning', () => {
    expect(packStderr).not.toMatch(/warn/i);
    expect(installOutput).not.toMatch(/warn/i);
  });

  test('ships the prebuilt binary, the LICENSE and compiled code; no TypeScript sources, tests or build tree', () => {
    const shipped = files(installed);
    expect(shipped).toContain('LICENSE');
    const binaries = shipped.filter((f) => /^prebuilds\/linux-x64\/[^/]+\.node$/.test(f));
    expect(binaries).toHaveLength(1);
    // the README promises it loads with glibc 2.33 or newer
    const needs = [...readFileSync(join(installed, binaries[0]), 'latin1').matchAll(/GLIBC_2\.(\d+)/g)].map((m) => Number(m[1]));
    expect(Math.max(...needs)).toBeLessThanOrEqual(33);
    expect(readFileSync(join(installed, 'README.md'), 'utf8')).toContain('glibc 2.33 or newer');
    expect(shipped.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(shipped.filter((f) => /^(test|src|build|scripts)\//.test(f) || f.endsWith('.map'))).toEqual([]);
    // with scripts ignored nothing was compiled: the prebuilt binary is what loads
    expect(existsSync(join(installed, 'build'))).toBe(false);
  });

  test('every file the README links to is in the tarball', () => {
    const shipped = files(installed);
    const links = [...readFileSync(join(installed, 'README.md'), 'utf8').matchAll(/\]\(([^)#]+)(#[^)]*)?\)/g)].map((m) => m[1]);
    expect(links.length).toBeGreaterThan(0);
    for (const link of links.filter((l) => !/^[a-z]+:/.test(l))) {
      expect(shipped.some((f) => f === link || f.startsWith(link.endsWith('/') ? link : `${link}/`)), link).toBe(true);
    }
  });

  const program = `
    const file = udax.open(process.argv[1], { create: true, size: 65536 });
    const m = file.map();
    m.bytes[4096] = 1;
    const s = file.sync();
    file.close();
    console.log(JSON.stringify(s));`;

  test('require("udax") works, with no warning', () => {
    const path = `/dev/shm/udax-package-cjs-${process.pid}`;
    const r = spawnSync(process.execPath, ['-e', `const udax = require('udax');${program}`, path], { cwd: consumer, encoding: 'utf8' });
    rmSync(path, { force: true });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('{"entries":1,"bytes":4096}');
  });

  test('import("udax") works', () => {
    const path = `/dev/shm/udax-package-esm-${process.pid}`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as udax from 'udax';${program}`, path], { cwd: consumer, encoding: 'utf8' });
    rmSync(path, { force: true });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('{"entries":1,"bytes":4096}');
  });

  test('the quickstart runs', () => {
    const r = spawnSync(process.execPath, ['quickstart.mjs'], { cwd: consumer, encoding: 'utf8' });
    rmSync('/dev/shm/udax-quickstart', { force: true });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('{ entries: 1, bytes: 4096 }');
  });

  test('npx udax --version prints the version, and udax info runs', () => {
    expect(run('npx', ['--offline', 'udax', '--version'], consumer).stdout).toBe(`${pkg.version}\n`);
    expect(run('npx', ['--offline', 'udax', 'info'], consumer).stdout).toContain(`udax:               ${pkg.version}`);
  });

  test('typings compile in an empty project (skipLibCheck off, only @types/node) and keep @internal members out', () => {
    writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
      files: ['esm.mts', 'cjs.cts'],
    }));
    const use = `
      const file: DaxFile = open('/dev/shm/x', { create: true, size: 4096, media: 'shadow' });
      const m: Mapping = file.map();
      const s: SyncResult = file.sync();
      console.log(m.length, s.entries, file.stats().writeFaults, PAGE_SIZE);
      // @ts-expect-error internal: not in the typings
      file.fd;
      // @ts-expect-error internal: not in the typings
      m.slot;`;
    writeFileSync(join(consumer, 'esm.mts'), `import { open, PAGE_SIZE, type DaxFile, type Mapping, type SyncResult } from 'udax';${use}`);
    writeFileSync(join(consumer, 'cjs.cts'), `import udax = require('udax');\nconst { open, PAGE_SIZE } = udax;\ntype DaxFile = udax.DaxFile; type Mapping = udax.Mapping; type SyncResult = udax.SyncResult;${use}`);
    const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', consumer], { cwd: consumer, encoding: 'utf8' });
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
    const dts = files(join(installed, 'dist')).filter((f) => f.endsWith('.d.ts')).map((f) => readFileSync(join(installed, 'dist', f), 'utf8')).join('\n');
    expect(dts).not.toMatch(/@internal/);
  });
});
