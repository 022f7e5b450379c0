// The segany page: the server embeds an image once; here the decoder graph turns clicks and
// boxes into masks in a few milliseconds, with no further server work per click.

import "./style.css";
import * as api from "./api";
import { Decoder, type DecoderOutput, type ModelInfo } from "./decoder";
import { float16ToFloat32 } from "./float16";
import type { Box, Point } from "./geometry";
import { decodeCompressed, encodeRuns } from "./rle";

// --------------------------------------------------------------------------- state

interface Candidate {
  mask: Uint8Array; // row-major, 1 inside
  score: number; // predicted IoU
  lowRes: Float32Array; // fed back as mask_input on the next step
  area: number;
}

interface Step {
  points: Point[];
  box: Box | null;
  candidates: Candidate[]; // 3 for a single click, else 1
  chosen: number;
}

interface Accepted {
  mask: Uint8Array;
  score: number;
  everythingIndex: number | null;
}

interface LoadedImage {
  info: api.ImageInfo;
  name: string;
  embedding: Float32Array;
  width: number;
  height: number;
}

interface Everything {
  masks: Uint8Array[]; // largest first
  scores: number[];
  colours: [number, number, number][];
}

const params = new URLSearchParams(location.search);
const EMBEDDING_DTYPE = params.get("embedding") === "float32" ? "float32" : "float16";
const HOVER = params.get("hover") !== "0";
const DRAG_THRESHOLD = 5; // CSS pixels before a press becomes a box
const CURRENT: [number, number, number] = [30, 144, 255];
const ACCEPTED: [number, number, number] = [40, 200, 90];

let model: ModelInfo | null = null;
let decoder: Decoder | null = null;
let image: LoadedImage | null = null;
let history: Step[] = [];
let accepted: Accepted[] = [];
let everything: Everything | null = null;
let hover: Candidate | null = null;
const timings = { click: [] as number[], hover: [] as number[] };

// --------------------------------------------------------------------------- elements

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const stage = $<HTMLDivElement>("stage");
const imageCanvas = $<HTMLCanvasElement>("image");
const overlay = $<HTMLCanvasElement>("overlay");
const svg = document.getElementById("prompts") as unknown as SVGSVGElement;
const message = $<HTMLDivElement>("message");
const candidatesBox = $<HTMLDivElement>("candidates");

function showMessage(text: string, kind: "info" | "error" = "info"): void {
  message.textContent = text;
  message.className = kind;
}

function showError(error: unknown): void {
  const text = error instanceof Error ? error.message : String(error);
  showMessage(text, "error");
}

// --------------------------------------------------------------------------- busy tracking

let pending = 0;
let idleWaiters: (() => void)[] = [];

async function track<T>(work: Promise<T>): Promise<T> {
  pending++;
  document.body.dataset.busy = "1";
  try {
    return await work;
  } finally {
    pending--;
    if (pending === 0) {
      document.body.dataset.busy = "0";
      const waiters = idleWaiters;
      idleWaiters = [];
      waiters.forEach((w) => w());
    }
  }
}

function idle(): Promise<void> {
  return pending === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve));
}

// One decoder run at a time (a session runs one call at once); clicks queue behind at most
// one hover run.
let queue: Promise<unknown> = Promise.resolve();
function enqueue<T>(job: () => Promise<T>): Promise<T> {
  const result = queue.then(job, job);
  queue = result.catch(() => undefined);
  return result;
}

// --------------------------------------------------------------------------- decoding

function current(): Step | null {
  return history.length ? history[history.length - 1] : null;
}

function currentCandidate(): Candidate | null {
  const step = current();
  return step ? step.candidates[step.chosen] : null;
}

function candidateOf(out: DecoderOutput, index: number, threshold: number): Candidate {
  const { width, height } = image!;
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
  const lr = model!.low_res_size * model!.low_res_size;
  return { mask, score: out.scores[index], lowRes: out.lowRes.slice(index * lr, (index + 1) * lr), area };
}

/** Decode prompts with the previous step's chosen logits fed back (refinement). As
 *  segany.InteractiveSession: a single click (no box) gets 3 candidates, else one mask. */
async function decode(points: Point[], box: Box | null, kind: "click" | "hover"): Promise<Step> {
  const img = image!;
  const previous = currentCandidate();
  const out = await decoder!.run({
    embedding: img.embedding,
    height: img.height,
    width: img.width,
    points,
    box,
    maskInput: previous ? previous.lowRes : null,
  });
  timings[kind].push(out.ms);
  const multimask = points.length + (box ? 2 : 0) <= 1;
  const indices = multimask ? [1, 2, 3] : [0];
  const candidates = indices.map((i) => candidateOf(out, i, model!.mask_threshold));
  let chosen = 0;
  candidates.forEach((c, i) => {
    if (c.score > candidates[chosen].score) chosen = i;
  });
  showPerf(out.ms);
  return { points, box, candidates, chosen };
}

type Prompts = { points: Point[]; box: Box | null };

/** Add to the current prompts; ``update`` runs when the decoder is free, so quick clicks
 *  each see the ones before them. */
async function addPrompt(update: (previous: Prompts) => Prompts): Promise<void> {
  if (!image || !decoder) return;
  const img = image;
  hover = null;
  await track(
    enqueue(async () => {
      if (image !== img) return;
      const step = current();
      const next = update({ points: step?.points ?? [], box: step?.box ?? null });
      const result = await decode(next.points, next.box, "click");
      if (image === img) history.push(result);
    }),
  );
  render();
}

let hoverWanted: Point | null = null;
let hoverRunning = false;

async function hoverLoop(): Promise<void> {
  if (hoverRunning) return;
  hoverRunning = true;
  try {
    while (hoverWanted && image && decoder && history.length === 0 && !everything) {
      const point = hoverWanted;
      hoverWanted = null;
      const img = image;
      const step = await enqueue(() => decode([point], null, "hover"));
      if (image === img && history.length === 0 && !everything) {
        hover = step.candidates[step.chosen];
        render();
      }
    }
  } catch (error) {
    showError(error);
  } finally {
    hoverRunning = false;
  }
}

// --------------------------------------------------------------------------- rendering

function render(): void {
  renderOverlay();
  renderPrompts();
  renderCandidates();
  $<HTMLSpanElement>("accepted-count").textContent = String(accepted.length);
  $<HTMLButtonElement>("everything").hidden = everything !== null;
  $<HTMLButtonElement>("back").hidden = everything === null;
}

function renderOverlay(): void {
  if (!image) return;
  const { width, height } = image;
  const context = overlay.getContext("2d")!;
  const data = context.createImageData(width, height);
  const rgba = data.data;
  const paint = (mask: Uint8Array, colour: [number, number, number], alpha: number) => {
    for (let i = 0; i < mask.length; i++) {
      if (mask[i]) {
        const o = 4 * i;
        rgba[o] = colour[0];
        rgba[o + 1] = colour[1];
        rgba[o + 2] = colour[2];
        rgba[o + 3] = alpha;
      }
    }
  };
  if (everything) {
    const chosen = new Set(accepted.map((a) => a.everythingIndex));
    everything.masks.forEach((mask, i) => {
      if (!chosen.has(i)) paint(mask, everything!.colours[i], 110);
    });
  }
  for (const a of accepted) paint(a.mask, ACCEPTED, 170);
  const candidate = currentCandidate();
  if (candidate) paint(candidate.mask, CURRENT, 140);
  else if (hover && !everything) paint(hover.mask, CURRENT, 90);
  context.putImageData(data, 0, 0);
}

const SVG_NS = "http://www.w3.org/2000/svg";

function renderPrompts(drag: Box | null = null): void {
  svg.replaceChildren();
  if (!image) return;
  const scale = image.width / svg.getBoundingClientRect().width || 1;
  const add = (tag: string, attributes: Record<string, string | number>) => {
    const element = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
    svg.appendChild(element);
  };
  const step = current();
  const box = drag ?? step?.box ?? null;
  if (box) {
    add("rect", {
      x: box[0],
      y: box[1],
      width: box[2] - box[0],
      height: box[3] - box[1],
      fill: "none",
      stroke: "#ffc800",
      "stroke-width": 2 * scale,
      "stroke-dasharray": drag ? `${4 * scale}` : "none",
    });
  }
  for (const p of step?.points ?? []) {
    add("circle", {
      cx: p.x,
      cy: p.y,
      r: 5 * scale,
      fill: p.label ? "#00dc00" : "#e61e1e",
      stroke: "#fff",
      "stroke-width": 1.5 * scale,
    });
  }
}

function renderCandidates(): void {
  const step = current();
  candidatesBox.replaceChildren();
  candidatesBox.hidden = !step || step.candidates.length < 2;
  if (!step || step.candidates.length < 2) return;
  step.candidates.forEach((c, i) => {
    const button = document.createElement("button");
    button.textContent = `${i + 1}: IoU ${c.score.toFixed(2)}`;
    button.title = `${c.area} pixels (key ${i + 1})`;
    button.className = i === step.chosen ? "active" : "";
    button.dataset.candidate = String(i);
    button.addEventListener("click", () => choose(i));
    candidatesBox.appendChild(button);
  });
}

function choose(index: number): void {
  const step = current();
  if (step && index < step.candidates.length) {
    step.chosen = index;
    render();
  }
}

function showPerf(lastMs: number): void {
  const clicks = timings.click;
  const median = clicks.length ? medianOf(clicks) : lastMs;
  $<HTMLParagraphElement>("perf").textContent =
    `last ${lastMs.toFixed(1)} ms · median ${median.toFixed(1)} ms over ${clicks.length} clicks · ` +
    `${decoder?.threads ?? 1} thread(s)${crossOriginIsolated ? ", cross-origin isolated" : ""}`;
}

function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function layoutStage(): void {
  if (!image) return;
  const area = $<HTMLDivElement>("stage-area").getBoundingClientRect();
  const maxWidth = Math.max(200, area.width);
  const maxHeight = Math.max(200, window.innerHeight - area.top - 60);
  const scale = Math.min(maxWidth / image.width, maxHeight / image.height, 4);
  stage.style.width = `${Math.round(image.width * scale)}px`;
  stage.style.height = `${Math.round(image.height * scale)}px`;
  svg.setAttribute("viewBox", `0 0 ${image.width} ${image.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  renderPrompts();
}

// --------------------------------------------------------------------------- images

async function openImage(blob: Blob, name: string): Promise<void> {
  if (!model) return;
  showMessage(`Uploading ${name}…`);
  const info = await api.upload(blob);
  const [buffer, picture] = await Promise.all([
    api.fetchEmbedding(info, EMBEDDING_DTYPE),
    loadPicture(info.image_url),
  ]);
  const embedding = EMBEDDING_DTYPE === "float16" ? float16ToFloat32(buffer) : new Float32Array(buffer);
  const expected = info.embedding.shape.reduce((a, b) => a * b, 1);
  if (embedding.length !== expected) throw new Error(`embedding has ${embedding.length} values, expected ${expected}`);
  for (const canvas of [imageCanvas, overlay]) {
    canvas.width = info.width;
    canvas.height = info.height;
  }
  imageCanvas.getContext("2d")!.drawImage(picture, 0, 0);
  image = { info, name, embedding, width: info.width, height: info.height };
  history = [];
  accepted = [];
  everything = null;
  hover = null;
  stage.hidden = false;
  layoutStage();
  render();
  $<HTMLParagraphElement>("everything-info").textContent = "";
  showMessage(
    `${name}: ${info.width}×${info.height}, embedding ${info.cached ? "from the server's cache" : "computed on the server"}. Click an object.`,
  );
}

function loadPicture(url: string): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const picture = new Image();
    picture.onload = () => resolve(picture);
    picture.onerror = () => reject(new Error("cannot load the image from the server"));
    picture.src = url;
  });
}

async function openSample(sample: api.Sample): Promise<void> {
  const blob = await api.fetchBlob(sample.url);
  await openImage(blob, `${sample.name}.png`);
}

// --------------------------------------------------------------------------- actions

function undo(): void {
  history.pop();
  render();
}

function reset(): void {
  history = [];
  hover = null;
  render();
}

function accept(): void {
  const candidate = currentCandidate();
  if (!candidate) {
    showMessage("Nothing to accept: click an object first.", "error");
    return;
  }
  accepted.push({ mask: candidate.mask, score: candidate.score, everythingIndex: null });
  history = [];
  render();
  showMessage(`Accepted mask ${accepted.length} (${candidate.area} pixels). Click the next object.`);
}

async function segmentEverything(): Promise<void> {
  if (!image) return;
  const img = image;
  showMessage("Segmenting everything on the server…");
  const result = await api.segmentEverything(img.info.id);
  if (image !== img) return;
  const decoded = result.masks.map((r, i) => ({
    mask: decodeCompressed(r.segmentation.counts, img.height, img.width),
    score: r.predicted_iou,
    area: r.area,
    i,
  }));
  decoded.sort((a, b) => b.area - a.area);
  const colours = decoded.map((_, i) => hsl((i * 137.508) % 360));
  everything = { masks: decoded.map((d) => d.mask), scores: decoded.map((d) => d.score), colours };
  history = [];
  hover = null;
  render();
  const seconds = result.seconds ? ` in ${result.seconds.toFixed(1)} s` : " (cached)";
  const found = `${decoded.length} mask${decoded.length === 1 ? "" : "s"}`;
  $<HTMLParagraphElement>("everything-info").textContent = `${found}${seconds}. Click masks to accept or drop them.`;
  showMessage(`${found} found. Click the ones to keep.`);
}

function hsl(hue: number): [number, number, number] {
  const f = (n: number) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (0.55 - 0.45 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

function pickEverything(x: number, y: number): void {
  if (!everything || !image) return;
  const pixel = Math.min(image.height - 1, Math.floor(y)) * image.width + Math.min(image.width - 1, Math.floor(x));
  for (let i = everything.masks.length - 1; i >= 0; i--) {
    if (everything.masks[i][pixel]) {
      const existing = accepted.findIndex((a) => a.everythingIndex === i);
      if (existing >= 0) accepted.splice(existing, 1);
      else accepted.push({ mask: everything.masks[i], score: everything.scores[i], everythingIndex: i });
      render();
      return;
    }
  }
}

async function download(format: api.ExportFormat): Promise<void> {
  if (!image) {
    showMessage("Open an image first.", "error");
    return;
  }
  const chosen = accepted.length
    ? accepted.map((a) => ({ mask: a.mask, score: a.score }))
    : currentCandidate()
      ? [{ mask: currentCandidate()!.mask, score: currentCandidate()!.score }]
      : [];
  if (!chosen.length) {
    showMessage("Nothing to download: click an object (or accept masks) first.", "error");
    return;
  }
  const { width, height, name } = image;
  const masks = chosen.map((c) => ({ size: [height, width] as [number, number], counts: encodeRuns(c.mask, height, width) }));
  const blob = await api.exportMasks(image.info.id, format, masks, chosen.map((c) => c.score), name);
  const base = name.replace(/\.[^.]*$/, "") || "image";
  const file = format === "coco" ? `${base}.coco.json` : `${base}-${format}.png`;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = file;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  showMessage(`Downloaded ${file} (${chosen.length} mask${chosen.length > 1 ? "s" : ""}).`);
}

// --------------------------------------------------------------------------- input

function imagePoint(event: MouseEvent): { x: number; y: number } {
  const rect = svg.getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * image!.width;
  const y = ((event.clientY - rect.top) / rect.height) * image!.height;
  return { x: Math.max(0, Math.min(image!.width, x)), y: Math.max(0, Math.min(image!.height, y)) };
}

let press: { x: number; y: number; clientX: number; clientY: number; dragging: boolean } | null = null;

function run(work: Promise<unknown>): void {
  track(work).catch(showError);
}

svg.addEventListener("pointerdown", (event) => {
  if (!image || event.button !== 0) return;
  svg.setPointerCapture(event.pointerId);
  press = { ...imagePoint(event), clientX: event.clientX, clientY: event.clientY, dragging: false };
});

svg.addEventListener("pointermove", (event) => {
  if (!image) return;
  if (press) {
    const moved = Math.hypot(event.clientX - press.clientX, event.clientY - press.clientY);
    if (moved > DRAG_THRESHOLD && !everything) press.dragging = true;
    if (press.dragging) renderPrompts(boxFrom(press, imagePoint(event)));
    return;
  }
  if (HOVER && history.length === 0 && !everything) {
    const { x, y } = imagePoint(event);
    hoverWanted = { x, y, label: 1 };
    run(hoverLoop());
  }
});

svg.addEventListener("pointerleave", () => {
  hoverWanted = null;
  if (hover) {
    hover = null;
    render();
  }
});

svg.addEventListener("pointerup", (event) => {
  if (!image || !press || event.button !== 0) return;
  const start = press;
  press = null;
  const end = imagePoint(event);
  if (everything) {
    pickEverything(end.x, end.y);
    return;
  }
  if (start.dragging) {
    const box = boxFrom(start, end);
    if (box[2] - box[0] < 2 || box[3] - box[1] < 2) {
      renderPrompts();
      return;
    }
    run(addPrompt((p) => ({ points: p.points, box })));
  } else {
    const point: Point = { x: end.x, y: end.y, label: event.altKey ? 0 : 1 };
    run(addPrompt((p) => ({ points: [...p.points, point], box: p.box })));
  }
});

svg.addEventListener("contextmenu", (event) => {
  event.preventDefault();
  if (!image || everything) return;
  const point: Point = { ...imagePoint(event), label: 0 };
  run(addPrompt((p) => ({ points: [...p.points, point], box: p.box })));
});

function boxFrom(a: { x: number; y: number }, b: { x: number; y: number }): Box {
  return [Math.min(a.x, b.x), Math.min(a.y, b.y), Math.max(a.x, b.x), Math.max(a.y, b.y)];
}

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement) return;
  if (event.key === "z" || event.key === "Z") undo();
  else if (event.key === "Escape") reset();
  else if (event.key === "Enter") accept();
  else if (["1", "2", "3"].includes(event.key)) choose(Number(event.key) - 1);
});

$<HTMLButtonElement>("undo").addEventListener("click", undo);
$<HTMLButtonElement>("reset").addEventListener("click", reset);
$<HTMLButtonElement>("accept").addEventListener("click", accept);
$<HTMLButtonElement>("clear").addEventListener("click", () => {
  accepted = [];
  render();
});
$<HTMLButtonElement>("everything").addEventListener("click", () => run(segmentEverything()));
$<HTMLButtonElement>("back").addEventListener("click", () => {
  everything = null;
  render();
  showMessage("Back to clicking: accepted masks are kept.");
});
for (const format of ["cutout", "mask", "coco"] as const) {
  $<HTMLButtonElement>(`download-${format}`).addEventListener("click", () => run(download(format)));
}

const fileInput = $<HTMLInputElement>("file");
fileInput.addEventListener("change", () => {
  const file = fileInput.files?.[0];
  if (file) run(openImage(file, file.name));
  fileInput.value = "";
});
document.addEventListener("dragover", (event) => {
  event.preventDefault();
  document.body.classList.add("dragover");
});
document.addEventListener("dragleave", () => document.body.classList.remove("dragover"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragover");
  const file = event.dataTransfer?.files?.[0];
  if (file) run(openImage(file, file.name));
});
window.addEventListener("resize", layoutStage);

// --------------------------------------------------------------------------- start

function threadCount(): number {
  const asked = Number(params.get("threads"));
  if (Number.isInteger(asked) && asked > 0) return crossOriginIsolated ? asked : 1;
  return crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}

async function start(): Promise<void> {
  model = await api.getModel();
  $<HTMLSpanElement>("model-info").textContent =
    `model ${model.name} · ${model.img_size}px input · decoder ${(model.decoder_bytes / 2 ** 20).toFixed(1)} MB`;
  const samples = await api.listSamples();
  const box = $<HTMLDivElement>("samples");
  for (const sample of samples) {
    const button = document.createElement("button");
    button.textContent = sample.name;
    button.dataset.sample = sample.name;
    button.addEventListener("click", () => run(openSample(sample)));
    box.appendChild(button);
  }
  decoder = await Decoder.create(model, threadCount());
  showPerf(0);
  showMessage("Open an image or pick a sample.");
}

const ready = track(start());
ready.catch(showError);

// Hooks for tests and benchmarks (read-only views of the state, plus idle()).
declare global {
  interface Window {
    segany: unknown;
  }
}
window.segany = {
  ready: ready.then(() => true),
  idle,
  timings,
  threads: () => decoder?.threads ?? 0,
  isolated: () => crossOriginIsolated,
  state: () => ({
    imageId: image?.info.id ?? null,
    width: image?.width ?? 0,
    height: image?.height ?? 0,
    points: current()?.points ?? [],
    box: current()?.box ?? null,
    scores: current()?.candidates.map((c) => c.score) ?? [],
    chosen: current()?.chosen ?? -1,
    steps: history.length,
    area: currentCandidate()?.area ?? 0,
    hoverArea: hover?.area ?? 0,
    accepted: accepted.length,
    everything: everything?.masks.length ?? 0,
    message: message.textContent,
    error: message.className === "error",
  }),
  maskRuns: () => {
    const c = currentCandidate();
    return c && image ? encodeRuns(c.mask, image.height, image.width) : null;
  },
  decodeCompressed: (counts: string, h: number, w: number) => encodeRuns(decodeCompressed(counts, h, w), h, w),
};
