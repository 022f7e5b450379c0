// What the annotation page shows beside the stage: the project and the image, the tools, the
// pre-filled masks with their reject/restore toggles, the masks accepted so far, the effort
// counted for the current mask, and the dialog that asks for the annotator's name once.

import type { ProjectInfo, StoredMask, Task } from "./annotationApi";
import { Edits } from "./brush";
import type { Prompter } from "./prompting";
import { decodeCompressed } from "./rle";
import type { Colour, Layer } from "./stage";

/** An accepted mask on the page (`id` null while it is being saved). */
export interface Shown {
  id: number | null;
  mask: Uint8Array;
  area: number;
  annotator: string | null;
  key: string | null; // the client key it was sent with
}

/** A pre-filled (gear 2) mask: locked, rejected or not. */
export interface Proposal {
  id: number;
  mask: Uint8Array;
  area: number;
  score: number | null;
  rejected: boolean;
  busy: boolean;
}

/** The image this annotator holds, and the object being made on it. */
export interface Open {
  task: Task;
  prompter: Prompter;
  edits: Edits;
  accepted: Shown[];
  proposals: Proposal[];
  openedAt: number; // performance.now() when shown
}

/** A leased image as the page keeps it: its masks decoded, nothing clicked yet. */
export function openOf(task: Task, prompter: Prompter): Open {
  const { width, height } = task;
  const decoded = (m: StoredMask) => decodeCompressed(m.segmentation.counts, height, width);
  const proposals = [
    ...task.proposals.map((m) => ({ m, rejected: false })),
    ...task.rejected.map((m) => ({ m, rejected: true })),
  ].sort((a, b) => a.m.id - b.m.id);
  return {
    task,
    prompter,
    edits: new Edits(width, height),
    accepted: task.accepted.map((m) => ({ id: m.id, mask: decoded(m), area: m.area, annotator: m.annotator, key: null })),
    proposals: proposals.map(({ m, rejected }) => ({
      id: m.id,
      mask: decoded(m),
      area: m.area,
      score: m.predicted_iou,
      rejected,
      busy: false,
    })),
    openedAt: performance.now(),
  };
}

export const COLOURS: Record<"current" | "accepted" | "proposal" | "rejected" | "edge", Colour> = {
  current: [30, 144, 255],
  accepted: [40, 200, 90],
  proposal: [255, 150, 0],
  rejected: [230, 40, 40],
  edge: [255, 255, 255], // of accepted masks
};

/** The overlay: pre-filled masks (outlined; rejected ones faint), accepted masks (outlined),
 *  the current mask on top. */
export function layersOf(open: Open | null, current: Uint8Array | null): Layer[] {
  const layers: Layer[] = [];
  for (const p of open?.proposals ?? []) {
    const colour = p.rejected ? COLOURS.rejected : COLOURS.proposal;
    layers.push({ mask: p.mask, colour, alpha: p.rejected ? 45 : 110, outline: p.rejected ? undefined : colour });
  }
  for (const a of open?.accepted ?? []) {
    layers.push({ mask: a.mask, colour: COLOURS.accepted, alpha: 130, outline: COLOURS.edge });
  }
  if (current) layers.push({ mask: current, colour: COLOURS.current, alpha: 140 });
  return layers;
}

const css = (colour: Colour) => `rgb(${colour.join(",")})`;
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

export interface Buttons {
  accept(): void;
  reset(): void;
  undoClick(): void;
  undo(): void;
  done(): void;
  leave(): void;
  again(): void;
  tool(name: "prompt" | "brush" | "eraser"): void;
  radius(value: number): void;
  rename(): void;
}

export class View {
  private readonly messageBox = $<HTMLDivElement>("message");
  private readonly dialog = $<HTMLDialogElement>("name-dialog");

  constructor(private readonly actions: { choose(index: number): void; toggle(p: Proposal): void }) {}

  on(buttons: Buttons): void {
    const click = (id: string, action: () => void) =>
      $<HTMLButtonElement>(id).addEventListener("click", (event) => {
        (event.currentTarget as HTMLButtonElement).blur(); // keys go to the page, not the button
        action();
      });
    click("accept", buttons.accept);
    click("reset", buttons.reset);
    click("undo-click", buttons.undoClick);
    click("undo", buttons.undo);
    click("done", buttons.done);
    click("leave", buttons.leave);
    click("again", buttons.again);
    click("rename", buttons.rename);
    for (const button of document.querySelectorAll<HTMLButtonElement>("#tools button")) {
      button.addEventListener("click", () => {
        button.blur();
        buttons.tool(button.dataset.tool as "prompt" | "brush" | "eraser");
      });
    }
    const slider = $<HTMLInputElement>("radius");
    slider.addEventListener("input", () => buttons.radius(Number(slider.value)));
    slider.addEventListener("change", () => slider.blur());
  }

  message(text: string, kind: "info" | "error"): void {
    this.messageBox.textContent = text;
    this.messageBox.className = kind;
  }

  messageText(): string {
    return this.messageBox.textContent ?? "";
  }

  isError(): boolean {
    return this.messageBox.className === "error";
  }

  project(info: ProjectInfo): void {
    $("project-info").textContent = `project ${info.project} · model ${info.model} · ${info.images} images`;
  }

  who(name: string): void {
    $("who").textContent = `annotating as ${name}`;
    $<HTMLButtonElement>("rename").hidden = false;
  }

  tool(name: string): void {
    for (const button of document.querySelectorAll<HTMLButtonElement>("#tools button")) {
      button.className = button.dataset.tool === name ? "active" : "";
    }
  }

  radius(value: number): void {
    $<HTMLInputElement>("radius").value = String(value);
    $("radius-value").textContent = String(value);
  }

  showAgain(shown: boolean): void {
    $<HTMLButtonElement>("again").hidden = !shown;
  }

  effort(clicks: number, seconds: number): void {
    $("effort").textContent = clicks || seconds ? `this mask: ${clicks} click(s) · ${seconds.toFixed(0)} s` : "";
  }

  render(open: Open | null, remaining: number, effort: { clicks: number; seconds: number; area: number }): void {
    const task = open?.task;
    $("image-info").textContent = task
      ? `${task.name} · ${task.width}×${task.height} · gear ${task.gear} · ${remaining} image(s) left`
      : `${remaining} image(s) left`;
    this.effort(effort.clicks, effort.seconds);
    for (const id of ["done", "leave", "accept", "reset", "undo-click", "undo"]) {
      $<HTMLButtonElement>(id).disabled = !open;
    }
    this.candidates(open);
    $("proposals-section").hidden = !open?.proposals.length;
    this.proposals(open?.proposals ?? []);
    this.accepted(open?.accepted ?? []);
  }

  private candidates(open: Open | null): void {
    const box = $<HTMLDivElement>("candidates");
    const step = open?.prompter.current();
    box.replaceChildren();
    box.hidden = !step || step.candidates.length < 2 || open!.edits.touched;
    if (box.hidden || !step) return;
    step.candidates.forEach((c, i) => {
      const button = document.createElement("button");
      button.textContent = `${i + 1}: IoU ${c.score.toFixed(2)}`;
      button.title = `${c.area} pixels (key ${i + 1})`;
      button.className = i === step.chosen ? "active" : "";
      button.dataset.candidate = String(i);
      button.addEventListener("click", () => this.actions.choose(i));
      box.appendChild(button);
    });
  }

  private proposals(proposals: Proposal[]): void {
    $("proposals").replaceChildren(
      ...proposals.map((p) => {
        const score = p.score === null ? "" : ` · IoU ${p.score.toFixed(2)}`;
        const item = row(p.rejected ? COLOURS.rejected : COLOURS.proposal, `#${p.id} · ${p.area} px${score}`);
        item.className = p.rejected ? "rejected" : "";
        const toggle = document.createElement("button");
        toggle.className = "small";
        toggle.textContent = p.rejected ? "Restore" : "Reject";
        toggle.disabled = p.busy;
        toggle.dataset.proposal = String(p.id);
        toggle.addEventListener("click", () => {
          toggle.blur();
          this.actions.toggle(p);
        });
        item.appendChild(toggle);
        return item;
      }),
    );
  }

  private accepted(accepted: Shown[]): void {
    const items = accepted.map((a) => {
      const label = a.id === null ? "saving…" : `#${a.id}`;
      const item = row(COLOURS.accepted, `${label} · ${a.area} px · ${a.annotator ?? ""}`);
      item.className = a.id === null ? "saving" : "";
      return item;
    });
    const list = $("accepted");
    list.replaceChildren(...items);
    if (!items.length) list.textContent = "none yet";
  }

  /** What tests read (window.segany.state()): the image, prompts, masks and the message. */
  snapshot(open: Open | null): Record<string, unknown> {
    const step = open?.prompter.current();
    return {
      imageId: open?.task.image_id ?? null,
      name: open?.task.name ?? null,
      width: open?.task.width ?? 0,
      height: open?.task.height ?? 0,
      gear: open?.task.gear ?? 0,
      points: step?.points ?? [],
      box: step?.box ?? null,
      steps: open?.prompter.history.length ?? 0,
      accepted: open?.accepted.map((a) => ({ id: a.id, annotator: a.annotator, area: a.area })) ?? [],
      proposals: open?.proposals.map((p) => ({ id: p.id, rejected: p.rejected })) ?? [],
      message: this.messageText(),
      error: this.isError(),
    };
  }

  asking(): boolean {
    return this.dialog.open;
  }

  /** Ask for the annotator's name until one is given. */
  askName(current: string): Promise<string> {
    const input = $<HTMLInputElement>("annotator-name");
    input.value = current;
    this.dialog.showModal();
    return new Promise((resolve) => {
      const form = $<HTMLFormElement>("name-form");
      const submitted = (event: SubmitEvent) => {
        const name = input.value.trim();
        if (!name) {
          event.preventDefault();
          return;
        }
        form.removeEventListener("submit", submitted);
        this.dialog.removeEventListener("cancel", refuse);
        resolve(name);
      };
      const refuse = (event: Event) => event.preventDefault(); // Esc does not skip the name
      form.addEventListener("submit", submitted);
      this.dialog.addEventListener("cancel", refuse);
    });
  }
}

function row(colour: Colour, text: string): HTMLLIElement {
  const item = document.createElement("li");
  const swatch = document.createElement("i");
  swatch.className = "swatch";
  swatch.style.background = css(colour);
  const label = document.createElement("span");
  label.textContent = text;
  item.append(swatch, label);
  return item;
}
