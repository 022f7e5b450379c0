// The video page: open a short clip (the server decodes it into frames), prompt objects on any
// frame (each click answered with that frame's mask by the server), track them through the
// clip in a background job whose masks arrive as it goes, play the clip with the masks over
// it, and download them as SA-V-like JSON.

import "./style.css";
import * as api from "./api";
import { idle, track } from "./busy";
import { nthColour } from "./colours";
import { baseName, saveBlob } from "./files";
import type { Box, Point } from "./geometry";
import { $, messageState, onFileOpened, run, showError, showMessage } from "./page";
import { enqueue } from "./prompting";
import { encodeRuns } from "./rle";
import { type Colour, type Layer, PromptGestures, Stage, type XY } from "./stage";
import * as videoApi from "./videoApi";
import { MaskBook } from "./videoMasks";
import { FramePlayer } from "./videoPlayer";

// --------------------------------------------------------------------------- state

interface VideoObject {
  id: number;
  colour: Colour;
}
type FramePrompts = { points: Point[]; box: Box | null };

const POLL_MS = 250;
const CURRENT_OUTLINE: Colour = [255, 255, 255];

let video: videoApi.VideoInfo | null = null;
let player: FramePlayer | null = null;
let book: MaskBook | null = null;
let objects: VideoObject[] = [];
let current: number | null = null;
const prompts = new Map<string, FramePrompts>(); // `${frame}:${object}`
let status: videoApi.TrackStatus | null = null;
let trackRun = 0; // bumped whenever tracked masks become stale: a follow loop then stops

const key = (frame: number, objectId: number) => `${frame}:${objectId}`;
const frame = () => player?.index ?? 0;

// --------------------------------------------------------------------------- elements

const stage = Stage.ofPage();
stage.onLayout = () => renderPrompts();
const slider = $<HTMLInputElement>("slider");
const playButton = $<HTMLButtonElement>("play");
const progress = $<HTMLProgressElement>("progress");

// --------------------------------------------------------------------------- rendering

function colourOf(objectId: number): Colour {
  return objects.find((o) => o.id === objectId)?.colour ?? nthColour(objectId - 1);
}

function render(): void {
  renderOverlay();
  renderPrompts();
  renderObjects();
  renderTicks();
  if (video) {
    slider.value = String(frame());
    $<HTMLSpanElement>("frame-label").textContent = `frame ${frame() + 1} / ${video.frames}`;
  }
}

function renderOverlay(): void {
  if (!book) return;
  const layers: Layer[] = book.on(frame()).map((m) => ({
    mask: m.mask,
    colour: colourOf(m.objectId),
    alpha: m.lost ? 60 : 140,
    outline: m.objectId === current ? CURRENT_OUTLINE : undefined,
  }));
  stage.paint(layers);
}

function renderPrompts(drag: Box | null = null): void {
  const mine = current === null ? undefined : prompts.get(key(frame(), current));
  stage.drawPrompts(mine?.points ?? [], drag ?? mine?.box ?? null, drag !== null);
}

/** Ticks on the slider at the frames that carry prompts. */
function renderTicks(): void {
  const frames = [...new Set([...prompts.keys()].map((k) => Number(k.split(":")[0])))].sort((a, b) => a - b);
  $<HTMLDataListElement>("prompted").replaceChildren(
    ...frames.map((f) => Object.assign(document.createElement("option"), { value: String(f) })),
  );
}

function renderObjects(): void {
  const list = $<HTMLUListElement>("objects");
  list.replaceChildren();
  for (const o of objects) {
    const item = document.createElement("li");
    item.className = o.id === current ? "current" : "";
    item.dataset.object = String(o.id);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${o.colour.join(",")})`;
    const frames = [...prompts.keys()].filter((k) => k.endsWith(`:${o.id}`)).length;
    const label = document.createElement("span");
    label.textContent = `Object ${o.id}` + (frames ? ` · prompted on ${frames} frame${frames > 1 ? "s" : ""}` : "");
    const remove = document.createElement("button");
    remove.className = "small";
    remove.textContent = "×";
    remove.title = "remove this object";
    remove.addEventListener("click", (event) => {
      event.stopPropagation();
      run(removeObject(o.id));
    });
    item.append(swatch, label, remove);
    item.addEventListener("click", () => select(o.id));
    list.appendChild(item);
  }
}

function showStatus(s: videoApi.TrackStatus | null): void {
  status = s;
  const running = s?.state === "running";
  $<HTMLButtonElement>("cancel").hidden = !running;
  $<HTMLButtonElement>("track").disabled = running;
  progress.value = s && s.steps_total ? s.steps_done / s.steps_total : 0;
  const info = $<HTMLParagraphElement>("track-info");
  if (!s || s.state === "idle") info.textContent = "Prompt at least one object, then track it through the clip.";
  else if (running && !s.done) info.textContent = `Tracking ${s.objects.length} object(s): walking back from the prompts…`;
  else if (running) info.textContent = `Tracking ${s.objects.length} object(s): ${s.done} / ${s.total} frames…`;
  else if (s.state === "done") info.textContent = `Tracked ${s.objects.length} object(s) through ${s.done} frames.`;
  else if (s.state === "cancelled") info.textContent = `Cancelled after ${s.done} of ${s.total} frames.`;
  else info.textContent = s.error ?? "tracking failed";
}

// --------------------------------------------------------------------------- video

async function openVideo(file: Blob, name: string): Promise<void> {
  player?.pause();
  showMessage(`Uploading and decoding ${name}…`);
  const info = await videoApi.openVideo(file, name);
  video = info;
  book = new MaskBook(info.height, info.width);
  prompts.clear();
  objects = [];
  current = null;
  trackRun++;
  showStatus(null);
  addObject();
  player = new FramePlayer(
    info,
    (_, picture) => {
      stage.show(picture, info.width, info.height);
      render();
    },
    (playing) => (playButton.textContent = playing ? "Pause" : "Play"),
  );
  slider.max = String(info.frames - 1);
  $<HTMLDivElement>("player").hidden = false;
  await player.show(0);
  void player.preload();
  $<HTMLSpanElement>("video-info").textContent =
    `${info.name}: ${info.width}×${info.height}, ${info.frames} frames at ${info.fps.toFixed(1)} fps`;
  showMessage(`${info.name} is open. Click the object to follow, on any frame.`);
}

// --------------------------------------------------------------------------- objects

function addObject(): void {
  const id = objects.reduce((m, o) => Math.max(m, o.id), 0) + 1;
  objects.push({ id, colour: nthColour(id - 1) });
  current = id;
  render();
}

function select(objectId: number): void {
  current = objectId;
  render();
}

/** Masks tracked before a prompt changed no longer hold (the server dropped them too). */
function trackingStale(): void {
  trackRun++;
  book?.clearTracked();
  showStatus(null);
}

async function removeObject(objectId: number): Promise<void> {
  const v = video;
  if (!v) return;
  const prompted = [...prompts.keys()].some((k) => k.endsWith(`:${objectId}`));
  if (prompted) await enqueue(() => videoApi.clearObject(v, objectId, null));
  if (video !== v) return;
  for (const k of [...prompts.keys()]) if (k.endsWith(`:${objectId}`)) prompts.delete(k);
  book?.dropPrompted(objectId, null);
  objects = objects.filter((o) => o.id !== objectId);
  if (current === objectId) current = objects.length ? objects[objects.length - 1].id : null;
  if (prompted) trackingStale();
  render();
}

/** Change the current object's prompts on the shown frame; the server answers with its mask. */
function edit(update: (previous: FramePrompts) => FramePrompts): void {
  const v = video;
  if (!v) return;
  if (current === null) addObject();
  const objectId = current!;
  const index = frame();
  player?.pause();
  run(
    enqueue(async () => {
      const k = key(index, objectId);
      const previous = prompts.get(k) ?? { points: [], box: null };
      const next = update(previous);
      if (!next.points.length && !next.box) {
        if (!prompts.has(k)) return;
        await videoApi.clearObject(v, objectId, index);
        if (video !== v) return;
        prompts.delete(k);
        book!.dropPrompted(objectId, index);
      } else {
        showMessage(`Object ${objectId} on frame ${index + 1}: asking the server…`);
        const result = await videoApi.prompt(v, objectId, index, next.points, next.box);
        if (video !== v) return;
        prompts.set(k, next);
        book!.setPrompted(index, result);
        const found = result.lost ? "nothing found there" : `score ${result.score.toFixed(2)}`;
        showMessage(`Object ${objectId} on frame ${index + 1}: ${found}. Track when ready.`);
      }
      trackingStale();
      render();
    }),
  );
}

function undo(): void {
  edit((p) => (p.points.length ? { points: p.points.slice(0, -1), box: p.box } : { points: [], box: null }));
}

// --------------------------------------------------------------------------- tracking

async function startTracking(): Promise<void> {
  const v = video;
  if (!v) return;
  await enqueue(async () => undefined); // prompts sent before the click are in
  const started = await videoApi.startTracking(v);
  const runId = ++trackRun;
  book?.clearTracked();
  showStatus(started);
  showMessage("Tracking on the server: masks appear as frames are done.");
  let next = 0;
  for (;;) {
    const now = await videoApi.trackStatus(v);
    const page = await videoApi.trackedMasks(v, next);
    if (runId !== trackRun || video !== v) return;
    for (const f of page.frames) book!.setTracked(f.frame_index, f.objects);
    next = page.next;
    showStatus(now);
    render();
    if (now.state !== "running") break;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  if (status?.state === "done") showMessage("Tracked. Press Play (Space) or scrub the frames.");
  else if (status?.state === "failed") showMessage(status.error ?? "tracking failed", "error");
}

async function cancelTracking(): Promise<void> {
  if (video) showStatus(await videoApi.cancelTracking(video));
}

async function download(): Promise<void> {
  if (!video) {
    showMessage("Open a video first.", "error");
    return;
  }
  const blob = await videoApi.exportMasks(video);
  const file = `${baseName(video.name, "video")}.masklets.json`;
  saveBlob(blob, file);
  showMessage(`Downloaded ${file}.`);
}

// --------------------------------------------------------------------------- input

stage.tool = new PromptGestures(stage, {
  click(p: XY, how) {
    const point: Point = { x: p.x, y: p.y, label: how === "left" ? 1 : 0 };
    edit((previous) => ({ points: [...previous.points, point], box: previous.box }));
  },
  box(box) {
    edit((previous) => ({ points: previous.points, box }));
  },
  preview: (box) => renderPrompts(box),
});

function step(delta: number): void {
  player?.pause();
  if (player) run(player.show(frame() + delta));
}

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type !== "range") return;
  if (event.key === " ") {
    event.preventDefault();
    player?.toggle();
  } else if (event.key === "ArrowLeft" && event.target !== slider) step(-1); // the slider moves itself
  else if (event.key === "ArrowRight" && event.target !== slider) step(1);
  else if (event.key === "z" || event.key === "Z") undo();
  else if (event.key === "n" || event.key === "N") addObject();
  else if (event.key === "t" || event.key === "T") run(startTracking());
});

slider.addEventListener("input", () => {
  player?.pause();
  if (player) run(player.show(Number(slider.value)));
});
playButton.addEventListener("click", () => player?.toggle());
$<HTMLButtonElement>("add-object").addEventListener("click", addObject);
$<HTMLButtonElement>("undo").addEventListener("click", undo);
$<HTMLButtonElement>("track").addEventListener("click", () => run(startTracking()));
$<HTMLButtonElement>("cancel").addEventListener("click", () => run(cancelTracking()));
$<HTMLButtonElement>("download").addEventListener("click", () => run(download()));

onFileOpened((file) => run(openVideo(file, file.name)));

// --------------------------------------------------------------------------- start

async function start(): Promise<void> {
  const model = await api.getModel();
  $<HTMLSpanElement>("video-info").textContent = `model ${model.name} · open a short video`;
}

const ready = track(start());
ready.catch(showError);

/** Pixels of the overlay canvas with some mask painted on them. */
function overlayPixels(): number {
  const canvas = $<HTMLCanvasElement>("overlay");
  if (!canvas.width) return 0;
  const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i]) count++;
  return count;
}

// Hooks for tests (read-only views of the state, plus idle()).
window.segany = {
  ready: ready.then(() => true),
  idle,
  showFrame: (index: number) => track(player ? player.show(index) : Promise.resolve()),
  overlayPixels,
  state: () => ({
    videoId: video?.id ?? null,
    frames: video?.frames ?? 0,
    width: video?.width ?? 0,
    height: video?.height ?? 0,
    frame: frame(),
    playing: player?.playing ?? false,
    objects: objects.map((o) => o.id),
    current,
    points: current === null ? [] : (prompts.get(key(frame(), current))?.points ?? []),
    track: status?.state ?? "idle",
    trackedFrames: book?.trackedFrames ?? 0,
    ...messageState(),
  }),
  maskRuns: (objectId: number) => {
    const shown = book?.on(frame()).find((m) => m.objectId === objectId);
    return shown && video ? encodeRuns(shown.mask, video.height, video.width) : null;
  },
};
