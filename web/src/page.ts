// What the explore and video pages share around their own logic: elements by id, the message
// line (#message), running work with its error shown there, and the file the user opens (from
// the #file picker or dropped anywhere on the page).

import { track } from "./busy";

/** The page's element with this id. */
export const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const messageLine = () => $<HTMLDivElement>("message");

export function showMessage(text: string, kind: "info" | "error" = "info"): void {
  const message = messageLine();
  message.textContent = text;
  message.className = kind;
}

export function showError(error: unknown): void {
  showMessage(error instanceof Error ? error.message : String(error), "error");
}

/** Track `work` (see busy.ts) and show its error, if any, on the message line. */
export function run(work: Promise<unknown>): void {
  track(work).catch(showError);
}

/** The message line as the pages' test hooks report it. */
export function messageState(): { message: string | null; error: boolean } {
  const message = messageLine();
  return { message: message.textContent, error: message.className === "error" };
}

/** Call `open` with each file the user picks in #file or drops on the page; body.dragover
 *  shows a drag in progress. */
export function onFileOpened(open: (file: File) => void): void {
  const input = $<HTMLInputElement>("file");
  input.addEventListener("change", () => {
    const file = input.files?.[0];
    if (file) open(file);
    input.value = ""; // picking the same file again must fire `change` again
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
    if (file) open(file);
  });
}
