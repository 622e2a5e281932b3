# syntax=docker/dockerfile:1
# Image for the project's Node services (compose: `setup`, `loader`; processors and serving as
# they land). tsx runs the TypeScript sources directly, so there is no build stage: `deps`
# installs production dependencies from the lock file, `runtime` adds the sources on top.

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev: tsx is a regular dependency; linters, vitest and tsc are not needed at runtime.
# --ignore-scripts: the root `prepare` hook installs git hooks (meaningless here); no production
# dependency needs an install script (esbuild's binary arrives as an optional dependency).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
  && npm cache clean --force

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
# Every source folder but stack/ (the local launcher: compose runs the real services), demo/,
# bench/ and test/.
COPY common ./common
COPY schemas ./schemas
COPY features ./features
COPY streams ./streams
COPY embeddings ./embeddings
COPY processors ./processors
COPY models ./models
COPY serving ./serving
COPY training ./training
COPY evaluation ./evaluation
# The image's built-in unprivileged user; the sources stay root-owned and read-only to it.
USER node
# Each compose service picks its entry point, e.g. `npx tsx streams/setup-cli.ts`.
CMD ["npx", "tsx", "streams/setup-cli.ts"]
