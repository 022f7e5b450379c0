// The resize rule and prompt mapping of the Python path (segany.transforms.preprocess_shape,
// scale_coords and segany.modeling.prompt_encoder.labelled_points), in the same float64
// arithmetic, so the page feeds the decoder graph exactly what OnnxPredictor feeds it.

export interface Point {
  x: number;
  y: number;
  label: 0 | 1; // 1 foreground, 0 background
}

export type Box = [number, number, number, number]; // x0, y0, x1, y1 in image pixels

export const PADDING_LABEL = -1;
export const BOX_TOP_LEFT = 2;
export const BOX_BOTTOM_RIGHT = 3;

/** Size (h, w) after scaling the longest side to `longSide`: floor(x * scale + 0.5). */
export function preprocessShape(height: number, width: number, longSide: number): [number, number] {
  const scale = (longSide * 1.0) / Math.max(height, width);
  return [Math.floor(height * scale + 0.5), Math.floor(width * scale + 0.5)];
}

/** Points and box (original pixels) as the graph's point_coords / point_labels. */
export function promptTensors(
  points: readonly Point[],
  box: Box | null,
  height: number,
  width: number,
  imgSize: number,
): { coords: Float32Array; labels: Float32Array; count: number } {
  const [newH, newW] = preprocessShape(height, width, imgSize);
  const sx = newW / width;
  const sy = newH / height;
  const coords: number[] = [];
  const labels: number[] = [];
  for (const p of points) {
    coords.push(p.x * sx, p.y * sy);
    labels.push(p.label);
  }
  if (box === null) {
    coords.push(0, 0); // one padding point when there is no box, as the official export
    labels.push(PADDING_LABEL);
  } else {
    coords.push(box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy);
    labels.push(BOX_TOP_LEFT, BOX_BOTTOM_RIGHT);
  }
  return { coords: new Float32Array(coords), labels: new Float32Array(labels), count: labels.length };
}
