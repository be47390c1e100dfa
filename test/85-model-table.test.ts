// Layer 8: the model's step table (model/README.md) names functions that
// exist, in the files it names: the model stays tied to the code.
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';

const root = new URL('../', import.meta.url);
const readme = readFileSync(new URL('model/README.md', root), 'utf8');

test('every function the model step table names is defined in the file named before it', () => {
  const table = readme.slice(readme.indexOf('| model step (dax_entry.pml) |'), readme.indexOf('## Abstractions'));
  const rows = table.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| model step') && !l.startsWith('|---'));
  expect(rows.length).toBeGreaterThan(15);
  let checked = 0;
  for (const row of rows) {
    const cell = row.split(' | ').slice(1).join(' | ');
    let file: string | undefined;
    for (const [, token] of cell.matchAll(/`([^`]+)`/g)) {
      if (/^(native|src)\/[\w.]+$/.test(token)) {
        file = token;
        continue;
      }
      const fn = token.match(/^(\w+)\(\)$/)?.[1];
      if (!fn || !file) continue;
      const source = readFileSync(new URL(file, root), 'utf8');
      // a C++ definition "name(" at the start of a declaration, or a TS function or method
      const defined = new RegExp(`(^|\\s|\\*)${fn}\\s*\\(`, 'm').test(source) &&
        new RegExp(`^(static |export |async )*(\\w[\\w:<>*& ]*\\s)?\\*?${fn}\\s*\\(|^\\s+(static |async |#)?${fn}(<[^>]*>)?\\(|function ${fn}\\b`, 'm').test(source);
      expect(defined, `${fn}() in ${file} (row: ${row})`).toBe(true);
      checked++;
    }
  }
  expect(checked).toBeGreaterThan(25);
});
