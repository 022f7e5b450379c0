// Builds the pages into the Python package's static folder, which `segany serve` serves: the
// explore page (index.html), the annotation page (annotate.html, `segany annotate`) and the
// video page (video.html).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: fileURLToPath(new URL("../src/segany/server/static", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    // onnxruntime-web's wasm binary is ~14 MB: no warning for it, and never inlined.
    chunkSizeWarningLimit: 1024,
    assetsInlineLimit: 0,
    rollupOptions: {
      input: {
        index: fileURLToPath(new URL("index.html", import.meta.url)),
        annotate: fileURLToPath(new URL("annotate.html", import.meta.url)),
        video: fileURLToPath(new URL("video.html", import.meta.url)),
      },
    },
  },
});
