# Sourced by ops/*.sh: `dc ARGS...` runs docker compose on this repo's stack.
# The project comes from COMPOSE_PROJECT_NAME; the compose command from DOCKER_COMPOSE
# if set (e.g. a standalone docker-compose binary), else the docker CLI plugin.
: "${COMPOSE_PROJECT_NAME:?set COMPOSE_PROJECT_NAME to the compose project name}"
if [ -n "${DOCKER_COMPOSE:-}" ]; then
  read -ra _DC <<<"$DOCKER_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  _DC=(docker compose)
else
  _DC=(docker-compose)
fi
dc() { "${_DC[@]}" --project-name "$COMPOSE_PROJECT_NAME" -f docker-compose.yml "$@"; }
