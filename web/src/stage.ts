// The stage: the image, a mask overlay and the prompts (SVG) in image pixels, scaled to fit;
// pointer input goes to the current tool in image coordinates. `PromptGestures` is the tool
// of clicks (foreground, Alt- or right-click background) and dragged boxes.

import type { Box, Point } from "./geometry";

export type Colour = [number, number, number];
export interface Layer {
  mask: Uint8Array; // row-major, 1 inside
  colour: Colour;
  alpha: number; // 0-255
  outline?: Colour; // its edge drawn opaque in this colour: it stands out on a like-coloured object
}
export interface XY {
  x: number;
  y: number;
}

/** What the stage's pointer input drives (coordinates in image pixels). */
export interface Tool {
  down?(p: XY, event: PointerEvent): void;
  move?(p: XY, event: PointerEvent): void;
  up?(p: XY, event: PointerEvent): void;
  leave?(): void;
  context?(p: XY, event: MouseEvent): void;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export class Stage {
  width = 0;
  height = 0;
  tool: Tool = {};
  onLayout: () => void = () => undefined; // redraw what depends on the scale
  readonly svg: SVGSVGElement;

  constructor(
    private readonly box: HTMLDivElement,
    private readonly area: HTMLElement,
    private readonly imageCanvas: HTMLCanvasElement,
    private readonly overlay: HTMLCanvasElement,
    svg: SVGSVGElement,
  ) {
    this.svg = svg;
    const input = (handler: (p: XY, event: PointerEvent) => void) => (event: PointerEvent) => {
      if (this.width) handler(this.imagePoint(event), event);
    };
    svg.addEventListener("pointerdown", input((p, e) => this.tool.down?.(p, e)));
    svg.addEventListener("pointermove", input((p, e) => this.tool.move?.(p, e)));
    svg.addEventListener("pointerup", input((p, e) => this.tool.up?.(p, e)));
    svg.addEventListener("pointerleave", () => this.tool.leave?.());
    svg.addEventListener("contextmenu", (event) => {
      event.preventDefault();
      if (this.width) this.tool.context?.(this.imagePoint(event), event);
    });
    window.addEventListener("resize", () => this.layout());
  }

  /** The stage of a page with the usual elements: #stage in #stage-area, holding the
   *  #image and #overlay canvases and the #prompts SVG. */
  static ofPage(): Stage {
    const get = <T>(id: string) => document.getElementById(id) as T;
    return new Stage(
      get<HTMLDivElement>("stage"),
      get<HTMLDivElement>("stage-area"),
      get<HTMLCanvasElement>("image"),
      get<HTMLCanvasElement>("overlay"),
      get<SVGSVGElement>("prompts"),
    );
  }

  /** Show a picture of `width` x `height` pixels (and nothing painted over it). */
  show(picture: CanvasImageSource, width: number, height: number): void {
    for (const canvas of [this.imageCanvas, this.overlay]) {
      canvas.width = width;
      canvas.height = height;
    }
    this.imageCanvas.getContext("2d")!.drawImage(picture, 0, 0);
    this.width = width;
    this.height = height;
    this.box.hidden = false;
    this.layout();
  }

  hide(): void {
    this.box.hidden = true;
    this.width = this.height = 0;
  }

  layout(): void {
    if (!this.width) return;
    const area = this.area.getBoundingClientRect();
    const maxWidth = Math.max(200, area.width);
    const maxHeight = Math.max(200, window.innerHeight - area.top - 60);
    const scale = Math.min(maxWidth / this.width, maxHeight / this.height, 4);
    this.box.style.width = `${Math.round(this.width * scale)}px`;
    this.box.style.height = `${Math.round(this.height * scale)}px`;
    this.svg.setAttribute("viewBox", `0 0 ${this.width} ${this.height}`);
    this.svg.setAttribute("preserveAspectRatio", "none");
    this.onLayout();
  }

  /** Image pixels per CSS pixel. */
  scale(): number {
    return this.width / this.svg.getBoundingClientRect().width || 1;
  }

  imagePoint(event: MouseEvent): XY {
    const rect = this.svg.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * this.width;
    const y = ((event.clientY - rect.top) / rect.height) * this.height;
    return { x: Math.max(0, Math.min(this.width, x)), y: Math.max(0, Math.min(this.height, y)) };
  }

  /** Paint masks over the image, later layers over earlier ones. */
  paint(layers: readonly Layer[]): void {
    if (!this.width) return;
    const context = this.overlay.getContext("2d")!;
    const data = context.createImageData(this.width, this.height);
    const rgba = data.data;
    const { width, height } = this;
    for (const { mask, colour, alpha, outline } of layers) {
      for (let i = 0; i < mask.length; i++) {
        if (mask[i]) {
          const o = 4 * i;
          const edge = outline !== undefined && onEdge(mask, i, width, height);
          const rgb = edge ? outline : colour;
          rgba[o] = rgb[0];
          rgba[o + 1] = rgb[1];
          rgba[o + 2] = rgb[2];
          rgba[o + 3] = edge ? 255 : alpha;
        }
      }
    }
    context.putImageData(data, 0, 0);
  }

  /** Draw the points and box of the current object (`dashed`: a box being dragged), and a
   *  brush outline. */
  drawPrompts(points: readonly Point[], box: Box | null, dashed = false, brush: (XY & { r: number }) | null = null): void {
    const svg = this.svg;
    svg.replaceChildren();
    if (!this.width) return;
    const scale = this.scale();
    const add = (tag: string, attributes: Record<string, string | number>) => {
      const element = document.createElementNS(SVG_NS, tag);
      for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
      svg.appendChild(element);
    };
    if (box) {
      add("rect", {
        x: box[0],
        y: box[1],
        width: box[2] - box[0],
        height: box[3] - box[1],
        fill: "none",
        stroke: "#ffc800",
        "stroke-width": 2 * scale,
        "stroke-dasharray": dashed ? `${4 * scale}` : "none",
      });
    }
    for (const p of points) {
      add("circle", {
        cx: p.x,
        cy: p.y,
        r: 5 * scale,
        fill: p.label ? "#00dc00" : "#e61e1e",
        stroke: "#fff",
        "stroke-width": 1.5 * scale,
      });
    }
    if (brush) {
      add("circle", { cx: brush.x, cy: brush.y, r: brush.r, fill: "none", stroke: "#fff", "stroke-width": 1.5 * scale });
    }
  }
}

/** Whether pixel `i` of a mask (inside) has a 4-neighbour outside it or the image. */
function onEdge(mask: Uint8Array, i: number, width: number, height: number): boolean {
  const x = i % width;
  return (
    x === 0 || x === width - 1 || i < width || i >= (height - 1) * width ||
    !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width]
  );
}

export function loadPicture(url: string): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const picture = new Image();
    picture.onload = () => resolve(picture);
    picture.onerror = () => reject(new Error("cannot load the image from the server"));
    picture.src = url;
  });
}

export type ClickKind = "left" | "alt" | "right";

export interface GestureHandlers {
  click(p: XY, how: ClickKind): void;
  box(box: Box): void;
  /** The box being dragged, or null when a drag ended too small to be a box. */
  preview(box: Box | null): void;
  hover?(p: XY): void;
  leave?(): void;
  dragAllowed?(): boolean;
}

const DRAG_THRESHOLD = 5; // CSS pixels before a press becomes a box

export function boxFrom(a: XY, b: XY): Box {
  return [Math.min(a.x, b.x), Math.min(a.y, b.y), Math.max(a.x, b.x), Math.max(a.y, b.y)];
}

/** Clicks and dragged boxes on the stage. */
export class PromptGestures implements Tool {
  private press: (XY & { clientX: number; clientY: number; dragging: boolean }) | null = null;

  constructor(
    private readonly stage: Stage,
    private readonly on: GestureHandlers,
  ) {}

  down(p: XY, event: PointerEvent): void {
    if (event.button !== 0) return;
    this.stage.svg.setPointerCapture(event.pointerId);
    this.press = { ...p, clientX: event.clientX, clientY: event.clientY, dragging: false };
  }

  move(p: XY, event: PointerEvent): void {
    const press = this.press;
    if (!press) {
      this.on.hover?.(p);
      return;
    }
    const moved = Math.hypot(event.clientX - press.clientX, event.clientY - press.clientY);
    if (moved > DRAG_THRESHOLD && (this.on.dragAllowed?.() ?? true)) press.dragging = true;
    if (press.dragging) this.on.preview(boxFrom(press, p));
  }

  up(p: XY, event: PointerEvent): void {
    const start = this.press;
    if (!start || event.button !== 0) return;
    this.press = null;
    if (!start.dragging) {
      this.on.click(p, event.altKey ? "alt" : "left");
      return;
    }
    const box = boxFrom(start, p);
    if (box[2] - box[0] < 2 || box[3] - box[1] < 2) this.on.preview(null);
    else this.on.box(box);
  }

  leave(): void {
    this.on.leave?.();
  }

  context(p: XY): void {
    this.on.click(p, "right");
  }
}
