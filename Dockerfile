# syntax=docker/dockerfile:1
#
# Herald container image.
#   build:   compiles TypeScript with the full dev toolchain
#   deps:    installs production dependencies only (npm ci --omit=dev)
#   runtime: dist/ + production node_modules on node:alpine, as the unprivileged
#            `node` user, with node itself as PID 1 so SIGTERM starts the drain.
#
#   docker build -t herald:0.1.0 .
#   docker run --rm -p 3000:3000 -e JWT_SECRET=… -e API_KEYS=… -e REDIS_URL=redis://… herald:0.1.0

ARG NODE_VERSION=22

FROM node:${NODE_VERSION}-alpine AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# The server only: packages/ (the SDK and publisher for npm) is not in the image.
RUN npm run build:server

FROM node:${NODE_VERSION}-alpine AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: no production dependency needs one (none is native).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM node:${NODE_VERSION}-alpine AS runtime
# Production mode: the node refuses to boot without JWT_SECRET / JWT_PUBLIC_KEY /
# JWKS_URL, listens on 0.0.0.0 and allows no browser Origin unless ALLOWED_ORIGINS says so.
ENV NODE_ENV=production \
    PORT=3000
WORKDIR /app
# Files stay owned by root and read-only to the app user.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
USER node
EXPOSE 3000
# Readiness: 200 when the node serves and reaches Redis, 503 while draining or cut off.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/ws/health').then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
# Exec form: node is PID 1 and receives SIGTERM itself (no shell, no npm in between).
# It drains: readiness 503, upgrades refused, connections closed with 1001 over
# DRAIN_TIMEOUT, exit 0. Give the container DRAIN_TIMEOUT + 10 s to stop.
CMD ["node", "dist/main.js"]
