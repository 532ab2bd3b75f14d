import { defineConfig } from "vite";

// base './': the built page uses relative URLs, so dist/ works from any path (an iframe, a sub-path, a file server).
export default defineConfig({
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 1000 },
  server: { port: 3002, strictPort: false },
});
