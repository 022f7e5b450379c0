// The prompts of one object on one image and the masks they give: each click or box is
// decoded in the browser with the previous step's chosen logits fed back (refinement), as
// segany.InteractiveSession does. Shared by the explore page (main.ts) and the annotation
// page (annotate.ts).

import type { Decoder, DecoderOutput, EarlyFeatures } from "./decoder";
import type { Box, Point } from "./geometry";

export interface Candidate {
  mask: Uint8Array; // row-major, 1 inside
  score: number; // predicted IoU
  lowRes: Float32Array; // fed back as mask_input on the next step
  area: number;
}

export interface Step {
  points: Point[];
  box: Box | null;
  candidates: Candidate[]; // 3 for a single click, else 1
  chosen: number;
}

export type Prompts = { points: Point[]; box: Box | null };
export type RunKind = "click" | "hover";

/** An image as the decoder needs it. */
export interface Picture {
  embedding: Float32Array;
  early?: EarlyFeatures | null; // HQ-SAM models: the early encoder features
  width: number;
  height: number;
}

// One decoder run at a time on the page (a session runs one call at once); clicks queue
// behind at most one hover run.
let queue: Promise<unknown> = Promise.resolve();
export function enqueue<T>(job: () => Promise<T>): Promise<T> {
  const result = queue.then(job, job);
  queue = result.catch(() => undefined);
  return result;
}

export class Prompter {
  history: Step[] = [];
  private generation = 0; // bumped by reset: clicks made before it are not decoded after it

  constructor(
    private readonly decoder: Decoder,
    readonly picture: Picture,
    private readonly onRun: (ms: number, kind: RunKind) => void = () => undefined,
  ) {}

  current(): Step | null {
    return this.history.length ? this.history[this.history.length - 1] : null;
  }

  candidate(): Candidate | null {
    const step = this.current();
    return step ? step.candidates[step.chosen] : null;
  }

  private candidateOf(out: DecoderOutput, index: number): Candidate {
    const { width, height } = this.picture;
    const { low_res_size: side, mask_threshold: threshold } = this.decoder.model;
    const pixels = width * height;
    const logits = out.masks.subarray(index * pixels, (index + 1) * pixels);
    const mask = new Uint8Array(pixels);
    let area = 0;
    for (let i = 0; i < pixels; i++) {
      if (logits[i] > threshold) {
        mask[i] = 1;
        area++;
      }
    }
    const lr = side * side;
    return { mask, score: out.scores[index], lowRes: out.lowRes.slice(index * lr, (index + 1) * lr), area };
  }

  /** Decode prompts with the current step's chosen logits fed back. A single click (no box)
   *  gets 3 candidates, else one mask; the best-scored one is chosen. */
  async decode(points: Point[], box: Box | null, kind: RunKind): Promise<Step> {
    const { embedding, early, height, width } = this.picture;
    const previous = this.candidate();
    const out = await this.decoder.run({
      embedding,
      early,
      height,
      width,
      points,
      box,
      maskInput: previous ? previous.lowRes : null,
    });
    const multimask = points.length + (box ? 2 : 0) <= 1;
    const candidates = (multimask ? [1, 2, 3] : [0]).map((i) => this.candidateOf(out, i));
    let chosen = 0;
    candidates.forEach((c, i) => {
      if (c.score > candidates[chosen].score) chosen = i;
    });
    this.onRun(out.ms, kind);
    return { points, box, candidates, chosen };
  }

  /** Add to the current prompts; `update` runs when the decoder is free, so quick clicks
   *  each see the ones before them. */
  add(update: (previous: Prompts) => Prompts): Promise<void> {
    const generation = this.generation;
    return enqueue(async () => {
      if (generation !== this.generation) return;
      const step = this.current();
      const next = update({ points: step?.points ?? [], box: step?.box ?? null });
      const result = await this.decode(next.points, next.box, "click");
      if (generation === this.generation) this.history.push(result);
    });
  }

  undo(): void {
    this.history.pop();
  }

  reset(): void {
    this.history = [];
    this.generation++;
  }

  choose(index: number): boolean {
    const step = this.current();
    if (!step || index >= step.candidates.length) return false;
    step.chosen = index;
    return true;
  }
}
