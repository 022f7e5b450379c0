// The decoder graph (official SamOnnxModel interface) in onnxruntime-web's WebAssembly
// backend, served by our own server: no CDN. Multithreaded where the page is cross-origin
// isolated (the server sends COOP/COEP), single-threaded otherwise.

import type { InferenceSession, Tensor } from "onnxruntime-web";
import wasmUrl from "onnxruntime-web/ort-wasm-simd-threaded.wasm?url";
import { type Box, type Point, promptTensors } from "./geometry";

export interface ModelInfo {
  name: string;
  img_size: number;
  embedding_shape: number[];
  low_res_size: number;
  mask_threshold: number;
  encoder_id: string;
  decoder_url: string;
  decoder_bytes: number;
  text_detector?: string | null; // the server's zero-shot detector for text prompts, if any
}

export interface DecoderInput {
  embedding: Float32Array;
  height: number;
  width: number;
  points: readonly Point[];
  box: Box | null;
  maskInput: Float32Array | null; // previous low-res logits (lowRes x lowRes), or none
}

export interface DecoderOutput {
  masks: Float32Array; // (4, H, W) logits at the image size
  scores: Float32Array; // (4,) predicted IoU
  lowRes: Float32Array; // (4, lowRes, lowRes) logits
  count: number; // 4
  ms: number; // time inside session.run
}

type Ort = typeof import("onnxruntime-web");

/** Decoder threads: `?threads=N`, else up to 4; one where the page is not cross-origin
 *  isolated (no shared memory for WebAssembly threads there). */
export function threadCount(params: URLSearchParams): number {
  const asked = Number(params.get("threads"));
  if (Number.isInteger(asked) && asked > 0) return crossOriginIsolated ? asked : 1;
  return crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}

export class Decoder {
  private constructor(
    private readonly ort: Ort,
    private readonly session: InferenceSession,
    readonly model: ModelInfo,
    readonly threads: number,
  ) {}

  static async create(model: ModelInfo, threads: number): Promise<Decoder> {
    // A chunk of its own: its worker threads load this module, not the page's.
    const ort = (await import("onnxruntime-web/wasm")) as unknown as Ort;
    ort.env.wasm.wasmPaths = { wasm: new URL(wasmUrl, location.href).href };
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.proxy = false;
    const response = await fetch(model.decoder_url);
    if (!response.ok) throw new Error(`decoder graph: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
    return new Decoder(ort, session, model, threads);
  }

  async run(input: DecoderInput): Promise<DecoderOutput> {
    const { ort, model } = this;
    const shape = model.embedding_shape;
    const lowRes = model.low_res_size;
    const prompt = promptTensors(input.points, input.box, input.height, input.width, model.img_size);
    const feeds: Record<string, Tensor> = {
      image_embeddings: new ort.Tensor("float32", input.embedding, shape),
      point_coords: new ort.Tensor("float32", prompt.coords, [1, prompt.count, 2]),
      point_labels: new ort.Tensor("float32", prompt.labels, [1, prompt.count]),
      mask_input: new ort.Tensor(
        "float32",
        input.maskInput ?? new Float32Array(lowRes * lowRes),
        [1, 1, lowRes, lowRes],
      ),
      has_mask_input: new ort.Tensor("float32", new Float32Array([input.maskInput ? 1 : 0]), [1]),
      orig_im_size: new ort.Tensor("float32", new Float32Array([input.height, input.width]), [2]),
    };
    const start = performance.now();
    const out = await this.session.run(feeds);
    const ms = performance.now() - start;
    const masks = out.masks.data as Float32Array;
    return {
      masks,
      scores: out.iou_predictions.data as Float32Array,
      lowRes: out.low_res_masks.data as Float32Array,
      count: out.iou_predictions.dims[1],
      ms,
    };
  }
}
