#!/usr/bin/env bash
# Builds the image, brings the compose alliance up, waits until every party is healthy and
# reaches its peers (`confide status`; alice, bob, carol and the dedicated risk compute
# nodes s0, s1), then tears it down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-image.sh
project="confide-smoke-$$"
source scripts/compose-lib.sh
trap cleanup EXIT
compose up -d 2>&1 | tail -n 5
wait_healthy 90 alice bob carol s0 s1
for p in alice bob carol s0 s1; do
  health=$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$p")")
  echo "$p: container health $health"
done
compose exec -T alice /confide netcheck --config /alliance/alice/party.toml --rounds 5
echo "compose smoke: all parties healthy and reachable"
