#!/usr/bin/env bash
# Runs every fuzz target for the given number of seconds (default 60) and
# prints executions and findings per target. Needs cargo-fuzz and nightly:
#   cargo install cargo-fuzz && fuzz/run.sh 600
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
targets=(lines pty_chunks claude_stream event_json store_commands)
cargo +nightly fuzz build -O
failed=0
for target in "${targets[@]}"; do
  log="$(mktemp)"
  mkdir -p "corpus/$target" "artifacts/$target"
  # A copy of the committed seeds is the working corpus, so runs do not
  # grow what is committed.
  work="$(mktemp -d)"
  cp -r "corpus/$target/." "$work/"
  status=0
  extra=()
  # The store's threads end just after it is dropped, and libFuzzer's leak
  # check can catch one mid-exit; leaks are checked on the test suite under
  # LeakSanitizer instead.
  if [ "$target" = store_commands ]; then extra=(-detect_leaks=0); fi
  cargo +nightly fuzz run -O "$target" "$work" -- -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 "${extra[@]}" \
    >"$log" 2>&1 || status=$?
  runs="$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#')"
  findings="$(find "artifacts/$target" -type f | wc -l)"
  echo "$target: ${runs:-0} executions in ${seconds}s, $findings finding(s), exit $status"
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    failed=1
  fi
  rm -rf "$work" "$log"
done
exit "$failed"
