#!/usr/bin/env bash
# Installs what the tests need (the pinned npm CLIs and the Restate server, into ./.tools, git-ignored)
# and runs them, with the `restate` feature on.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

CODEX_VERSION=0.169.0
GT_VERSION=1.8.6
CLAUDE_VERSION=2.1.328
TOOLS="$PWD/.tools"

need_install=0
[ -x "$TOOLS/node_modules/.bin/codex" ] || need_install=1
[ -x "$TOOLS/node_modules/.bin/gt" ] || need_install=1
[ -x "$TOOLS/node_modules/.bin/claude" ] || need_install=1
if [ "$need_install" = 1 ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "scripts/test.sh: npm is needed to install codex, claude and gt; installing nodejs and npm" >&2
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  fi
  mkdir -p "$TOOLS"
  [ -f "$TOOLS/package.json" ] || echo '{"name":"loop-test-tools","private":true}' > "$TOOLS/package.json"
  echo "scripts/test.sh: installing @openai/codex@$CODEX_VERSION, @anthropic-ai/claude-code@$CLAUDE_VERSION and @withgraphite/graphite-cli@$GT_VERSION into .tools/" >&2
  npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error \
    "@openai/codex@$CODEX_VERSION" "@anthropic-ai/claude-code@$CLAUDE_VERSION" "@withgraphite/graphite-cli@$GT_VERSION" >&2
fi

# The report's browser test: Debian's chromium and a pinned playwright-core to drive it.
PLAYWRIGHT_VERSION=1.65.2
if [ ! -x /usr/bin/chromium ]; then
  echo "scripts/test.sh: installing chromium for the report's browser test" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ "$(node -p "require('$TOOLS/node_modules/playwright-core/package.json').version" 2>/dev/null)" != "$PLAYWRIGHT_VERSION" ]; then
  echo "scripts/test.sh: installing playwright-core@$PLAYWRIGHT_VERSION into .tools/" >&2
  npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" >&2
fi
export LOOP_TEST_CHROMIUM=/usr/bin/chromium LOOP_TEST_PLAYWRIGHT="$TOOLS/node_modules/playwright-core"

# The Restate server (feature `restate`): its own prefix, since installing into .tools itself
# prunes playwright-core. Tests run it inside a network namespace of their own (`unshare --net`,
# `ip link set lo up`: util-linux and iproute2, as root or with user namespaces).
RESTATE_VERSION=1.7.12
RESTATE_SERVER="$TOOLS/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"
if [ ! -x "$RESTATE_SERVER" ] || [ "$(node -p "require('$TOOLS/restate/node_modules/@restatedev/restate-server/package.json').version" 2>/dev/null)" != "$RESTATE_VERSION" ]; then
  echo "scripts/test.sh: installing @restatedev/restate-server@$RESTATE_VERSION into .tools/restate/" >&2
  npm install --prefix "$TOOLS/restate" --no-audit --no-fund --loglevel=error "@restatedev/restate-server@$RESTATE_VERSION" >&2
fi
export LOOP_TEST_RESTATE_SERVER="$RESTATE_SERVER"
if ! command -v unshare >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
  echo "scripts/test.sh: installing util-linux and iproute2 (unshare, ip) for the Restate tests' network namespaces" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux iproute2 >/dev/null
fi

# Prefer the native codex binary (the node wrapper adds ~60 ms per call).
native=$(find "$TOOLS/node_modules/@openai" -path '*/vendor/*/bin/codex' -type f 2>/dev/null | head -n 1 || true)
export LOOP_TEST_CODEX_BIN="${native:-$TOOLS/node_modules/.bin/codex}"
# Likewise claude: the package ships its native binary as an optional dependency per platform.
native=$(find "$TOOLS/node_modules/@anthropic-ai" -path '*/claude-code-linux-*/claude' -type f 2>/dev/null | head -n 1 || true)
export LOOP_TEST_CLAUDE_BIN="${native:-$TOOLS/node_modules/.bin/claude}"
export LOOP_TEST_GT_BIN="$TOOLS/node_modules/.bin/gt"
export GRAPHITE_DISABLE_TELEMETRY=1 GRAPHITE_DISABLE_UPGRADE_PROMPT=1

cargo test --release --no-fail-fast --features restate "$@"
