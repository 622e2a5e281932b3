# syntax=docker/dockerfile:1
# Image for the project's Node services (compose: `setup`, `loader`; processors and serving as
# they land). tsx runs the TypeScript sources directly, so there is no build stage: `deps`
# installs production dependencies from the lock file, `runtime` adds the sources on top.
# `trainer` (`docker build --target trainer`) adds Python and the pinned venv for the training
# cycle (deploy/: the CronJob and the ECS scheduled task run it as fashion-recsys:<tag>-trainer).
# The default target stays the Node-only image (`app`, the last stage).

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

# The trainer: the runtime plus Python 3 (Debian's 3.11) and training/requirements.txt in /app/.venv,
# stamped as training/venv.ts expects, so a cycle never runs pip. libgomp1: LightGBM's OpenMP.
FROM runtime AS trainer
USER root
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 python3-venv libgomp1 \
  && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /app/.venv \
  && /app/.venv/bin/pip install --no-cache-dir --disable-pip-version-check -r training/requirements.txt \
  && sha256sum training/requirements.txt | cut -d' ' -f1 > /app/.venv/.requirements.sha256
USER node
CMD ["node", "--import", "tsx", "training/train-cli.ts", "--once", "--no-progress"]

# The default target: the Node services' image, as `runtime`.
FROM runtime AS app
