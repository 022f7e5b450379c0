// Typed calls to the server's video API (/api/videos): open a clip, prompt an object on a
// frame, run and follow the tracking job, read the tracked masks.

import { call } from "./api";
import type { Box, Point } from "./geometry";

export interface VideoInfo {
  id: string;
  name: string;
  width: number;
  height: number;
  frames: number;
  fps: number;
  frame_url: string; // with {index}
}

export interface ObjectMask {
  object_id: number;
  mask: { size: [number, number]; counts: string }; // compressed COCO RLE
  score: number;
  lost: boolean;
}

export interface PromptResult extends ObjectMask {
  frame_index: number;
}

export type TrackState = "idle" | "running" | "done" | "failed" | "cancelled";

export interface TrackStatus {
  state: TrackState;
  done: number; // frames whose masks can be read
  total: number;
  steps_done: number; // frames the tracker embedded: its walk back from the prompts comes first
  steps_total: number;
  objects: number[];
  error: string | null;
}

export interface MasksPage {
  frames: { frame_index: number; objects: ObjectMask[] }[];
  next: number;
  state: TrackState;
}

const json = { "content-type": "application/json" };

export async function openVideo(file: Blob, name: string): Promise<VideoInfo> {
  const type = file.type || "application/octet-stream";
  const url = `/api/videos?name=${encodeURIComponent(name)}`;
  return (await call(url, { method: "POST", body: file, headers: { "content-type": type } })).json();
}

export function frameUrl(video: VideoInfo, index: number): string {
  return video.frame_url.replace("{index}", String(index));
}

export async function prompt(
  video: VideoInfo,
  objectId: number,
  frameIndex: number,
  points: readonly Point[],
  box: Box | null,
): Promise<PromptResult> {
  const body = JSON.stringify({
    object_id: objectId,
    frame_index: frameIndex,
    points: points.map((p) => [p.x, p.y]),
    labels: points.map((p) => p.label),
    box,
  });
  return (await call(`/api/videos/${video.id}/prompts`, { method: "POST", body, headers: json })).json();
}

/** Remove an object's prompts on one frame, or the object (`frameIndex` null). */
export async function clearObject(video: VideoInfo, objectId: number, frameIndex: number | null): Promise<void> {
  const query = frameIndex === null ? "" : `?frame_index=${frameIndex}`;
  await call(`/api/videos/${video.id}/objects/${objectId}${query}`, { method: "DELETE" });
}

export async function startTracking(video: VideoInfo): Promise<TrackStatus> {
  return (await call(`/api/videos/${video.id}/track`, { method: "POST" })).json();
}

export async function cancelTracking(video: VideoInfo): Promise<TrackStatus> {
  return (await call(`/api/videos/${video.id}/track/cancel`, { method: "POST" })).json();
}

export async function trackStatus(video: VideoInfo): Promise<TrackStatus> {
  return (await call(`/api/videos/${video.id}/track`)).json();
}

export async function trackedMasks(video: VideoInfo, start: number): Promise<MasksPage> {
  return (await call(`/api/videos/${video.id}/masks?start=${start}`)).json();
}

export async function exportMasks(video: VideoInfo): Promise<Blob> {
  return (await call(`/api/videos/${video.id}/export`)).blob();
}
