# supaplane-console: the web console and its gRPC-Web bridge (console/).
#   docker build -f deploy/images/console.Dockerfile -t supaplane/console:dev .
# Built with `npm ci && npm run build` (console/package.json); the server is
# bundled into dist/server/server.mjs with @grpc/grpc-js inside, so the
# runtime stage needs only Node.js and dist/, no node_modules.
#
# The build stage runs on bookworm with Debian's nodejs (18.20) and npm:
# npm ci warns that @bufbuild/protoc-gen-es and playwright-core ask for
# Node >= 20, but the code generation, tsc, esbuild and the unit tests run
# on 18 (checked in this image with node_modules from the host: the same
# generated code). It needs the npm registry reachable from the build.
# Behind a proxy that re-signs TLS with its own CA, give the build stage that
# CA (PEM text, one or more certificates):
#   docker build --build-arg EXTRA_CA_CERTS="$(cat proxy-ca.crt)" -f deploy/images/console.Dockerfile .
# deploy/images/console-from-host builds the runtime stage below from a
# dist/ built on the host instead (no npm in docker).

# ---- build: npm ci, protoc + protoc-gen-es, tsc, esbuild -> /out/dist ----
# libprotobuf-dev: google/protobuf/timestamp.proto and the other well-known
# types the API's .proto files import.
FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm ca-certificates protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
# EXTRA_CA_CERTS joins Debian's CA bundle of this stage only: the runtime
# stage starts from its own base and copies nothing but dist/ from here, so
# neither the certificates nor the build argument reach the shipped image.
# npm trusts the bundle through NODE_EXTRA_CA_CERTS (Node.js otherwise
# trusts only the CAs compiled into it).
ARG EXTRA_CA_CERTS=""
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
      case $EXTRA_CA_CERTS in *"-----BEGIN CERTIFICATE-----"*) ;; \
        *) echo "EXTRA_CA_CERTS holds no PEM certificate (-----BEGIN CERTIFICATE-----)" >&2; exit 1 ;; esac; \
      printf '%s\n' "$EXTRA_CA_CERTS" >/usr/local/share/ca-certificates/build-extra.crt \
      && update-ca-certificates >/dev/null; \
    fi
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
WORKDIR /src
# proto/ feeds the console's code generation (npm run gen).
COPY proto proto
COPY console/package.json console/package-lock.json console/
RUN cd console && npm ci --no-audit --no-fund
COPY console console
RUN cd console && SUPAPLANE_CONSOLE_DIST=/out/dist npm run build

# ---- runtime: Debian's Node.js 18 and the bundle, non-root -------------
# deploy/images/console-from-host builds this stage, from the FROM line below
# to the end of the file unchanged, on top of a stage that holds a dist/
# built on the host in /out/dist.
# apt-get clean: a base image without the official images' docker-clean apt
# hook would otherwise keep the .debs and apt's package caches, 100 MB, in
# this layer (Debian's images and those of scripts/docker-base-images have
# the hook).
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 supaplane \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin supaplane
WORKDIR /app
# Owned by root, readable by all: the server writes nothing, so the container
# runs on a read-only root (compose: read_only) with no volume.
COPY --from=build /out/dist ./dist
USER 10001:10001
ENV NODE_ENV=production \
    SUPAPLANE_CONSOLE_ADDR=0.0.0.0:3000 \
    SUPAPLANE_API_ADDR=api:50051
EXPOSE 3000
# Node 18's global fetch (it prints an ExperimentalWarning, harmless here).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:3000/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/server/server.mjs"]
