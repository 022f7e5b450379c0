// The frames of an opened video: loaded once each (JPEG from the server) and kept, shown one
// at a time, and played at the clip's rate (at most 30 frames a second).

import { loadPicture } from "./stage";
import { frameUrl, type VideoInfo } from "./videoApi";

const MAX_FPS = 30;
const PRELOAD_AT_ONCE = 4;

export class FramePlayer {
  index = 0;
  playing = false;
  private readonly pictures = new Map<number, Promise<HTMLImageElement>>();
  private shown = 0; // the latest show() call: an earlier one finishing later is dropped
  private timer: number | undefined;

  constructor(
    readonly video: VideoInfo,
    private readonly onFrame: (index: number, picture: HTMLImageElement) => void,
    private readonly onPlaying: (playing: boolean) => void = () => undefined,
  ) {}

  picture(index: number): Promise<HTMLImageElement> {
    let picture = this.pictures.get(index);
    if (!picture) {
      picture = loadPicture(frameUrl(this.video, index));
      picture.catch(() => this.pictures.delete(index)); // a later call tries again
      this.pictures.set(index, picture);
    }
    return picture;
  }

  /** Load every frame in the background, a few at a time, in order. */
  async preload(): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < this.video.frames) await this.picture(next++).catch(() => undefined);
    };
    await Promise.all(Array.from({ length: PRELOAD_AT_ONCE }, worker));
  }

  /** Show frame `index` (clamped to the clip) once its picture is there. */
  async show(index: number): Promise<void> {
    const target = Math.max(0, Math.min(this.video.frames - 1, Math.round(index)));
    const call = ++this.shown;
    const picture = await this.picture(target);
    if (call !== this.shown) return;
    this.index = target;
    this.onFrame(target, picture);
  }

  play(): void {
    if (this.playing) return;
    this.playing = true;
    this.onPlaying(true);
    if (this.index >= this.video.frames - 1) this.index = -1; // from the start again
    const interval = 1000 / Math.min(MAX_FPS, this.video.fps > 0 ? this.video.fps : MAX_FPS);
    const tick = async () => {
      if (!this.playing) return;
      const started = performance.now();
      await this.show(this.index + 1);
      if (this.index >= this.video.frames - 1) {
        this.pause();
        return;
      }
      this.timer = window.setTimeout(tick, Math.max(0, interval - (performance.now() - started)));
    };
    void tick();
  }

  pause(): void {
    if (!this.playing) return;
    this.playing = false;
    window.clearTimeout(this.timer);
    this.onPlaying(false);
  }

  toggle(): void {
    if (this.playing) this.pause();
    else this.play();
  }
}
