# Both binaries in one image; the compose file picks the command.
# The base images are build arguments so that a machine without Docker Hub can build this file
# against local equivalents (deploy/container/check.sh makes them with debootstrap); the defaults
# are the Docker Hub images.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --features tls --bins

FROM ${RUNTIME_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/confab /src/target/release/confab-worker /usr/local/bin/
USER nobody
EXPOSE 8080
CMD ["confab", "ingress"]
