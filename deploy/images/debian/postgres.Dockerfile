# PostgreSQL 15 from Debian's packages, for deploy/compose without an image
# registry (POSTGRES_IMAGE). postgres-entrypoint does what the official
# image's entrypoint does with the settings compose uses: on an empty
# PGDATA (/var/lib/postgresql/data, the postgres-data volume) it runs initdb
# with POSTGRES_PASSWORD for POSTGRES_USER (postgres), password
# (scram-sha-256) authentication for TCP, and creates POSTGRES_DB; then it
# runs postgres listening on all addresses. Runs as user postgres.
#   docker build -f deploy/images/debian/postgres.Dockerfile -t local/postgres:15 deploy/images/debian
FROM debian:bookworm-slim
# Debian's package would create a cluster in /var/lib/postgresql/15/main: the
# entrypoint makes its own in PGDATA instead.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common \
 && sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
COPY postgres-entrypoint /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["postgres-entrypoint"]
CMD ["postgres"]
