// What the page is busy with (uploads, decoder runs, saves): `track` a promise, `idle()` waits
// until nothing is in flight. body[data-busy] shows it; tests and benchmarks wait on idle().

declare global {
  interface Window {
    segany: unknown; // each page's hooks for tests and benchmarks (read-only views, idle())
  }
}

let pending = 0;
let idleWaiters: (() => void)[] = [];

export async function track<T>(work: Promise<T>): Promise<T> {
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

export function idle(): Promise<void> {
  return pending === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve));
}
