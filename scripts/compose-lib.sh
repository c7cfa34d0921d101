# Shared by scripts/compose-smoke and scripts/compose-drill: builds the
# image, generates the node directories, starts cluster/compose.yaml as
# project $project in $work, initializes the cluster, and tears it all
# down on exit. Source it after setting `project`, `work` and `build`.

if docker compose version >/dev/null 2>&1; then
  dc=(docker compose)
else
  dc=(docker-compose)
fi
compose() {
  "${dc[@]}" -p "$project" --env-file "$work/config/compose.env" -f cluster/compose.yaml "$@"
}
say() { echo "[$project $(date +%T)] $*"; }
cleanup() {
  status=$?
  if [ -f "$work/config/compose.env" ]; then
    if [ "$status" != 0 ]; then
      say "failed; last log lines:"
      compose logs --no-color --tail 15 2>&1 || true
    fi
    compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT INT TERM
container() { compose ps -q "$1"; }

# start_deployment [compose-config arguments...]
start_deployment() {
  say "building the image"
  scripts/build-image $build
  say "generating node directories"
  scripts/compose-config "$work/config" "$@"
  say "starting the deployment"
  timeout 120 "${dc[@]}" -p "$project" --env-file "$work/config/compose.env" -f cluster/compose.yaml up -d
  say "initializing the cluster through node 1"
  for attempt in $(seq 1 30); do
    if docker exec "$(container node1)" quorumkms cluster init -c /node/quorumkms.toml; then break; fi
    [ "$attempt" -lt 30 ] || return 1
    sleep 1
  done
}
