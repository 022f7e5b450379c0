// Typed calls to the segany server. Every failure becomes an ApiError with the server's
// one-sentence message (its JSON "detail"), which the page shows.

import type { ModelInfo } from "./decoder";

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface ImageInfo {
  id: string;
  width: number;
  height: number;
  cached: boolean;
  image_url: string;
  embedding: { url: string; shape: number[]; dtypes: string[]; input_size: number[]; img_size: number };
}

export interface Sample {
  name: string;
  width: number;
  height: number;
  url: string;
}

export interface MaskRecord {
  segmentation: { size: [number, number]; counts: string };
  area: number;
  bbox: number[];
  predicted_iou: number;
  stability_score: number;
}

export type ExportFormat = "cutout" | "mask" | "coco";

export async function call(url: string, init?: RequestInit): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError("cannot reach the segany server (is it still running?)", 0);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (typeof body?.detail === "string") message = body.detail;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(message, response.status);
  }
  return response;
}

export async function getModel(): Promise<ModelInfo> {
  return (await call("/api/model")).json();
}

export async function listSamples(): Promise<Sample[]> {
  return (await (await call("/api/samples")).json()).samples;
}

export async function fetchBlob(url: string): Promise<Blob> {
  return (await call(url)).blob();
}

export async function upload(file: Blob): Promise<ImageInfo> {
  const type = file.type || "application/octet-stream";
  return (await call("/api/images", { method: "POST", body: file, headers: { "content-type": type } })).json();
}

export async function fetchEmbedding(info: ImageInfo, dtype: "float16" | "float32"): Promise<ArrayBuffer> {
  return (await call(`${info.embedding.url}?dtype=${dtype}`)).arrayBuffer();
}

export async function segmentEverything(id: string): Promise<{ masks: MaskRecord[]; seconds: number }> {
  return (await call(`/api/images/${id}/everything`, { method: "POST" })).json();
}

export interface TextMaskRecord {
  segmentation: { size: [number, number]; counts: string };
  area: number;
  predicted_iou: number;
  phrase: string;
  detector_score: number | null;
}

export async function segmentText(
  id: string,
  text: string,
): Promise<{ masks: TextMaskRecord[]; phrases: string[]; message: string | null }> {
  const response = await call(`/api/images/${id}/text`, {
    method: "POST",
    body: JSON.stringify({ text }),
    headers: { "content-type": "application/json" },
  });
  return response.json();
}

export async function exportMasks(
  id: string,
  format: ExportFormat,
  masks: { size: [number, number]; counts: number[] }[],
  scores: number[],
  fileName: string,
): Promise<Blob> {
  const body = JSON.stringify({ format, masks, scores, file_name: fileName });
  const response = await call(`/api/images/${id}/export`, {
    method: "POST",
    body,
    headers: { "content-type": "application/json" },
  });
  return response.blob();
}
