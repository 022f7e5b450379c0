// The annotation API (`segany annotate`): the queue, the leased image, and the writes. Every
// write names the annotator; an accepted mask carries a key made once, so a retry after a lost
// answer stores it once.

import { ApiError, call } from "./api";

export interface StoredMask {
  id: number;
  gear: number;
  status: string;
  segmentation: { size: [number, number]; counts: string };
  bbox: number[];
  area: number;
  annotator: string | null;
  predicted_iou: number | null;
  corrects_id: number | null;
}

export interface Task {
  image_id: number;
  name: string;
  width: number;
  height: number;
  gear: number;
  split: string;
  expires_at: string;
  image_url: string;
  embedding_url: string;
  proposals: StoredMask[];
  rejected: StoredMask[];
  accepted: StoredMask[];
}

export interface ProjectInfo {
  project: string;
  model: string;
  model_version_id: number;
  images: number;
  remaining: number;
  lease_seconds: number;
}

export interface AcceptBody {
  annotator: string;
  segmentation: { size: [number, number]; counts: number[] };
  clicks: number;
  seconds: number;
  client_key: string;
  corrects_id?: number;
}

export type Decision = "reject" | "restore" | "undo";

async function post(url: string, body: object): Promise<Response> {
  return call(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
}

const image = (id: number) => `/api/annotate/images/${id}`;

export async function project(): Promise<ProjectInfo> {
  return (await call("/api/annotate/project")).json();
}

export async function next(annotator: string): Promise<{ task: Task | null; remaining: number }> {
  return (await post("/api/annotate/next", { annotator })).json();
}

export async function embedding(task: Task, dtype: "float16" | "float32"): Promise<ArrayBuffer> {
  return (await call(`${task.embedding_url}?dtype=${dtype}`)).arrayBuffer();
}

const RETRY_MS = [500, 1000, 2000, 4000, 8000];

/** Accept a mask; retried (same key) while the server cannot be reached or is busy. */
export async function accept(imageId: number, body: AcceptBody): Promise<StoredMask> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await (await post(`${image(imageId)}/accept`, body)).json();
    } catch (error) {
      const transient = error instanceof ApiError && (error.status === 0 || error.status >= 500);
      if (!transient || attempt >= RETRY_MS.length) throw error;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS[attempt]));
    }
  }
}

export async function decide(imageId: number, maskId: number, decision: Decision, annotator: string): Promise<void> {
  await post(`${image(imageId)}/masks/${maskId}/${decision}`, { annotator });
}

export async function finish(imageId: number, annotator: string, seconds: number): Promise<{ remaining: number }> {
  return (await post(`${image(imageId)}/finish`, { annotator, seconds })).json();
}

export async function renew(imageId: number, annotator: string): Promise<void> {
  await post(`${image(imageId)}/renew`, { annotator });
}

export async function release(imageId: number, annotator: string): Promise<void> {
  await post(`${image(imageId)}/release`, { annotator });
}

/** A random key (RFC 4122 version 4 layout); crypto.randomUUID needs a secure context, which
 *  a server on the local network is not. */
export function newKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
