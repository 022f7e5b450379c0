// IEEE half floats (the compact embedding transfer) to float32.

const TABLE = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    let value: number;
    if (exponent === 0) value = fraction * 2 ** -24;
    else if (exponent === 31) value = fraction ? NaN : Infinity;
    else value = (1 + fraction / 1024) * 2 ** (exponent - 15);
    table[h] = sign * value;
  }
  return table;
})();

/** Little-endian float16 bytes -> Float32Array. */
export function float16ToFloat32(buffer: ArrayBuffer): Float32Array {
  const halves = new Uint16Array(buffer);
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = TABLE[halves[i]];
  return out;
}

/** An embedding answer (raw little-endian `dtype` values) as float32, checked to hold
 *  `shape`'s number of values. */
export function embeddingValues(buffer: ArrayBuffer, dtype: "float16" | "float32", shape: readonly number[]): Float32Array {
  const values = dtype === "float16" ? float16ToFloat32(buffer) : new Float32Array(buffer);
  const expected = shape.reduce((a, b) => a * b, 1);
  if (values.length !== expected) throw new Error(`embedding has ${values.length} values, expected ${expected}`);
  return values;
}
