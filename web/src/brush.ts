// Brush and eraser: touch-ups painted over the decoder's mask. The edits are a layer of their
// own (painted in / erased / untouched per pixel), so they survive a later click that decodes
// the mask again, and they can make a mask with no click at all.

import type { Stage, Tool, XY } from "./stage";

export class Edits {
  readonly values: Int8Array; // row-major: 1 painted in, -1 erased, 0 untouched
  strokes = 0; // finished strokes
  touched = false; // anything painted yet

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.values = new Int8Array(width * height);
  }

  /** A filled disc of `radius` image pixels around (x, y). */
  dab(p: XY, radius: number, value: 1 | -1): void {
    this.touched = true;
    const r2 = radius * radius;
    const y0 = Math.max(0, Math.floor(p.y - radius));
    const y1 = Math.min(this.height - 1, Math.ceil(p.y + radius));
    const x0 = Math.max(0, Math.floor(p.x - radius));
    const x1 = Math.min(this.width - 1, Math.ceil(p.x + radius));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - p.x;
        const dy = y + 0.5 - p.y;
        if (dx * dx + dy * dy <= r2) this.values[y * this.width + x] = value;
      }
    }
  }

  /** Dabs along a segment, close enough to leave no gaps. */
  line(from: XY, to: XY, radius: number, value: 1 | -1): void {
    const steps = Math.max(1, Math.ceil(Math.hypot(to.x - from.x, to.y - from.y) / Math.max(0.5, radius / 2)));
    for (let i = 1; i <= steps; i++) {
      const t = i / steps;
      this.dab({ x: from.x + (to.x - from.x) * t, y: from.y + (to.y - from.y) * t }, radius, value);
    }
  }

  /** `mask` (or nothing) with the edits applied; its area. */
  apply(mask: Uint8Array | null): { mask: Uint8Array; area: number } {
    const out = new Uint8Array(this.values.length);
    let area = 0;
    for (let i = 0; i < out.length; i++) {
      const edit = this.values[i];
      const inside = edit === 1 || (edit === 0 && mask !== null && mask[i] === 1);
      if (inside) {
        out[i] = 1;
        area++;
      }
    }
    return { mask: out, area };
  }
}

export type BrushEvent = "start" | "paint" | "end" | "cursor";

/** The stage tool that paints (`value` 1) or erases (-1) with a round brush. */
export class BrushTool implements Tool {
  private last: XY | null = null;
  cursor: XY | null = null;

  constructor(
    private readonly stage: Stage,
    private readonly edits: () => Edits | null,
    private readonly radius: () => number,
    private readonly value: 1 | -1,
    private readonly changed: (event: BrushEvent) => void,
  ) {}

  down(p: XY, event: PointerEvent): void {
    const edits = this.edits();
    if (event.button !== 0 || !edits) return;
    this.stage.svg.setPointerCapture(event.pointerId);
    this.last = p;
    edits.dab(p, this.radius(), this.value);
    this.changed("start");
  }

  move(p: XY): void {
    this.cursor = p;
    const edits = this.edits();
    if (this.last && edits) {
      edits.line(this.last, p, this.radius(), this.value);
      this.last = p;
      this.changed("paint");
    } else {
      this.changed("cursor");
    }
  }

  up(): void {
    const edits = this.edits();
    if (!this.last || !edits) return;
    this.last = null;
    edits.strokes++;
    this.changed("end");
  }

  leave(): void {
    this.cursor = null;
    this.changed("cursor");
  }
}
