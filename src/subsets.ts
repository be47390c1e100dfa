// Subsets for crash-state enumeration: of n candidate units, every subset
// of each size, in lexicographic order, and how many there are.

/** Every ascending size-subset of [0, n), lexicographic. The array yielded
 * is reused: copy it to keep it. */
export function* combinations(n: number, size: number): Generator<readonly number[]> {
  if (size > n || size < 0) return;
  const c = Array.from({ length: size }, (_, j) => j);
  for (;;) {
    yield c;
    let j = size - 1;
    while (j >= 0 && c[j] === n - size + j) j--;
    if (j < 0) return;
    c[j]++;
    for (let m = j + 1; m < size; m++) c[m] = c[m - 1] + 1;
  }
}

/** The number of subsets of at most k of n elements. */
export function binomialSum(n: number, k: number): number {
  let total = 0;
  let c = 1;  // C(n, i)
  for (let i = 0; i <= Math.min(n, k); i++) {
    total += c;
    c = (c * (n - i)) / (i + 1);
  }
  return total;
}
