#!/bin/sh
# `make run`: the proxy on 127.0.0.1:$PORT with a demo app (127.0.0.1:$DEMO_PORT) deployed behind it.
# Every run starts from a fresh, empty state (its own temporary HOME and control socket, removed on
# exit), so nothing a previous run did (a pause, a stop, a removed service) carries over.
#   PY          the virtual environment's python (set by the Makefile)
#   PORT        the proxy's HTTP port (8080)
#   HTTPS_PORT  the proxy's HTTPS port (8443)
#   DEMO_PORT   the demo app's port (3000)
set -eu

PY=${PY:?PY must name the virtual environment python}
PORT=${PORT:-8080}
HTTPS_PORT=${HTTPS_PORT:-8443}
DEMO_PORT=${DEMO_PORT:-3000}
BIN=$(dirname "$PY")
cd "$(dirname "$0")/.."  # the repository: `-m proxy.cli.main` runs this checkout

# SO_REUSEADDR as both servers set it: only a listener blocks the port, not TIME_WAIT leftovers
port_in_use() {
    "$PY" -c '
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(0)
sys.exit(1)' "$1"
}

for setting in "PORT=$PORT" "HTTPS_PORT=$HTTPS_PORT" "DEMO_PORT=$DEMO_PORT"; do
    name=${setting%%=*}
    port=${setting#*=}
    if port_in_use "$port"; then
        echo "make run: port $port is already in use ($name=$port). Stop what listens there, or pick" \
            "another port: make run $name=$((port + 1))" >&2
        exit 1
    fi
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/kamal-proxy-demo.XXXXXX")
export HOME="$dir/home" KAMAL_PROXY_SOCKET="$dir/kamal-proxy.sock"
mkdir -p "$dir/app" "$HOME"
echo "OK" >"$dir/app/up"
echo "<h1>Hello from the demo app behind kamal-proxy</h1>" >"$dir/app/index.html"

app=""
proxy=""
cleanup() {
    trap - EXIT INT TERM
    for pid in $proxy $app; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PY" -m http.server "$DEMO_PORT" --bind 127.0.0.1 --directory "$dir/app" >"$dir/app.log" 2>&1 &
app=$!
"$PY" -m proxy.cli.main run --bind 127.0.0.1 --http-port "$PORT" --https-port "$HTTPS_PORT" &
proxy=$!

tries=0
until [ -S "$KAMAL_PROXY_SOCKET" ]; do
    if ! kill -0 "$proxy" 2>/dev/null; then
        echo "make run: the proxy did not start (its error is in the log line above)" >&2
        exit 1
    fi
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
        echo "make run: the proxy did not open its control socket within 10 s" >&2
        exit 1
    fi
    sleep 0.1
done

"$PY" -m proxy.cli.main deploy demo --target "127.0.0.1:$DEMO_PORT" --host demo.localhost --health-check-path /up
cat <<MSG

Demo deployed. Try:
  curl -H 'Host: demo.localhost' http://127.0.0.1:$PORT/
  KAMAL_PROXY_SOCKET=$KAMAL_PROXY_SOCKET $BIN/proxyctl list
Ctrl-C stops it (and forgets this run's state).

MSG
wait "$proxy"
