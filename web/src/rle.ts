// COCO run-length encoding. Masks on the page are row-major Uint8Array (1 inside); COCO RLE
// runs go down the columns (column-major), starting with a run of zeros.

/** Compressed COCO RLE (pycocotools' string form) -> row-major mask. */
export function decodeCompressed(counts: string, height: number, width: number): Uint8Array {
  const runs: number[] = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && c & 0x10) x -= 2 ** (5 * k); // sign extension
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  return decodeRuns(runs, height, width);
}

/** Uncompressed runs (column-major) -> row-major mask. */
export function decodeRuns(runs: readonly number[], height: number, width: number): Uint8Array {
  const mask = new Uint8Array(height * width);
  let index = 0;
  let value = 0;
  const total = height * width;
  for (const run of runs) {
    const end = Math.min(index + run, total);
    if (value) {
      for (let i = index; i < end; i++) {
        const x = Math.floor(i / height);
        mask[(i - x * height) * width + x] = 1;
      }
    }
    index = end;
    value ^= 1;
  }
  return mask;
}

/** Row-major mask -> uncompressed COCO RLE runs (column-major, zeros first). */
export function encodeRuns(mask: Uint8Array, height: number, width: number): number[] {
  const runs: number[] = [];
  let current = 0;
  let length = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== current) {
        runs.push(length);
        current = v;
        length = 0;
      }
      length++;
    }
  }
  runs.push(length);
  return runs;
}
