# Prometheus from Debian's package (2.42), for deploy/compose without an
# image registry (PROMETHEUS_IMAGE). Like the official image, the entrypoint
# is prometheus, so compose's flags work unchanged; wget for compose's health
# check. Runs as user prometheus, owning /prometheus (the prometheus-data
# volume).
#   docker build -f deploy/images/debian/prometheus.Dockerfile -t local/prometheus:2.42 deploy/images/debian
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o prometheus -g prometheus /prometheus
USER prometheus
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
