// Distinct colours for many masks: hues a golden angle apart.

import type { Colour } from "./stage";

/** A saturated colour of `hue` degrees. */
export function hsl(hue: number): Colour {
  const f = (n: number) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (0.55 - 0.45 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

/** The `i`-th colour of a sequence of well separated hues. */
export function nthColour(i: number): Colour {
  return hsl((i * 137.508) % 360);
}
