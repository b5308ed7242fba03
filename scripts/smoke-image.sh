#!/usr/bin/env bash
# The smoke test of one built image, run by CI's image job (.github/workflows/build.yml, with docker) and by the
# suite's container tests (tests/containers, with podman): one script, so the two cannot drift.
#
#   scripts/smoke-image.sh ENGINE IMAGE SMOKE_URI     # ENGINE: docker or podman; SMOKE_URI: from containers/matrix.py
#
# Checks: `dbstash --version` runs; the image runs as uid 10001 with the exec-form entrypoint and a HEALTHCHECK;
# a DRY_RUN=true run succeeds with the Helm chart's pod settings (read-only root, tmpfs /tmp, no capabilities).
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 ENGINE IMAGE SMOKE_URI" >&2; exit 2; }
engine="$1" image="$2" uri="$3"
fail() { echo "smoke-image: $image: $*" >&2; exit 1; }
inspect() { timeout 60 "$engine" image inspect --format "$1" "$image"; }

timeout 120 "$engine" run --rm --network none --entrypoint dbstash "$image" --version || fail "dbstash --version failed"
user="$(inspect '{{.Config.User}}')"
[ "$user" = 10001 ] || fail "runs as '$user', not uid 10001"
entrypoint="$(inspect '{{json .Config.Entrypoint}}')"
[ "$entrypoint" = '["dbstash","run"]' ] || fail "entrypoint is $entrypoint, not the exec form [\"dbstash\",\"run\"]"
health="$(inspect '{{json .Config.Healthcheck.Test}}')"
[ "$health" = '["CMD","dbstash","healthcheck"]' ] || fail "healthcheck is $health, not dbstash healthcheck"
timeout 120 "$engine" run --rm --network none --read-only --tmpfs /tmp --cap-drop ALL \
  --security-opt no-new-privileges -e DRY_RUN=true -e DB_URI="$uri" -e RCLONE_REMOTE=/tmp/backups "$image" ||
  fail "a DRY_RUN=true run failed (read-only root, tmpfs /tmp, no capabilities, uid 10001)"
echo "smoke-image: $image: ok"
