#!/usr/bin/env bash
# CI check of the Dockerfile: build the image with podman and run one turn through it.
#
# The CI machines have no Docker engine and cannot reach Docker Hub (or any image registry), but
# Debian's podman runs on them. So this script:
#   1. installs podman, runc and debootstrap from Debian if podman is missing;
#   2. makes local stand-ins for the Dockerfile's two base images with debootstrap (a minbase
#      Debian bookworm, and the same with a C toolchain and the host's Rust toolchain copied in),
#      caching the rootfs tarballs under target/container/ so later runs skip it;
#   3. builds the repository's Dockerfile with those as RUST_IMAGE / RUNTIME_IMAGE (the build stage
#      runs the real `cargo build --release`, fetching crates from crates.io);
#   4. runs `confab migrate`, `confab ingress` and `confab-worker` from the image against the host's
#      Postgres and RabbitMQ (--network host), in a fresh database and queue prefix, and sends one
#      JSON and one SSE turn through them;
#   5. removes the containers, the database and the prefix's queues and exchanges on exit. The
#      images and the cache are kept, so a second run reuses the layers (no rebuild unless the
#      sources changed).
# Runs as root (apt-get, debootstrap, rootful podman), from any directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=$ROOT/target/container
mkdir -p "$CACHE"

log() { echo "container-check: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

MIRROR=${CONFAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PG_HOST=${CONFAB_CHECK_PG_HOST:-127.0.0.1}
AMQP_URL=${CONFAB_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

# --- 1. tools -------------------------------------------------------------------------------------
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  log "installing from Debian: ${missing[*]}"
  # apt-get update only warns about an unreachable mirror; --error-on=any makes it fail.
  apt-get update -qq --error-on=any \
    || die "apt-get update could not reach its mirror; cannot install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi
command -v psql >/dev/null || die "psql is needed (the host's Postgres client)"
command -v rabbitmqctl >/dev/null || die "rabbitmqctl is needed (the host's RabbitMQ)"
command -v rustc >/dev/null || die "rustc is needed: the build base image gets the host's toolchain"

# crun (podman's default) fails here ("cgroups in hybrid mode not supported"), and the default
# ulimits are more than a container may set (RLIMIT_NOFILE not permitted); this configuration
# uses runc, cgroupfs and limits that work, and affects only this script's podman calls.
cat >"$CACHE/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$CACHE/containers.conf

# --- 2. base images -------------------------------------------------------------------------------
RUST_VERSION=$(rustc --version | awk '{print $2}')  # e.g. 1.95.0
RUST_MINOR=${RUST_VERSION%.*}                         # e.g. 1.95
RUNTIME_BASE=localhost/confab-base/debian:bookworm-slim
BUILD_BASE=localhost/confab-base/rust:$RUST_MINOR-bookworm
IMAGE=localhost/confab:check
BUILD_PACKAGES=ca-certificates,gcc,g++,libc6-dev,pkg-config,make

# A debootstrapped bookworm as a tarball in the cache (made once; ~30 s and ~200 MB each).
rootfs_tarball() {
  local tarball=$1 include=$2
  if [[ ! -s $tarball ]]; then
    local dir
    dir=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    log "debootstrap bookworm ${include:+(with $include) }into $tarball"
    debootstrap --variant=minbase ${include:+--include=$include} bookworm "$dir" "$MIRROR" \
      >"$CACHE/debootstrap.log" 2>&1 \
      || { rm -rf "$dir"; die "debootstrap failed (is $MIRROR reachable?); see $CACHE/debootstrap.log"; }
    tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$dir"
  fi
}

if ! podman image exists "$RUNTIME_BASE"; then
  rootfs_tarball "$CACHE/bookworm-minbase.tar" ""
  log "importing $RUNTIME_BASE"
  podman import -q "$CACHE/bookworm-minbase.tar" "$RUNTIME_BASE" >/dev/null
fi

if ! podman image exists "$BUILD_BASE"; then
  rootfs_tarball "$CACHE/bookworm-build.tar" "$BUILD_PACKAGES"
  # The host's toolchain is rustup-managed; its sysroot holds real rustc and cargo binaries
  # (not rustup's proxies) that find their libraries relative to themselves, so the directory
  # works wherever it is copied. Its documentation (share/doc, ~800 MB) is left out.
  sysroot=$(rustc --print sysroot)
  dir=$(mktemp -d "$CACHE/rust-base.XXXXXX")
  log "importing $BUILD_BASE (bookworm + $BUILD_PACKAGES + Rust $RUST_VERSION from $sysroot)"
  tar -C "$dir" -xf "$CACHE/bookworm-build.tar"
  mkdir -p "$dir/usr/local/rust"
  tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$dir/usr/local/rust" -xf -
  # The host's CA bundle too: cargo fetches crates over HTTPS, and where the egress goes through
  # a TLS-intercepting proxy (as on the CI machines) only the host's bundle trusts its CA.
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  tar -C "$dir" --numeric-owner -cf - . \
    | podman import -q \
      --change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$BUILD_BASE" >/dev/null
  rm -rf "$dir"
fi
podman run --rm --network none "$BUILD_BASE" /usr/local/rust/bin/cargo --version >/dev/null \
  || die "cargo does not run inside $BUILD_BASE"

# --- 3. the image ---------------------------------------------------------------------------------
log "podman build -t $IMAGE (RUST_IMAGE=$BUILD_BASE, RUNTIME_IMAGE=$RUNTIME_BASE)"
start=$SECONDS
# --pull=never: the bases are the local images above; nothing may come from a registry.
podman build --pull=never \
  --build-arg "RUST_IMAGE=$BUILD_BASE" --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE" \
  -t "$IMAGE" . >"$CACHE/build.log" 2>&1 \
  || { tail -n 40 "$CACHE/build.log" >&2; die "podman build failed; the whole log is $CACHE/build.log"; }
log "image built in $((SECONDS - start)) s"

# --- 4. one turn through it -----------------------------------------------------------------------
RUN_ID=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
DB=confab_container_$RUN_ID
PREFIX=confab_container_$RUN_ID
DB_URL=postgres://postgres@$PG_HOST:5432/$DB
CONTAINERS=()

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=
for _ in $(seq 1 50); do
  candidate=$((20000 + RANDOM % 20000))
  port_open "$candidate" || { PORT=$candidate; break; }
done
[[ -n $PORT ]] || die "no free port found"
BASE_URL=http://127.0.0.1:$PORT

psql_admin() { psql -h "$PG_HOST" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
  local status=$?
  if ((status != 0)); then
    for c in "${CONTAINERS[@]}"; do
      log "last log lines of $c:"
      podman logs --tail 20 "$c" >&2 2>&1 || true
    done
  fi
  for c in "${CONTAINERS[@]}"; do
    podman rm -f -t 5 "$c" >/dev/null 2>&1 || true
  done
  psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 \
    || log "could not drop database $DB"
  local name  # (rabbitmqctl reads stdin: each call gets </dev/null, or it eats the list)
  rabbitmqctl -q list_queues name 2>/dev/null | grep "^$PREFIX\." | while read -r name; do
    rabbitmqctl -q delete_queue "$name" </dev/null >/dev/null 2>&1 || log "could not delete queue $name"
  done || true
  rabbitmqctl -q list_exchanges name 2>/dev/null | grep "^$PREFIX\." | while read -r name; do
    rabbitmqctl -q eval \
      "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$name\">>), false, <<\"cli\">>)." \
      </dev/null >/dev/null 2>&1 || log "could not delete exchange $name"
  done || true
  exit "$status"
}
trap cleanup EXIT

ENV_ARGS=(-e "CONFAB_DATABASE_URL=$DB_URL" -e "CONFAB_AMQP_URL=$AMQP_URL"
  -e "CONFAB_QUEUE_PREFIX=$PREFIX" -e "RUST_LOG=${RUST_LOG:-info}")

log "database $DB, queue prefix $PREFIX, ingress on $BASE_URL"
psql_admin -c "CREATE DATABASE $DB" >/dev/null
podman run --rm --network host "${ENV_ARGS[@]}" "$IMAGE" confab migrate >/dev/null 2>"$CACHE/migrate.log" \
  || { cat "$CACHE/migrate.log" >&2; die "confab migrate failed"; }
KEY=$(podman run --rm --network host "${ENV_ARGS[@]}" "$IMAGE" \
  confab admin create-tenant --name container-check 2>/dev/null | jq -r .api_key)
[[ -n $KEY && $KEY != null ]] || die "confab admin create-tenant printed no api_key"

CONTAINERS+=("confab-check-ingress-$RUN_ID")
podman run -d --name "confab-check-ingress-$RUN_ID" --network host "${ENV_ARGS[@]}" \
  -e "CONFAB_LISTEN=127.0.0.1:$PORT" "$IMAGE" confab ingress >/dev/null
CONTAINERS+=("confab-check-worker-$RUN_ID")
podman run -d --name "confab-check-worker-$RUN_ID" --network host "${ENV_ARGS[@]}" \
  "$IMAGE" confab-worker --concurrency 4 >/dev/null

ready=
for _ in $(seq 1 60); do
  if curl -fsS -o /dev/null "$BASE_URL/readyz" 2>/dev/null; then ready=1; break; fi
  sleep 1
done
[[ -n $ready ]] || die "the ingress did not become ready on $BASE_URL/readyz within 60 s"

api() {
  curl -sS --max-time 60 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' "$@"
}
assistant=$(api -X POST "$BASE_URL/v1/assistants" \
  -d '{"name":"Support","instructions":"Our business hours are 9:00 to 17:00."}')
SLUG=$(jq -r .slug <<<"$assistant")
[[ -n $SLUG && $SLUG != null ]] || die "POST /v1/assistants answered: $assistant"

answer=$(api -X POST "$BASE_URL/v1/api/chat/$SLUG" -d '{"message":"What are your business hours?"}')
response=$(jq -r '.data.response // empty' <<<"$answer")
[[ -n $response ]] || die "the JSON turn answered: $answer"
log "JSON turn: $response"

stream=$(api -N -X POST "$BASE_URL/v1/api/chat/$SLUG" \
  -d '{"message":"What are your business hours?","stream":true}')
last=$(grep '^data:' <<<"$stream" | tail -n 1)
[[ $last == 'data: [DONE]' ]] || die "the SSE turn did not end in data: [DONE]: $stream"
chunks=$(grep '^data: {' <<<"$stream" | sed 's/^data: //' | jq -rj '.chunk // empty')
[[ -n $chunks ]] || die "the SSE turn carried no chunks: $stream"
log "SSE turn: $chunks"
log "OK: the image built and answered a JSON and an SSE turn"
