# Both binaries in one image; the compose file picks the command.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --features tls --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/confab /src/target/release/confab-worker /usr/local/bin/
USER nobody
EXPOSE 8080
CMD ["confab", "ingress"]
