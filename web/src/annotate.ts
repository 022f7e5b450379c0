// The annotation page (`segany annotate`): the server hands this annotator one image at a
// time under a lease; clicks and boxes are decoded here as on the explore page, brush and
// eraser touch the mask up, and every accepted mask is committed on the server at once with
// its clicks and seconds. Gear 2 images come with pre-filled masks, locked, each with a toggle
// to reject it; the annotator adds the missing objects.

import "./style.css";
import { ApiError, getModel } from "./api";
import * as desk from "./annotationApi";
import { type BrushEvent, BrushTool, Edits } from "./brush";
import { idle, track } from "./busy";
import { Decoder, threadCount } from "./decoder";
import { embeddingValues } from "./float16";
import type { Box, Point } from "./geometry";
import { enqueue, Prompter, type Prompts } from "./prompting";
import { encodeRuns } from "./rle";
import { loadPicture, PromptGestures, Stage, type Tool } from "./stage";
import { layersOf, type Open, openOf, type Proposal, type Shown, View } from "./annotateView";

type ToolName = "prompt" | "brush" | "eraser";

const params = new URLSearchParams(location.search);
const EMBEDDING_DTYPE = params.get("embedding") === "float32" ? "float32" : "float16";
const NAME_KEY = "segany.annotator";

let decoder: Decoder | null = null;
let annotator = localStorage.getItem(NAME_KEY)?.trim() ?? "";
let open: Open | null = null;
let remaining = 0;
let toolName: ToolName = "prompt";
let radius = 6;
const effort = { clicks: 0, since: null as number | null }; // since the last accept
let saves: Promise<unknown> = Promise.resolve(); // accepted masks, committed in order
let leaseSeconds = 900;
let lastActive = 0; // performance.now() of the last click or stroke

const stage = Stage.ofPage();
const view = new View({ choose, toggle: (p) => run(toggleProposal(p)) });

const showMessage = (text: string, kind: "info" | "error" = "info") => view.message(text, kind);

function showError(error: unknown): void {
  showMessage(error instanceof Error ? error.message : String(error), "error");
}

function run(work: Promise<unknown>): void {
  track(work).catch(failed);
}

function failed(error: unknown): void {
  showError(error);
  const o = open;
  if (error instanceof ApiError && error.status === 409 && o) track(recheck(o, error.message)).catch(showError);
}

/** After a refused write: if the image is no longer this annotator's (the lease ran out and
 *  someone took it, or it was finished), move on; otherwise the refusal was about a mask. */
async function recheck(o: Open, why: string): Promise<void> {
  const answer = await desk.next(annotator);
  if (open !== o || answer.task?.image_id === o.task.image_id) return;
  open = null;
  await showNext(answer);
  showMessage(`${why}. Moved on${open ? ` to ${(open as Open).task.name}` : ""}.`, "error");
}

// --------------------------------------------------------------------------- the object

function currentMask(): { mask: Uint8Array; area: number } | null {
  if (!open) return null;
  const candidate = open.prompter.candidate();
  if (open.edits.touched) return open.edits.apply(candidate?.mask ?? null);
  return candidate ? { mask: candidate.mask, area: candidate.area } : null;
}

function interacted(counted: boolean): void {
  effort.since ??= performance.now();
  if (counted) effort.clicks++;
  lastActive = performance.now();
}

function elapsed(): number {
  return effort.since === null ? 0 : (performance.now() - effort.since) / 1000;
}

function addPrompt(update: (previous: Prompts) => Prompts): void {
  const o = open;
  if (!o) return;
  interacted(true);
  run(o.prompter.add(update).then(render));
}

function resetObject(): void {
  if (!open) return;
  open.prompter.reset();
  open.edits = new Edits(open.task.width, open.task.height);
  render();
}

function choose(index: number): void {
  if (open?.prompter.choose(index)) render();
}

// --------------------------------------------------------------------------- the writes

/** Accept once the clicks made before are decoded (the decoder runs one job at a time). */
function accept(): void {
  run(enqueue(async () => acceptNow()));
}

function acceptNow(): void {
  const o = open;
  const current = currentMask();
  if (!o || !current || current.area === 0) {
    showMessage("Nothing to accept: click an object (or paint it) first.", "error");
    return;
  }
  const { width, height, image_id: imageId } = o.task;
  const shown: Shown = { id: null, mask: current.mask, area: current.area, annotator, key: desk.newKey() };
  const body: desk.AcceptBody = {
    annotator,
    segmentation: { size: [height, width], counts: encodeRuns(current.mask, height, width) },
    clicks: effort.clicks,
    seconds: elapsed(),
    client_key: shown.key!,
  };
  o.accepted.push(shown);
  effort.clicks = 0;
  effort.since = null;
  resetObject();
  const save = async () => {
    try {
      const stored = await desk.accept(imageId, body);
      shown.id = stored.id;
      if (open === o) showMessage(`Saved mask ${stored.id} (${stored.area} pixels). Next object, or D when the image is done.`);
    } catch (error) {
      o.accepted.splice(o.accepted.indexOf(shown), 1);
      throw error;
    } finally {
      render();
    }
  };
  saves = saves.then(save, save);
  run(saves);
}

async function undoAccepted(): Promise<void> {
  const o = open;
  if (!o) return;
  await saves.catch(() => undefined);
  const mine = o.accepted.filter((a) => a.annotator === annotator && a.id !== null);
  const last = mine[mine.length - 1];
  if (!last) {
    showMessage("Nothing of yours to undo on this image.", "error");
    return;
  }
  await desk.decide(o.task.image_id, last.id!, "undo", annotator);
  o.accepted.splice(o.accepted.indexOf(last), 1);
  render();
  showMessage(`Took back mask ${last.id}.`);
}

async function toggleProposal(proposal: Proposal): Promise<void> {
  const o = open;
  if (!o || proposal.busy) return;
  proposal.busy = true;
  render();
  try {
    await desk.decide(o.task.image_id, proposal.id, proposal.rejected ? "restore" : "reject", annotator);
    proposal.rejected = !proposal.rejected;
  } finally {
    proposal.busy = false;
    render();
  }
}

async function finishImage(): Promise<void> {
  const o = open;
  if (!o) return;
  if (currentMask()) {
    showMessage("Accept the current mask (Enter) or reset it (Esc) before the image is done.", "error");
    return;
  }
  await saves.catch(() => undefined);
  if (open !== o) return;
  const seconds = (performance.now() - o.openedAt) / 1000;
  remaining = (await desk.finish(o.task.image_id, annotator, seconds)).remaining;
  open = null;
  await loadNext(false);
}

async function leave(): Promise<void> {
  const o = open;
  if (!o) return;
  await saves.catch(() => undefined);
  await desk.release(o.task.image_id, annotator);
  open = null;
  stage.hide();
  render();
  view.showAgain(true);
  showMessage(`You left ${o.task.name}; it is back in the queue, with what you accepted on it.`);
}

// --------------------------------------------------------------------------- images

async function loadNext(announce = true): Promise<void> {
  view.showAgain(false);
  if (announce) showMessage("Looking for an image…");
  await showNext(await desk.next(annotator));
}

async function showNext(answer: { task: desk.Task | null; remaining: number }): Promise<void> {
  remaining = answer.remaining;
  if (!answer.task) {
    open = null;
    stage.hide();
    render();
    view.showAgain(true);
    showMessage(
      remaining === 0
        ? "Every image of this project is done. Thank you!"
        : `No free image: ${remaining === 1 ? "the one left is" : `the ${remaining} left are`} being annotated by others. Look again later.`,
    );
    return;
  }
  await openTask(answer.task);
}

async function openTask(task: desk.Task): Promise<void> {
  const [buffer, picture] = await Promise.all([desk.embedding(task, EMBEDDING_DTYPE), loadPicture(task.image_url)]);
  const embedding = embeddingValues(buffer, EMBEDDING_DTYPE, decoder!.model.embedding_shape);
  const { width, height } = task;
  open = openOf(task, new Prompter(decoder!, { embedding, width, height }));
  effort.clicks = 0;
  effort.since = null;
  stage.show(picture, width, height);
  render();
  const what = task.gear === 2 ? "Reject wrong pre-filled masks, add the missing objects" : "Click an object";
  const kept = task.accepted.length ? ` ${task.accepted.length} mask(s) accepted so far.` : "";
  showMessage(`${task.name}: ${what}; Enter accepts, D when the image is done.${kept}`);
}

// --------------------------------------------------------------------------- rendering

let frame = 0;
function renderSoon(): void {
  if (!frame) frame = requestAnimationFrame(() => ((frame = 0), render()));
}

function render(): void {
  const current = currentMask();
  stage.paint(layersOf(open, current?.mask ?? null));
  renderPrompts();
  view.render(open, remaining, { clicks: effort.clicks, seconds: elapsed(), area: current?.area ?? 0 });
}

function renderPrompts(drag: Box | null = null): void {
  const step = open?.prompter.current();
  const cursor = toolName !== "prompt" ? (toolName === "brush" ? brush : eraser).cursor : null;
  stage.drawPrompts(step?.points ?? [], drag ?? step?.box ?? null, drag !== null, cursor && { ...cursor, r: radius });
}
stage.onLayout = () => renderPrompts();

// --------------------------------------------------------------------------- input

const gestures = new PromptGestures(stage, {
  click(p, how) {
    const point: Point = { x: p.x, y: p.y, label: how === "left" ? 1 : 0 };
    addPrompt((prompts) => ({ points: [...prompts.points, point], box: prompts.box }));
  },
  box: (box) => addPrompt((prompts) => ({ points: prompts.points, box })),
  preview: (box) => renderPrompts(box),
});

function brushed(event: BrushEvent): void {
  if (event === "start") interacted(false);
  if (event === "end") interacted(true); // a stroke counts as a click
  renderSoon();
}
const brush = new BrushTool(stage, () => open?.edits ?? null, () => radius, 1, brushed);
const eraser = new BrushTool(stage, () => open?.edits ?? null, () => radius, -1, brushed);
const TOOLS: Record<ToolName, Tool> = { prompt: gestures, brush, eraser };

function setTool(name: ToolName): void {
  toolName = name;
  stage.tool = TOOLS[name];
  view.tool(name);
  renderPrompts();
}

function setRadius(value: number): void {
  radius = Math.max(1, Math.min(40, Math.round(value)));
  view.radius(radius);
  renderPrompts();
}

const KEYS: Record<string, () => void> = {
  Enter: accept,
  Escape: resetObject,
  Backspace: resetObject,
  z: () => run(undoAccepted()),
  d: () => run(finishImage()),
  p: () => setTool("prompt"),
  b: () => setTool("brush"),
  e: () => setTool("eraser"),
  "[": () => setRadius(radius - 1),
  "]": () => setRadius(radius + 1),
  "1": () => choose(0),
  "2": () => choose(1),
  "3": () => choose(2),
};

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || view.asking() || event.ctrlKey || event.metaKey) return;
  const action = KEYS[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (!action) return;
  event.preventDefault(); // a focused button is not pressed as well
  action();
});

view.on({
  accept,
  reset: resetObject,
  undoClick: () => {
    open?.prompter.undo();
    render();
  },
  undo: () => run(undoAccepted()),
  done: () => run(finishImage()),
  leave: () => run(leave()),
  again: () => run(loadNext()),
  tool: setTool,
  radius: setRadius,
  rename: () => run(rename()),
});
setInterval(() => effort.since !== null && view.effort(effort.clicks, elapsed()), 1000);

// While the annotator works on an image without accepting, the lease is renewed, so that
// nobody else is handed it meanwhile (a refusal moves on, as for any write).
let renewedAt = 0;
function keepLease(): void {
  const o = open;
  if (!o || lastActive <= renewedAt) return;
  renewedAt = performance.now();
  run(desk.renew(o.task.image_id, annotator));
}

// --------------------------------------------------------------------------- start

async function rename(): Promise<void> {
  const [previous, before] = [open, annotator];
  annotator = await view.askName(annotator);
  localStorage.setItem(NAME_KEY, annotator);
  if (previous && before !== annotator) await desk.release(previous.task.image_id, before).catch(() => undefined);
  open = null;
  view.who(annotator);
  await loadNext();
}

async function start(): Promise<void> {
  const [model, info] = await Promise.all([getModel(), desk.project()]);
  remaining = info.remaining;
  leaseSeconds = info.lease_seconds;
  view.project(info);
  decoder = await Decoder.create(model, threadCount(params));
  setTool("prompt");
}

const ready = track(start());
ready.then(async () => {
  if (!annotator) annotator = await view.askName("");
  localStorage.setItem(NAME_KEY, annotator);
  view.who(annotator);
  run(loadNext());
  setInterval(keepLease, Math.max(2, leaseSeconds / 3) * 1000);
}, showError);

window.segany = {
  ready: ready.then(() => true),
  threads: () => decoder?.threads ?? 0,
  isolated: () => crossOriginIsolated,
  idle: async () => {
    await idle();
    await saves.catch(() => undefined);
  },
  state: () => ({
    ...view.snapshot(open),
    annotator,
    area: currentMask()?.area ?? 0,
    clicks: effort.clicks,
    tool: toolName,
    radius,
    remaining,
  }),
  maskRuns: () => {
    const current = currentMask();
    return current && open ? encodeRuns(current.mask, open.task.height, open.task.width) : null;
  },
};
