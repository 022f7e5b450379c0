// Builds the page into the Python package's static folder, which `segany serve` serves.
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
  },
});
