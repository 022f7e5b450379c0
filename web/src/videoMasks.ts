// The masks the video page shows: per frame, each object's mask from its prompt there (the
// server's answer to a click) or else from tracking; decoded from RLE once, on first show.

import { decodeCompressed } from "./rle";
import type { ObjectMask } from "./videoApi";

export interface ShownMask {
  objectId: number;
  mask: Uint8Array; // row-major, 1 inside
  lost: boolean;
  prompted: boolean;
}

export class MaskBook {
  private readonly prompted = new Map<string, ObjectMask>(); // `${frame}:${object}`
  private tracked = new Map<number, ObjectMask[]>();
  private readonly decoded = new WeakMap<ObjectMask, Uint8Array>();

  constructor(
    private readonly height: number,
    private readonly width: number,
  ) {}

  setPrompted(frame: number, mask: ObjectMask): void {
    this.prompted.set(`${frame}:${mask.object_id}`, mask);
  }

  /** Drop an object's prompted masks: on one frame, or on every frame (`frame` null). */
  dropPrompted(objectId: number, frame: number | null): void {
    for (const key of [...this.prompted.keys()]) {
      const [f, o] = key.split(":").map(Number);
      if (o === objectId && (frame === null || f === frame)) this.prompted.delete(key);
    }
  }

  setTracked(frame: number, masks: ObjectMask[]): void {
    this.tracked.set(frame, masks);
  }

  clearTracked(): void {
    this.tracked = new Map();
  }

  get trackedFrames(): number {
    return this.tracked.size;
  }

  /** The masks of frame `frame`, by object id. */
  on(frame: number): ShownMask[] {
    const shown = new Map<number, ShownMask>();
    for (const m of this.tracked.get(frame) ?? []) shown.set(m.object_id, this.shown(m, false));
    for (const [key, m] of this.prompted) {
      if (Number(key.split(":")[0]) === frame) shown.set(m.object_id, this.shown(m, true));
    }
    return [...shown.values()].sort((a, b) => a.objectId - b.objectId);
  }

  private shown(m: ObjectMask, prompted: boolean): ShownMask {
    let mask = this.decoded.get(m);
    if (!mask) {
      mask = decodeCompressed(m.mask.counts, this.height, this.width);
      this.decoded.set(m, mask);
    }
    return { objectId: m.object_id, mask, lost: m.lost, prompted };
  }
}
