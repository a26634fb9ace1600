#!/usr/bin/env bash
# The project's test command: installs the test broker and the observability tools if missing,
# starts the broker, runs every test (unit tests, the real-broker integration tests, and the
# Prometheus / Alertmanager / promtool / docker-compose tests), and stops the broker if it started
# it (a broker already running on the port, for a benchmark or another test run, is used and
# left running).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/install-observability.sh

export TOLLGATE_BROKER_PORT="${TOLLGATE_BROKER_PORT:-19092}"
if scripts/broker.sh status >/dev/null; then
  echo "using the broker already running on 127.0.0.1:$TOLLGATE_BROKER_PORT; it is left running"
else
  scripts/broker.sh start
  trap 'scripts/broker.sh stop' EXIT
fi
export TOLLGATE_TEST_BROKERS="127.0.0.1:$TOLLGATE_BROKER_PORT"

# The tests' scratch files (copies of the example, service logs, reports) go to one folder of
# the checkout, emptied at the start of each run: the last run's files stay for a look after a
# failure, and runs do not pile up in /tmp.
export TMPDIR="$root/target/test-tmp"
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
