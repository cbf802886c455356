# redis-server from Debian's package (7.0), for deploy/compose without an
# image registry (REDIS_IMAGE). The official image turns Redis's protected
# mode off (a container is reached from other containers, not from
# loopback); redis-entrypoint does the same. Runs as user redis, owning /data
# (the redis-data volume); redis-cli for compose's health check.
#   docker build -f deploy/images/debian/redis.Dockerfile -t local/redis:7.0 deploy/images/debian
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o redis -g redis /data
COPY redis-entrypoint /usr/local/bin/redis-entrypoint
USER redis
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["redis-entrypoint"]
CMD ["redis-server"]
