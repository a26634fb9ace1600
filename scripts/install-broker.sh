#!/usr/bin/env bash
# Installs the Kafka-protocol test broker (nisshi, pinned) into a stable tools folder outside the
# checkout, so later clones on the same machine reuse it. Skips the build when the pinned version
# is already there. Prints the binary's path on stdout as its last line.
set -euo pipefail

NISSHI_VERSION="${NISSHI_VERSION:-0.6.0}"
TOOLS="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}"
BIN="$TOOLS/bin/nisshi"
STAMP="$TOOLS/nisshi.version"

if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$NISSHI_VERSION" ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$TOOLS"
echo "installing nisshi $NISSHI_VERSION into $TOOLS (first time takes ~9 minutes)" >&2
cargo install "nisshi@$NISSHI_VERSION" --locked --features dynostore \
  --root "$TOOLS" --target-dir "$TOOLS/target" >&2
echo "$NISSHI_VERSION" > "$STAMP"
# The build tree is large and not needed once the binary exists.
rm -rf "$TOOLS/target"
echo "$BIN"
