#!/usr/bin/env bash
# Starts or stops the local Kafka-protocol test broker (nisshi, in-memory storage).
#
#   scripts/broker.sh start   # installs if needed, starts, waits until it accepts connections
#   scripts/broker.sh stop
#   scripts/broker.sh status
#
# Listens on 127.0.0.1:${TOLLGATE_BROKER_PORT:-19092}. State (pid, log) lives in
# ${TOLLGATE_BROKER_DIR:-/tmp/tollgate-broker-<port>}: one folder per port, so a broker started for
# another port is never taken for this one's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${TOLLGATE_BROKER_PORT:-19092}"
DIR="${TOLLGATE_BROKER_DIR:-/tmp/tollgate-broker-$PORT}"
PIDFILE="$DIR/nisshi.pid"
LOG="$DIR/nisshi.log"

running() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

case "${1:-}" in
  start)
    if running; then
      echo "broker already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
      exit 0
    fi
    if port_open; then
      echo "port $PORT is taken by another process; set TOLLGATE_BROKER_PORT" >&2
      exit 1
    fi
    bin="$("$here/install-broker.sh" | tail -n 1)"
    mkdir -p "$DIR"
    "$bin" broker \
      --listener-url "tcp://127.0.0.1:$PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$PORT" \
      --storage-engine "memory://tollgate/" >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 100); do
      if port_open; then
        echo "broker started (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
        exit 0
      fi
      if ! running; then
        echo "broker exited at start; its log:" >&2
        cat "$LOG" >&2
        exit 1
      fi
      sleep 0.1
    done
    echo "broker did not open port $PORT within 10 s; its log:" >&2
    tail -50 "$LOG" >&2
    exit 1
    ;;
  stop)
    if running; then
      pid="$(cat "$PIDFILE")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "broker stopped"
    fi
    rm -f "$PIDFILE"
    ;;
  status)
    if running; then echo "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; else echo "not running"; exit 1; fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
