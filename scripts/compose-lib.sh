# Shared by the compose scripts (sourced, not run): the compose command for a project of
# its own, teardown, and waiting until parties are healthy.
if docker compose version >/dev/null 2>&1; then dc=(docker compose); else dc=(docker-compose); fi
compose() { "${dc[@]}" -p "$project" -f docker-compose.yml "$@"; }
cleanup() { compose down -v --remove-orphans >/dev/null 2>&1 || true; }
# The container id of a service.
cid() { compose ps -q "$1"; }
# wait_healthy SECONDS PARTY...: every party answers `confide status` (itself and its peers).
wait_healthy() {
  local within=$1; shift
  local deadline=$((SECONDS + within))
  for p in "$@"; do
    until compose exec -T "$p" /confide status --config "/alliance/$p/party.toml" >/dev/null 2>&1; do
      if (( SECONDS > deadline )); then
        echo "$p not healthy within $within s" >&2
        compose ps >&2; compose logs --tail 30 >&2
        return 1
      fi
      sleep 1
    done
  done
}
