import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', '.stack/**'],
    allowOnly: false,
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    // Integration suites share one broker and one Redis; run files one at a time so timing
    // assertions are not starved on a 2-core machine.
    fileParallelism: false,
  },
});
