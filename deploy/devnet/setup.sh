#!/usr/bin/env bash
# Prepares the local devnet fixture (deploy/devnet): installs the pinned npm packages (anvil
# binary, the Hardhat node, Uniswap artifacts, solc-js) and compiles our own contracts into build/.
#
# Idempotent and safe to run from any directory:
#   - `npm ci` is skipped when node_modules was installed from the current package-lock.json;
#   - `node compile.js` is skipped when build/ is newer than contracts/*.sol and compile.js.
# Needs only node (>= 20) and npm. Set WB_DEVNET_FORCE=1 to redo both steps.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$DIR"

say() { printf 'devnet setup: %s\n' "$*"; }
die() { printf 'devnet setup: error: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node is not installed (need node >= 20 and npm)"
command -v npm >/dev/null 2>&1 || die "npm is not installed (need node >= 20 and npm)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old (need >= 20)"

force="${WB_DEVNET_FORCE:-0}"

# ---- 1. npm ci -------------------------------------------------------------------------------
# Fingerprint of what node_modules must match: package.json + package-lock.json.
lock_hash="$(node -e '
const c = require("crypto"), fs = require("fs");
const h = c.createHash("sha256");
for (const f of ["package.json", "package-lock.json"]) h.update(fs.readFileSync(f));
process.stdout.write(h.digest("hex"));
')"
stamp="node_modules/.wb-devnet-lock-hash"
anvil_bin="node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
hardhat_bin="node_modules/.bin/hardhat"

if [ "$force" != "1" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_hash" ] && [ -x "$anvil_bin" ] \
    && [ -x "$hardhat_bin" ]; then
  say "node_modules matches package-lock.json; skipping npm ci"
else
  say "running npm ci (pinned anvil, Hardhat, Uniswap artifacts, solc)"
  # --ignore-scripts: nothing here needs an install script (the anvil binary ships in its
  # package, Hardhat's EDR in its per-platform package), and skipping them keeps the install
  # offline-friendly and reproducible.
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  [ -x "$anvil_bin" ] || chmod +x "$anvil_bin" 2>/dev/null || true
  [ -x "$anvil_bin" ] || die "anvil binary missing after npm ci: $DIR/$anvil_bin"
  [ -x "$hardhat_bin" ] || die "hardhat missing after npm ci: $DIR/$hardhat_bin"
  printf '%s' "$lock_hash" > "$stamp"
  say "npm ci done"
fi
say "anvil: $("./$anvil_bin" --version | head -n1)"
# The Hardhat node (WB_DEVNET_NODE=hardhat): its version, and that its native EDR loads here.
hardhat_version="$(node -p 'require("hardhat/package.json").version')"
node -e 'require("@nomicfoundation/edr")' 2>/dev/null \
  || die "hardhat $hardhat_version is installed but its EDR does not load on this platform"
say "hardhat: $hardhat_version (config $DIR/hardhat.config.js)"

# ---- 2. compile our contracts ---------------------------------------------------------------
build_stamp="build/.stamp"
needs_compile=0
if [ "$force" = "1" ] || [ ! -f "$build_stamp" ]; then
  needs_compile=1
else
  for src in contracts/*.sol compile.js package-lock.json; do
    if [ "$src" -nt "$build_stamp" ]; then needs_compile=1; break; fi
  done
  for src in contracts/*.sol; do
    name="$(basename "$src" .sol)"
    if [ ! -f "build/$name.json" ]; then needs_compile=1; break; fi
  done
fi

if [ "$needs_compile" = "1" ]; then
  say "compiling contracts/*.sol -> build/"
  node compile.js
  touch "$build_stamp"
  say "compile done"
else
  say "build/ is up to date; skipping compile"
fi

say "ready ($DIR)"
