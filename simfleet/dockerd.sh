#!/usr/bin/env bash
# Start (or stop) the local Docker engine that the simulated fleet's "real" engine runs on.
# Its own data root, exec root, pidfile and socket, so it never touches another engine.
#   simfleet/dockerd.sh start | stop | status
set -euo pipefail
ROOT="${PIDNS_DOCKERD_ROOT:-/var/lib/pidns-dockerd}"
SOCK="${PIDNS_DOCKER_SOCK:-/run/pidns-docker.sock}"

ping() { python3 - "$SOCK" <<'PY' >/dev/null 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n"); data = s.recv(64)
sys.exit(0 if b" 200 " in data else 1)
PY
}

case "${1:-start}" in
  start)
    if ping; then echo "dockerd: running at unix://$SOCK"; exit 0; fi
    command -v dockerd >/dev/null || { echo "dockerd: not installed (apt-get install docker.io busybox-static tini)" >&2; exit 1; }
    mkdir -p "$ROOT/data" "$ROOT/exec"
    nohup dockerd --iptables=false --bridge=none --storage-driver=vfs \
      --data-root="$ROOT/data" --exec-root="$ROOT/exec" --pidfile="$ROOT/dockerd.pid" \
      -H "unix://$SOCK" >"$ROOT/dockerd.log" 2>&1 &
    for _ in $(seq 60); do ping && { echo "dockerd: started at unix://$SOCK"; exit 0; }; sleep 0.5; done
    echo "dockerd: did not answer within 30s; see $ROOT/dockerd.log" >&2; tail -20 "$ROOT/dockerd.log" >&2; exit 1
    ;;
  stop)
    [ -f "$ROOT/dockerd.pid" ] && kill "$(cat "$ROOT/dockerd.pid")" 2>/dev/null || true
    ;;
  status)
    ping && echo "running" || { echo "stopped"; exit 1; }
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
