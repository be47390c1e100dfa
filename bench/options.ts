// Command-line options of the stand-alone bench scripts (node dist/bench/X.js
// --name value ...); `udax bench` parses its own (cli/).
const argv = process.argv.slice(2);

/** The value after `--name` on the command line, else fallback. */
export function option(name: string, fallback: string): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
}
