// A one-line progress bar on stderr: only on a terminal, and only once a run
// has taken more than a second (short runs stay quiet).

export class Progress {
  readonly #total: number;
  readonly #stream: NodeJS.WriteStream;
  readonly #started = Date.now();
  readonly #enabled: boolean;
  #done = 0;
  #shown = false;

  constructor(total: number, stream: NodeJS.WriteStream = process.stderr) {
    this.#total = total;
    this.#stream = stream;
    this.#enabled = stream.isTTY === true && process.env.CI === undefined;
  }

  /** Say what runs next (call before it starts). */
  step(label: string): void {
    this.#render(label);
  }

  /** One unit finished. */
  tick(): void {
    this.#done++;
  }

  #render(label: string): void {
    if (!this.#enabled || Date.now() - this.#started < 1000) return;
    const width = 30;
    const filled = Math.round((this.#done / this.#total) * width);
    const secs = Math.round((Date.now() - this.#started) / 1000);
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.#done}/${this.#total} ${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}  ${label}`;
    const columns = this.#stream.columns || 80;
    this.#stream.write(`\r${line.slice(0, columns - 1).padEnd(columns - 1)}`);
    this.#shown = true;
  }

  /** Erase the bar (before the results are printed). */
  finish(): void {
    if (this.#shown) this.#stream.write(`\r${' '.repeat((this.#stream.columns || 80) - 1)}\r`);
    this.#shown = false;
  }
}
