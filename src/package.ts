// Where udax is installed and which version it is: the package root is one
// level up from src/, two from dist/src/.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const packageRoot: string = fileURLToPath(new URL(existsSync(new URL('../package.json', import.meta.url)) ? '../' : '../../', import.meta.url));

/** From package.json, so `udax --version` and `udax info` cannot drift from it. */
export const version: string = (JSON.parse(readFileSync(`${packageRoot}package.json`, 'utf8')) as { version: string }).version;
