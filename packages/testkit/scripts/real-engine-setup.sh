#!/usr/bin/env bash
# Prepares a real llama.cpp `llama-server` (Debian sid's build) in a cache folder outside the work tree,
# following ../shared/REAL-ENGINES.md: nothing is installed system-wide. Idempotent: a second run reuses
# the cache. Prints the path of the runnable `llama-server` wrapper on its last line.
#
#   USEPOD_ENGINE_CACHE  the cache folder (default: ${XDG_CACHE_HOME:-~/.cache}/usepod-agent/llama-server)
#   USEPOD_SID_MIRROR    the sid archive (default: http://deb.debian.org/debian)
set -euo pipefail

CACHE="${USEPOD_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/usepod-agent/llama-server}"
ROOT="$CACHE/root"
LIB="$ROOT/usr/lib/x86_64-linux-gnu"
BIN="$ROOT/usr/bin/llama-server"
RUN="$CACHE/llama-server"
READY="$CACHE/.ready"

if [ -f "$READY" ] && [ -x "$RUN" ]; then
  echo "$RUN"
  exit 0
fi

if [ "$(uname -m)" != "x86_64" ]; then
  echo "real-engine setup: only x86_64 is supported here (this machine is $(uname -m))" >&2
  exit 1
fi

rm -rf "$ROOT" "$CACHE/apt" "$CACHE/debs"
mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial" "$CACHE/debs" "$ROOT"

# A private apt configuration that knows only sid: the host's sources, lists and cache are untouched.
echo "deb ${USEPOD_SID_MIRROR:-http://deb.debian.org/debian} sid main" >"$CACHE/apt/sources.list"
APT=(-o "Dir::Etc::sourcelist=$CACHE/apt/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache=$CACHE/apt/cache" -o "APT::Sandbox::User=root"
  -o "Acquire::Retries=3" -o "Debug::NoLocking=1")

if ! apt-get "${APT[@]}" -qq --error-on=any update >"$CACHE/apt/update.log" 2>&1; then
  echo "real-engine setup: Debian's sid archive could not be reached (apt-get update failed; see $CACHE/apt/update.log)" >&2
  exit 1
fi

PACKAGES=(llama.cpp-tools libllama0 libggml0 libc6 libstdc++6 libgcc-s1 libgomp1 libssl3t64 zlib1g libzstd1 patchelf)
(cd "$CACHE/debs" && apt-get "${APT[@]}" -qq download "${PACKAGES[@]}") >"$CACHE/apt/download.log" 2>&1 || {
  echo "real-engine setup: downloading ${PACKAGES[*]} from sid failed (see $CACHE/apt/download.log)" >&2
  exit 1
}
for deb in "$CACHE"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done

LOADER="$LIB/ld-linux-x86-64.so.2"
# sid's binaries need sid's glibc: run patchelf itself through sid's loader, then point llama-server at it
# (running llama-server through the loader would break router mode, which re-executes /proc/self/exe).
"$LOADER" --library-path "$LIB" "$ROOT/usr/bin/patchelf" --set-interpreter "$LOADER" "$BIN"

# ggml looks for its CPU backends next to the executable (after a hard-coded system folder).
for so in "$LIB"/ggml/backends0/libggml-cpu-*.so; do ln -sf "$so" "$ROOT/usr/bin/"; done

cat >"$RUN" <<WRAP
#!/usr/bin/env bash
# Runs sid's llama-server on sid's libraries (made by scripts/real-engine-setup.sh).
export LD_LIBRARY_PATH="$LIB:$LIB/llama"
exec "$BIN" "\$@"
WRAP
chmod +x "$RUN"

"$RUN" --version >"$CACHE/version.txt" 2>&1 || {
  echo "real-engine setup: llama-server does not start (see $CACHE/version.txt)" >&2
  exit 1
}
touch "$READY"
echo "$RUN"
