# nats-server from Debian's package (2.9.10), for deploy/compose without an
# image registry (NATS_IMAGE). Like the official image, the entrypoint is
# nats-server, so compose's `command: ["-c", ...]` works unchanged; wget for
# compose's health check. Runs as the unprivileged user nats, owning /data
# (the nats-data volume).
#   docker build -f deploy/images/debian/nats.Dockerfile -t local/nats:2.9 deploy/images/debian
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nats-server wget \
 && rm -rf /var/lib/apt/lists/* \
 && (getent passwd nats >/dev/null || useradd --system --home-dir /data --shell /usr/sbin/nologin nats) \
 && install -d -o nats -g nats /data
USER nats
EXPOSE 4222 8222
ENTRYPOINT ["nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
