# syntax=docker/dockerfile:1
# One image for every Parley role (PARLEY_ROLES=broker | api | workers, or all): compiled
# JavaScript on Node 20, production dependencies only, run as the unprivileged `node` user.
# Stages: deps (all dependencies) -> build (tsc: the SDK, then broker and services into dist/, and
# the dashboard page's HTML and CSS beside its compiled module; uPlot comes with the runtime
# dependencies) -> prod-deps (runtime dependencies, native modules built here) -> runtime.

FROM node:20-bookworm-slim AS deps
WORKDIR /app
# better-sqlite3 may compile when no prebuilt binary matches.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY client-sdk/package.json client-sdk/
RUN npm ci --no-audit --no-fund

FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY types types
COPY client-sdk client-sdk
COPY broker broker
COPY services services
COPY scripts scripts
RUN npm run build

FROM deps AS prod-deps
RUN npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production PARLEY_DATA_DIR=/data PARLEY_HOST=0.0.0.0
WORKDIR /app
COPY --from=prod-deps /app/node_modules node_modules
COPY package.json ./
COPY client-sdk/package.json client-sdk/
COPY --from=build /app/client-sdk/dist client-sdk/dist
COPY --from=build /app/dist dist
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 1883 8083 8080 9100
# Liveness of whatever this container runs: the API's /healthz, or the metrics listener's.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["node", "dist/scripts/healthcheck.js"]
CMD ["node", "dist/services/src/main.js"]
