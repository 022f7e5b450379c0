// Files the pages hand to the user.

/** The name without its extension (`fallback` when nothing is left). */
export function baseName(name: string, fallback: string): string {
  return name.replace(/\.[^.]*$/, "") || fallback;
}

/** Save `blob` as a download named `file`. */
export function saveBlob(blob: Blob, file: string): void {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = file;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
