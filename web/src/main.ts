// The segany page: the server embeds an image once; here the decoder graph turns clicks and
// boxes into masks in a few milliseconds, with no further server work per click.

import "./style.css";
import * as api from "./api";
import { idle, track } from "./busy";
import { nthColour } from "./colours";
import { Decoder, type ModelInfo, threadCount } from "./decoder";
import { baseName, saveBlob } from "./files";
import { embeddingValues } from "./float16";
import type { Box, Point } from "./geometry";
import { $, messageState, onFileOpened, run, showError, showMessage } from "./page";
import { type Candidate, enqueue, Prompter, type Prompts, type RunKind, type Step } from "./prompting";
import { decodeCompressed, encodeRuns } from "./rle";
import { type Colour, type Layer, loadPicture, PromptGestures, Stage, type XY } from "./stage";

// --------------------------------------------------------------------------- state

interface Accepted {
  mask: Uint8Array;
  score: number;
  everythingIndex: number | null;
}

interface LoadedImage {
  info: api.ImageInfo;
  name: string;
  width: number;
  height: number;
  prompter: Prompter; // the current object's clicks and masks
}

interface Everything {
  masks: Uint8Array[]; // largest first
  scores: number[];
  colours: Colour[];
}

const params = new URLSearchParams(location.search);
const EMBEDDING_DTYPE = params.get("embedding") === "float32" ? "float32" : "float16";
const HOVER = params.get("hover") !== "0";
const CURRENT: Colour = [30, 144, 255];
const ACCEPTED: Colour = [40, 200, 90];

let model: ModelInfo | null = null;
let decoder: Decoder | null = null;
let image: LoadedImage | null = null;
let accepted: Accepted[] = [];
let everything: Everything | null = null;
let hover: Candidate | null = null;
const timings = { click: [] as number[], hover: [] as number[] };

// --------------------------------------------------------------------------- elements

const stage = Stage.ofPage();
stage.onLayout = () => renderPrompts();
const candidatesBox = $<HTMLDivElement>("candidates");

// --------------------------------------------------------------------------- decoding

function current(): Step | null {
  return image?.prompter.current() ?? null;
}

function currentCandidate(): Candidate | null {
  return image?.prompter.candidate() ?? null;
}

function recordRun(ms: number, kind: RunKind): void {
  timings[kind].push(ms);
  showPerf(ms);
}

/** Add to the current object's prompts (decoded when the decoder is free). */
async function addPrompt(update: (previous: Prompts) => Prompts): Promise<void> {
  if (!image) return;
  hover = null;
  await track(image.prompter.add(update));
  render();
}

let hoverWanted: Point | null = null;
let hoverRunning = false;

async function hoverLoop(): Promise<void> {
  if (hoverRunning) return;
  hoverRunning = true;
  try {
    while (hoverWanted && image && image.prompter.history.length === 0 && !everything) {
      const point = hoverWanted;
      hoverWanted = null;
      const img = image;
      const step = await enqueue(() => img.prompter.decode([point], null, "hover"));
      if (image === img && img.prompter.history.length === 0 && !everything) {
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
  const layers: Layer[] = [];
  if (everything) {
    const chosen = new Set(accepted.map((a) => a.everythingIndex));
    everything.masks.forEach((mask, i) => {
      if (!chosen.has(i)) layers.push({ mask, colour: everything!.colours[i], alpha: 110 });
    });
  }
  for (const a of accepted) layers.push({ mask: a.mask, colour: ACCEPTED, alpha: 170 });
  const candidate = currentCandidate();
  if (candidate) layers.push({ mask: candidate.mask, colour: CURRENT, alpha: 140 });
  else if (hover && !everything) layers.push({ mask: hover.mask, colour: CURRENT, alpha: 90 });
  stage.paint(layers);
}

function renderPrompts(drag: Box | null = null): void {
  const step = current();
  stage.drawPrompts(step?.points ?? [], drag ?? step?.box ?? null, drag !== null);
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
  if (image?.prompter.choose(index)) render();
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

// --------------------------------------------------------------------------- images

async function openImage(blob: Blob, name: string): Promise<void> {
  if (!model) return;
  showMessage(`Uploading ${name}…`);
  const info = await api.upload(blob);
  const [buffer, earlyBuffer, picture] = await Promise.all([
    api.fetchEmbedding(info, EMBEDDING_DTYPE),
    api.fetchEarly(info, EMBEDDING_DTYPE),
    loadPicture(info.image_url),
  ]);
  const embedding = embeddingValues(buffer, EMBEDDING_DTYPE, info.embedding.shape);
  const earlyShape = info.embedding.early_shape ?? [];
  const early = earlyBuffer
    ? { values: embeddingValues(earlyBuffer, EMBEDDING_DTYPE, earlyShape), shape: earlyShape }
    : null;
  const { width, height } = info;
  const prompter = new Prompter(decoder!, { embedding, early, width, height }, recordRun);
  image = { info, name, width, height, prompter };
  accepted = [];
  everything = null;
  hover = null;
  stage.show(picture, width, height);
  render();
  $<HTMLParagraphElement>("everything-info").textContent = "";
  showMessage(
    `${name}: ${info.width}×${info.height}, embedding ${info.cached ? "from the server's cache" : "computed on the server"}. Click an object.`,
  );
}

async function openSample(sample: api.Sample): Promise<void> {
  const blob = await api.fetchBlob(sample.url);
  await openImage(blob, `${sample.name}.png`);
}

// --------------------------------------------------------------------------- actions

function undo(): void {
  image?.prompter.undo();
  render();
}

function reset(): void {
  image?.prompter.reset();
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
  image!.prompter.reset();
  render();
  showMessage(`Accepted mask ${accepted.length} (${candidate.area} pixels). Click the next object.`);
}

async function segmentEverything(): Promise<void> {
  if (!image) return;
  const img = image;
  showMessage("Segmenting everything on the server…");
  const result = await api.segmentEverything(img.info.id);
  if (image !== img) return;
  const found = showMaskSet(img, result.masks);
  const seconds = result.seconds ? ` in ${result.seconds.toFixed(1)} s` : " (cached)";
  $<HTMLParagraphElement>("everything-info").textContent = `${found}${seconds}. Click masks to accept or drop them.`;
  showMessage(`${found} found. Click the ones to keep.`);
}

/** Masks from the server (segment everything, a text prompt) to pick from, largest first:
 * "N masks". */
function showMaskSet(img: LoadedImage, records: { segmentation: { counts: string }; predicted_iou: number; area: number }[]): string {
  const decoded = records.map((r) => ({
    mask: decodeCompressed(r.segmentation.counts, img.height, img.width),
    score: r.predicted_iou,
    area: r.area,
  }));
  decoded.sort((a, b) => b.area - a.area);
  const colours = decoded.map((_, i) => nthColour(i));
  everything = { masks: decoded.map((d) => d.mask), scores: decoded.map((d) => d.score), colours };
  img.prompter.reset();
  hover = null;
  render();
  return `${decoded.length} mask${decoded.length === 1 ? "" : "s"}`;
}

async function segmentText(): Promise<void> {
  const text = $<HTMLInputElement>("text").value.trim();
  if (!image) {
    showMessage("Open an image first, then name what to find.", "error");
    return;
  }
  if (!text) {
    showMessage("Type what to find, e.g. a dog (several: dog . cat).", "error");
    return;
  }
  const img = image;
  showMessage(`Looking for ${text} on the server…`);
  const result = await api.segmentText(img.info.id, text);
  if (image !== img) return;
  if (result.masks.length === 0) {
    showMessage(result.message ?? `nothing found for ${text}`, "error");
    return;
  }
  const found = showMaskSet(img, result.masks);
  // the text head has no detector score: its masks are named by the phrase alone
  const named = result.masks
    .map((m) => (m.detector_score == null ? m.phrase : `${m.phrase} ${m.detector_score.toFixed(2)}`))
    .join(", ");
  $<HTMLParagraphElement>("text-info").textContent = `${found} for ${text}: ${named}. Click masks to accept or drop them.`;
  showMessage(`${found} found for ${text}. Click the ones to keep.`);
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
  const base = baseName(name, "image");
  const file = format === "coco" ? `${base}.coco.json` : `${base}-${format}.png`;
  saveBlob(blob, file);
  showMessage(`Downloaded ${file} (${chosen.length} mask${chosen.length > 1 ? "s" : ""}).`);
}

// --------------------------------------------------------------------------- input

stage.tool = new PromptGestures(stage, {
  click(p: XY, how) {
    if (everything) {
      if (how !== "right") pickEverything(p.x, p.y);
      return;
    }
    const point: Point = { x: p.x, y: p.y, label: how === "left" ? 1 : 0 };
    run(addPrompt((prompts) => ({ points: [...prompts.points, point], box: prompts.box })));
  },
  box(box) {
    run(addPrompt((prompts) => ({ points: prompts.points, box })));
  },
  preview: (box) => renderPrompts(box),
  dragAllowed: () => !everything,
  hover(p: XY) {
    if (HOVER && image && image.prompter.history.length === 0 && !everything) {
      hoverWanted = { x: p.x, y: p.y, label: 1 };
      run(hoverLoop());
    }
  },
  leave() {
    hoverWanted = null;
    if (hover) {
      hover = null;
      render();
    }
  },
});

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
$<HTMLFormElement>("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  run(segmentText());
});
$<HTMLButtonElement>("back").addEventListener("click", () => {
  everything = null;
  render();
  showMessage("Back to clicking: accepted masks are kept.");
});
for (const format of ["cutout", "mask", "coco"] as const) {
  $<HTMLButtonElement>(`download-${format}`).addEventListener("click", () => run(download(format)));
}

onFileOpened((file) => run(openImage(file, file.name)));

// --------------------------------------------------------------------------- start

async function start(): Promise<void> {
  model = await api.getModel();
  $<HTMLSpanElement>("model-info").textContent =
    `model ${model.name} · ${model.img_size}px input · decoder ${(model.decoder_bytes / 2 ** 20).toFixed(1)} MB`;
  if (!model.text_detector) {
    $<HTMLParagraphElement>("text-info").textContent =
      "Text prompts need a detector: start the server with segany serve --detector PATH.";
  }
  const samples = await api.listSamples();
  const box = $<HTMLDivElement>("samples");
  for (const sample of samples) {
    const button = document.createElement("button");
    button.textContent = sample.name;
    button.dataset.sample = sample.name;
    button.addEventListener("click", () => run(openSample(sample)));
    box.appendChild(button);
  }
  decoder = await Decoder.create(model, threadCount(params));
  showPerf(0);
  showMessage("Open an image or pick a sample.");
}

const ready = track(start());
ready.catch(showError);

// Hooks for tests and benchmarks (read-only views of the state, plus idle()).
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
    steps: image?.prompter.history.length ?? 0,
    area: currentCandidate()?.area ?? 0,
    hoverArea: hover?.area ?? 0,
    accepted: accepted.length,
    everything: everything?.masks.length ?? 0,
    ...messageState(),
  }),
  maskRuns: () => {
    const c = currentCandidate();
    return c && image ? encodeRuns(c.mask, image.height, image.width) : null;
  },
  decodeCompressed: (counts: string, h: number, w: number) => encodeRuns(decodeCompressed(counts, h, w), h, w),
};
