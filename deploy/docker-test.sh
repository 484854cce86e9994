#!/usr/bin/env bash
# Build the image and run it the way a cluster does: read-only root filesystem, an arbitrary uid in
# group 0, no capabilities, a tmpfs on /tmp. Checks /health, /ready, the metrics port, a chat call
# through a fake provider on loopback, that no wheel reached the image, and prints the image's
# size and user. Run by `make image-test`; not part of `make test` or CI.
#
# Environment:
#   BASE_IMAGE    build argument for the Dockerfile; empty (the default here): a local Debian
#                 bookworm base made with debootstrap, since these machines reach no image registry
#   DEBIAN_MIRROR mirror for debootstrap (its own default when empty)
#   IMAGE         tag of the image built (polyrelay:image-test)
#   DOCKER_DATA   data root of the Docker daemon this script starts when none answers
#                 (/var/tmp/polyrelay-docker, kept between runs as a cache)
#
# With no Docker daemon reachable, and as root, it installs Debian's docker.io and debootstrap if
# missing and starts a daemon of its own (no bridge, no iptables rules: everything runs on the host
# network, on loopback), which it stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-polyrelay:image-test}
BASE_IMAGE=${BASE_IMAGE:-}
LOCAL_BASE=polyrelay-base:bookworm
DOCKER_DATA=${DOCKER_DATA:-/var/tmp/polyrelay-docker}
state=$(mktemp -d)
started_daemon= container= fake_pid=

say() { printf '== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
  [[ -n $container ]] && docker rm --force "$container" >/dev/null 2>&1 || true
  [[ -n $fake_pid ]] && kill "$fake_pid" 2>/dev/null || true
  if [[ -n $started_daemon ]]; then
    kill "$(cat "$state/dockerd.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [[ -e $state/dockerd.pid ]] || break; sleep 0.2; done
    # The daemon leaves its network namespace mounted under its exec root.
    findmnt -rno TARGET | grep "^$state/" | sort -r | xargs -r umount 2>/dev/null || true
    rmdir /var/run/docker/plugins /var/run/docker 2>/dev/null || true  # left empty by the daemon
  fi
  rm -rf "$state"
}
trap cleanup EXIT

need_root() { [[ $(id -u) == 0 ]] || fail "$1 (run as root, or start Docker first)"; }

apt_install() {  # package for the command $1 when it is missing
  command -v "$1" >/dev/null && return
  need_root "$1 is missing"
  say "installing $2"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

start_daemon() {
  apt_install dockerd docker.io
  say "starting a Docker daemon of this script's own (data in $DOCKER_DATA)"
  mkdir -p "$DOCKER_DATA"
  export DOCKER_HOST="unix://$state/docker.sock"
  dockerd --host "$DOCKER_HOST" --data-root "$DOCKER_DATA" --exec-root "$state/exec" \
    --pidfile "$state/dockerd.pid" --bridge none --iptables=false --ip-masq=false \
    >"$state/dockerd.log" 2>&1 &
  started_daemon=1
  for _ in $(seq 100); do docker info >/dev/null 2>&1 && return; sleep 0.2; done
  cat "$state/dockerd.log" >&2
  fail "the Docker daemon did not start"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_http() {  # url, seconds: until it answers at all
  for _ in $(seq $(($2 * 5))); do
    curl -s -o /dev/null "$1" && return
    sleep 0.2
  done
  return 1
}

status_of() { curl -s -o /dev/null -w '%{http_code}' "$1" || true; }

# -- a daemon ----------------------------------------------------------------------------------
command -v docker >/dev/null || apt_install docker docker.io
apt_install curl curl
docker info >/dev/null 2>&1 || start_daemon

# -- the base ----------------------------------------------------------------------------------
if [[ -z $BASE_IMAGE ]]; then
  BASE_IMAGE=$LOCAL_BASE
  if ! docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    apt_install debootstrap debootstrap
    say "making $LOCAL_BASE with debootstrap (python3, venv, CA certificates)"
    rootfs="$state/rootfs"
    # shellcheck disable=SC2086  # an empty mirror means debootstrap's own default
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" ${DEBIAN_MIRROR:-} >"$state/debootstrap.log" 2>&1 \
      || { tail -20 "$state/debootstrap.log" >&2; fail "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # The host's CA bundle, and pip told to use it: the build's pip then trusts the package index
    # exactly as this host does (a TLS-inspecting proxy included). Only this test base has it.
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    tar -C "$rootfs" -c . | docker import --change 'CMD ["python3"]' \
      --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' - "$LOCAL_BASE" >/dev/null
  fi
fi

# -- the image ---------------------------------------------------------------------------------
say "building $IMAGE on $BASE_IMAGE"
# The host network: the build's pip reaches the package index the way the host does.
docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" --tag "$IMAGE" . >"$state/build.log" 2>&1 \
  || { tail -30 "$state/build.log" >&2; fail "the build failed"; }

# -- a fake provider on loopback ---------------------------------------------------------------
fake_port=$(free_port)
python3 - "$fake_port" <<'PY' &
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Fake(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = self.headers.get("Authorization") == "Bearer sk-image-test-key"
        body = json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-test",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hello from the fake" if ok else "no key"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Fake).serve_forever()
PY
fake_pid=$!

# -- run it as a cluster would -----------------------------------------------------------------
port=$(free_port)
metrics_port=$(free_port)
say "running it read-only as uid 12345, group 0"
container=$(docker run --detach --network host --read-only --tmpfs /tmp:rw,size=64m \
  --user 12345:0 --cap-drop ALL --security-opt no-new-privileges \
  -e SERVER_HOST=127.0.0.1 -e "SERVER_PORT=$port" \
  -e TELEMETRY_ENABLED=true -e "TELEMETRY_METRICS_PORT=$metrics_port" \
  -e "OPENAI_API_URL=http://127.0.0.1:$fake_port/v1" -e OPENAI_API_KEY=sk-image-test-key \
  "$IMAGE")
base="http://127.0.0.1:$port"
wait_http "$base/health" 30 || { docker logs "$container" >&2; fail "the gateway did not answer"; }

health=$(status_of "$base/health")
ready=$(status_of "$base/ready")
metrics=$(status_of "http://127.0.0.1:$metrics_port/metrics")
[[ $health == 200 ]] || fail "/health answered $health"
answer=$(curl -s "$base/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "openai/gpt-test", "messages": [{"role": "user", "content": "hi"}]}')
[[ $answer == *"hello from the fake"* ]] || fail "the chat call answered: $answer"

say "waiting for Docker's HEALTHCHECK"
health_check=starting
for _ in $(seq 40); do
  health_check=$(docker inspect --format '{{.State.Health.Status}}' "$container")
  [[ $health_check == starting ]] || break
  sleep 1
done
[[ $health_check == healthy ]] || fail "HEALTHCHECK says $health_check"

logs=$(docker logs "$container" 2>&1)
[[ $logs != *sk-image-test-key* ]] || fail "the provider key is in the logs"
running_as=$(docker exec "$container" id)
default_user=$(docker run --rm --network none --entrypoint id "$IMAGE")

# -- what the image holds ----------------------------------------------------------------------
find_wheels='find / -xdev \( -name "*.whl" -o -path /wheels -o -path /tmp/dist \) -print 2>/dev/null | sort'
docker run --rm --network none --user 0 --entrypoint sh "$IMAGE" -c "$find_wheels" >"$state/image-wheels"
docker run --rm --network none --user 0 --entrypoint sh "$BASE_IMAGE" -c "$find_wheels" >"$state/base-wheels"
extra=$(comm -23 "$state/image-wheels" "$state/base-wheels")
[[ -z $extra ]] || fail "wheels in the image that the base does not have: $extra"
docker run --rm --network none --entrypoint sh "$IMAGE" -c 'test ! -e /opt/polyrelay/bin/pip' \
  || fail "pip is in the image's venv"

size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(docker image inspect --format '{{.Size}}' "$BASE_IMAGE")
say "layers of $IMAGE (newest first):"
docker history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c 1-110 | head -12

cat <<REPORT
== result: passed
image          $IMAGE on $BASE_IMAGE
size           $((size / 1000000)) MB ($((base_size / 1000000)) MB of it the base, $(((size - base_size) / 1000000)) MB polyrelay)
user           $(docker image inspect --format '{{.Config.User}}' "$IMAGE") in the image: $default_user
ran as         $running_as (read-only root, no capabilities)
/health        $health
/ready         $ready$([[ $ready == 200 ]] || echo ' (the readiness endpoint is not in this build)')
/metrics       $metrics$([[ $metrics == 200 ]] || echo ' (the metrics endpoint is not in this build)')
chat           through the fake provider: ok
HEALTHCHECK    $health_check
wheels         none beyond the base's own ($(wc -l <"$state/base-wheels") there)
REPORT
