#!/usr/bin/env bash
# Builds the image, brings the compose alliance up, waits until every party is healthy and
# reaches its peers (`confide status`; alice, bob, carol and the dedicated risk compute
# nodes s0, s1), then tears it down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-image.sh
project="confide-smoke-$$"
if docker compose version >/dev/null 2>&1; then dc=(docker compose); else dc=(docker-compose); fi
compose() { "${dc[@]}" -p "$project" -f docker-compose.yml "$@"; }
cleanup() { compose down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
compose up -d 2>&1 | tail -n 5
deadline=$((SECONDS + 90))
for p in alice bob carol s0 s1; do
  until compose exec -T "$p" /confide status --config "/alliance/$p/party.toml"; do
    if (( SECONDS > deadline )); then
      echo "compose smoke: $p not healthy within 90 s" >&2
      compose ps >&2; compose logs --tail 30 >&2
      exit 1
    fi
    sleep 1
  done
done
for p in alice bob carol s0 s1; do
  health=$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$p")")
  echo "$p: container health $health"
done
compose exec -T alice /confide netcheck --config /alliance/alice/party.toml --rounds 5
echo "compose smoke: all parties healthy and reachable"
