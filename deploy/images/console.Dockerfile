# supaplane-console: the web console and its gRPC-Web bridge (console/).
#   docker build -f deploy/images/console.Dockerfile -t supaplane/console:dev .
# Built with `npm ci && npm run build` (console/package.json); the server is
# bundled into console/dist, so the runtime stage needs only Node.js and dist.
# Node.js from Debian (bookworm: 18.x; console/package.json asks for >= 18).

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm ca-certificates protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# proto/ feeds the console's code generation (npm run gen).
COPY proto proto
COPY console/package.json console/package-lock.json console/
RUN cd console && npm ci --no-audit --no-fund
COPY console console
RUN cd console && npm run build && npm prune --omit=dev

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 supaplane \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin supaplane
WORKDIR /app
COPY --from=build /src/console/package.json ./
COPY --from=build /src/console/dist ./dist
USER 10001:10001
ENV NODE_ENV=production \
    SUPAPLANE_CONSOLE_ADDR=0.0.0.0:3000 \
    SUPAPLANE_API_ADDR=api:50051
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:3000/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/server/server.mjs"]
