import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    // End-to-end tests share one store and one registry: run files one after another.
    fileParallelism: false,
    globalSetup: ["test/global-setup.ts"],
  },
});
