#!/usr/bin/env bash
# Build the image and smoke-test it (the guide's ./test-docker.sh).
#   ./test-docker.sh [IMAGE_TAG]
# Exit codes: 0 image built and healthy; 1 build or smoke test failed;
#             4 no Docker engine available here (the test needs one).
set -u
TAG="${1:-c2s-enrichment-api:test}"
HERE="$(cd "$(dirname "$0")" && pwd)"
if ! command -v docker >/dev/null 2>&1; then
  echo "test-docker.sh needs a Docker engine: the docker CLI is not installed" >&2; exit 4
fi
if ! docker info >/dev/null 2>&1; then
  echo "test-docker.sh needs a Docker engine: 'docker info' cannot reach one (is the daemon running?)" >&2
  exit 4
fi
set -e
docker build -t "$TAG" "$HERE"
PORT="${PORT:-18080}"
CID="$(docker run -d --rm -p "127.0.0.1:$PORT:8080" "$TAG")"
trap 'docker stop "$CID" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 60); do
  curl -fsS -m 2 "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 1
done
set +e
"$HERE/test-local.sh" "http://127.0.0.1:$PORT"
rc=$?
docker stats --no-stream --format 'container memory: {{.MemUsage}}' "$CID" 2>/dev/null || true
[[ $rc -eq 0 ]] || { docker logs "$CID" | tail -n 30; exit 1; }
echo "image $TAG OK"
