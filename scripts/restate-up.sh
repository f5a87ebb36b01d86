#!/usr/bin/env bash
# A one-machine try of `loop run --engine restate`: installs the pinned Restate server into this
# checkout's .tools/restate (git-ignored), starts it on loopback with its config, data and log in
# the repository's loop state dir (`<state dir>/restate/`; `.loop/restate/` by default), waits
# until it answers, and prints the next commands. Run it from the repository loop works on.
#
# Usage: scripts/restate-up.sh [--repo DIR]   start (or say it already runs)
#        scripts/restate-up.sh [--repo DIR] --stop
#
# Ports: ingress 127.0.0.1:8080, admin 127.0.0.1:9070 (both answer without credentials, so they
# stay on loopback; see README "Beyond one machine" for several hosts).
set -euo pipefail

RESTATE_VERSION=1.7.12
TOOLS="$(cd "$(dirname "$0")/.." && pwd)/.tools"
SERVER="$TOOLS/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"

repo=.
stop=0
while [ $# -gt 0 ]; do
  case "$1" in
    --repo) repo="$2"; shift 2 ;;
    --stop) stop=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "restate-up.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
repo="$(cd "$repo" && pwd)"

# The state dir as loop resolves it (flag < env < loop.toml), else loop's default.
state=""
if command -v loop >/dev/null 2>&1; then
  state="$(loop config --repo "$repo" --json 2>/dev/null \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const k of JSON.parse(s))if(k.key==="state_dir")console.log(k.value)})' \
    2>/dev/null || true)"
fi
[ -n "$state" ] || state="${LOOP_STATE_DIR:-$repo/.loop}"
dir="$state/restate"
pidfile="$dir/server.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if [ "$stop" = 1 ]; then
  if running; then
    kill -TERM "$(cat "$pidfile")"
    echo "restate-up.sh: stopped the server (pid $(cat "$pidfile")); its data stays in $dir/data" >&2
  else
    echo "restate-up.sh: no server of $dir runs" >&2
  fi
  rm -f "$pidfile"
  exit 0
fi

if running; then
  echo "restate-up.sh: the server already runs (pid $(cat "$pidfile"), data in $dir/data)" >&2
else
  if [ ! -x "$SERVER" ] || [ "$(node -p "require('$TOOLS/restate/node_modules/@restatedev/restate-server/package.json').version" 2>/dev/null)" != "$RESTATE_VERSION" ]; then
    echo "restate-up.sh: installing @restatedev/restate-server@$RESTATE_VERSION into $TOOLS/restate/" >&2
    npm install --prefix "$TOOLS/restate" --no-audit --no-fund --loglevel=error "@restatedev/restate-server@$RESTATE_VERSION" >&2
  fi
  mkdir -p "$dir"
  cat > "$dir/restate.toml" <<EOF
# Written by scripts/restate-up.sh: a one-machine Restate server for loop, on loopback only.
bind-ip = "127.0.0.1"
base-dir = "$dir/data"
disable-telemetry = true
node-name = "loop"
[admin]
bind-ip = "127.0.0.1"
[ingress]
bind-ip = "127.0.0.1"
EOF
  # Its own session, stdin closed: it outlives this script and the terminal.
  setsid "$SERVER" -c "$dir/restate.toml" </dev/null >>"$dir/server.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 150); do
    if (exec 3<>/dev/tcp/127.0.0.1/9070) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
      break
    fi
    if ! running; then
      echo "restate-up.sh: the server exited; its log: $dir/server.log" >&2
      tail -n 20 "$dir/server.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "restate-up.sh: Restate $RESTATE_VERSION runs (pid $(cat "$pidfile")): ingress http://127.0.0.1:8080, admin http://127.0.0.1:9070" >&2
  echo "restate-up.sh: config $dir/restate.toml, data $dir/data, log $dir/server.log" >&2
fi

cat <<EOF

Next (loop built with: cargo install --path . --features restate):
  loop restate serve --listen 127.0.0.1:9080 --admin http://127.0.0.1:9070 &   # the endpoint; registers itself
  git clone <your shared remote> /tmp/w1 && (cd /tmp/w1 && loop worker --ingress http://127.0.0.1:8080 --jobs 2) &
  cd $repo && loop run -m <MILESTONE> --engine restate --ingress http://127.0.0.1:8080
  loop status; loop replay                                                       # on the mirrored journal
Stop the server: $0 --repo $repo --stop
EOF
