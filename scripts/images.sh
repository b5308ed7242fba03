#!/usr/bin/env bash
# make images: build every container image this machine can build, from the repository's own Dockerfiles,
# with Debian's podman (no Docker engine and no registry is reachable here; ../shared/FIELD-NOTES.md, "Containers").
#
#   1. podman, runc and mmdebstrap from apt; a private containers.conf (two settings, nothing under /etc changes);
#   2. the stand-in base once (cached in podman's store): `debian:bookworm-slim` made by mmdebstrap from Debian's
#      packages (a minbase bookworm with the slim image's dpkg excludes is what that image is built from);
#   3. each image `containers/matrix.py --local` lists (the Debian client source where Debian ships the tag's
#      major), tagged localhost/dbstash:<tag>; the others are listed with the reason they cannot be built here.
#
# The host's pip configuration (index, certificate bundle) is handed to the build as read-only mounts, never
# copied into a layer. The result, read by tests/containers (the smoke suite), is .cache/containers/images.json.
# Where no container engine can run, images.json says why and the smoke suite skips with that one reason.
source "$(dirname "$0")/lib.sh"

CACHE="$ROOT/.cache/containers"
STATUS="$CACHE/images.json"
BASE="docker.io/library/debian:bookworm-slim"
STANDIN="org.dbstash.stand-in"
mkdir -p "$CACHE"
rm -f "$STATUS"
cd "$ROOT"

# write_status KEY=VALUE... : images.json, read by the smoke suite (python3 only: no jq on a fresh machine)
write_status() {
  python3 - "$STATUS" "$@" <<'PY'
import json, sys
path, *pairs = sys.argv[1:]
data = {}
for pair in pairs:
    key, _, value = pair.partition("=")
    data[key] = json.loads(value) if value[:1] in "[{" else value
with open(path, "w") as fh:
    json.dump(data, fh, indent=2)
PY
}
unavailable() {
  write_status "reason=$*"
  log "no container engine can run here: $* (the container smoke suite will skip, saying so)"
  exit 0
}

for tool in podman runc mmdebstrap; do
  apt_ensure "$tool" "$tool" || unavailable "$tool is not installed and cannot be (apt-get needs root and a Debian mirror)"
done
apt_ensure catatonit catatonit || true # podman's --init; nothing here needs it

# crun/runc fail without the nofile/nproc limits (no CAP_SYS_RESOURCE here); crun refuses hybrid cgroups.
export CONTAINERS_CONF="$CACHE/containers.conf"
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
err="$(timeout 120 podman info 2>&1 >/dev/null)" || unavailable "podman info failed: ${err##*$'\n'}"

# -- the stand-in base ----------------------------------------------------------------------------------
base_kind="$(timeout 60 podman image inspect --format "{{index .Labels \"$STANDIN\"}}" "$BASE" 2>/dev/null || true)"
if ! timeout 60 podman image exists "$BASE"; then
  log "making $BASE with mmdebstrap (minbase bookworm, the slim image's dpkg and apt settings)"
  rootfs="$CACHE/bookworm-minbase.tar"
  # the excludes of the official slim images (debuerreotype's slimify): no manuals, docs or translations
  excludes=()
  for dir in doc groff info linda lintian/overrides locale man; do
    excludes+=(--dpkgopt="path-exclude=/usr/share/$dir/*")
  done
  # and their apt settings (debuerreotype's docker-clean & co.): no .deb cache, no translations, gzipped lists
  clean='rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true'
  aptopts=(
    --aptopt="DPkg::Post-Invoke { \"$clean\"; }" --aptopt="APT::Update::Post-Invoke { \"$clean\"; }"
    --aptopt='Dir::Cache::pkgcache ""' --aptopt='Dir::Cache::srcpkgcache ""' --aptopt='Acquire::Languages "none"'
    --aptopt='Acquire::GzipIndexes "true"' --aptopt='Apt::AutoRemove::SuggestsImportant "false"'
  )
  timeout 900 env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin mmdebstrap --quiet --variant=minbase \
    "${excludes[@]}" --dpkgopt='path-include=/usr/share/doc/*/copyright' "${aptopts[@]}" bookworm "$rootfs"
  timeout 300 podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --change "LABEL $STANDIN=mmdebstrap-minbase-bookworm" \
    "$rootfs" "$BASE" >/dev/null
  rm -f "$rootfs"
  base_kind="mmdebstrap-minbase-bookworm"
fi
base_kind="${base_kind:-debian-bookworm-slim}"
err="$(timeout 120 podman run --rm --network none "$BASE" true 2>&1)" ||
  unavailable "podman cannot start a container here: ${err##*$'\n'}"

# -- the host's pip configuration, for the build only ------------------------------------------------------
# pip inside the build needs what the host's pip uses (a private index, a certificate bundle): a pip.conf is
# written from the host's effective settings and mounted read-only with the bundle; host paths (find-links,
# a wheel folder) are left out. Nothing of it lands in a layer (the smoke suite checks the image and history).
pipconf="$CACHE/pip.conf"
mounts=(-v "$pipconf:/etc/pip.conf:ro")
cert="$("$PYTHON" -m pip config get global.cert 2>/dev/null || true)"
cert="${PIP_CERT:-$cert}"
{
  echo "[global]"
  echo "disable-pip-version-check = true"
  echo "timeout = ${PIP_DEFAULT_TIMEOUT:-60}"
  for key in index-url extra-index-url trusted-host; do
    var="PIP_$(echo "$key" | tr 'a-z-' 'A-Z_')"
    value="${!var:-$("$PYTHON" -m pip config get "global.$key" 2>/dev/null || true)}"
    [ -n "$value" ] && echo "$key = $value"
  done
  if [ -n "$cert" ] && [ -f "$cert" ]; then echo "cert = /etc/pip-ca.pem"; fi
} >"$pipconf"
if [ -n "$cert" ] && [ -f "$cert" ]; then mounts+=(-v "$cert:/etc/pip-ca.pem:ro"); fi

# -- the images ------------------------------------------------------------------------------------------
plan="$("$PYTHON" containers/matrix.py --local)"
built=()
while IFS=$'\t' read -r tag dockerfile args; do
  [ -n "$tag" ] || continue
  build_args=()
  for a in $args; do build_args+=(--build-arg "$a"); done
  log "podman build $tag ($dockerfile, ${args:-no build arguments})"
  started=$SECONDS
  timeout 1800 podman build --quiet --pull=never --format docker "${mounts[@]}" \
    -f "$dockerfile" "${build_args[@]}" -t "localhost/dbstash:$tag" . >/dev/null
  size="$(podman image inspect --format '{{.Size}}' "localhost/dbstash:$tag")"
  built+=("{\"tag\": \"$tag\", \"image\": \"localhost/dbstash:$tag\", \"size\": $size, \"seconds\": $((SECONDS - started))}")
  log "built localhost/dbstash:$tag: $((size / 1000000)) MB in $((SECONDS - started)) s"
done < <(printf '%s' "$plan" | "$PYTHON" -c '
import json, sys
for b in json.load(sys.stdin)["build"]:
    print(b["tag"], b["dockerfile"], " ".join(b["build_args"]), sep="\t")')

log "not built here (the release CI builds them):"
printf '%s' "$plan" | "$PYTHON" -c '
import json, sys
for n in json.load(sys.stdin)["not_built"]:
    print("  %-12s %s" % (n["tag"], n["reason"]), file=sys.stderr)'

images="[$(IFS=,; echo "${built[*]}")]"
mounts_json="$("$PYTHON" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${mounts[@]}")"
write_status "engine=podman" "containers_conf=$CONTAINERS_CONF" "base=$BASE" "base_kind=$base_kind" \
  "images=$images" "plan=$plan" "build_mounts=$mounts_json"
