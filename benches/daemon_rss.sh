#!/usr/bin/env bash
# Peak memory of `herald serve` on generated corpora.
#
#   benches/daemon_rss.sh                    # 10,000 and 100,000 articles
#   COUNTS="10000 50000" benches/daemon_rss.sh
#   HERALD=/path/to/herald NO_BUILD=1 benches/daemon_rss.sh
#   EXTRA='brotli_quality = 0' benches/daemon_rss.sh   # extra config lines
#
# For each size: generate the corpus (gen_corpus; 100k is ~530 MB under
# $TMPDIR, removed afterwards), start `herald serve` with a fresh output
# and state directory, and wait for `listening on`. Then read VmHWM (peak
# RSS) and VmRSS from /proc/PID/status at three points:
#
#   started   right after the first publish (the whole archive rendered,
#             written and swapped in);
#   requests  after GETs of every feed kind, gzip and identity, the index,
#             OPML and a few article pages;
#   edit      after one article's title is rewritten and the republish is
#             served (the incremental path a live daemon runs all day).
#
# Hugo's figures for the same kind of corpus (from the issue): ~300 MB at
# 10k, ~1.25 GB at 50k. The target is under a quarter of Hugo's.
set -euo pipefail

COUNTS=${COUNTS:-10000 100000}
REPO=$(cd "$(dirname "$0")/.." && pwd)
HERALD=${HERALD:-$REPO/target/release/herald}
GEN=${GEN:-$REPO/target/release/examples/gen_corpus}
command -v curl >/dev/null || { echo "daemon_rss: needs curl" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/herald-rss-XXXXXX")
PID=
cleanup() {
  set +e # a child's non-zero exit status must not stop the cleanup
  [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${NO_BUILD:-}" ]; then
  (cd "$REPO" && cargo build --release --quiet --bin herald --example gen_corpus)
fi
cp "$HERALD" "$TMP/herald"; HERALD=$TMP/herald
echo "herald $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'), binary $(sha256sum "$HERALD" | cut -c1-12); $(nproc) cores; $(date -u +%FT%TZ)"

kb() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

. "$REPO/benches/lib.sh"
ADMIN_OFF=$(admin_off)

ROWS=()
for n in $COUNTS; do
  d=$TMP/n$n
  mkdir -p "$d"
  t0=$(date +%s.%N)
  "$GEN" "$n" "$d/content"
  cat >"$d/herald.toml" <<EOF
base_url = "http://127.0.0.1/"
timezone = "Asia/Shanghai"
content_dir = "$d/content"
output_dir = "$d/feeds"
state_dir = "$d/state"
listen = "127.0.0.1:0"
debounce_ms = 50
$ADMIN_OFF
${EXTRA:-}
EOF
  s0=$(date +%s.%N)
  "$HERALD" --config "$d/herald.toml" serve 2>"$d/log" &
  PID=$!
  port=
  for _ in $(seq 1 9000); do # up to 15 minutes for the first publish
    port=$(sed -n 's#.*listening on http://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' "$d/log" | sed -n 1p)
    [ -n "$port" ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$d/log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$port" ] || { echo "herald did not start on $n articles" >&2; exit 1; }
  startup=$(awk -v a="$s0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  base=http://127.0.0.1:$port
  curl -sf "$base/healthz" >/dev/null
  hwm_start=$(kb "$PID" VmHWM); rss_start=$(kb "$PID" VmRSS)

  for p in /rss.xml /atom.xml /feed.json / /feeds.opml /categories/world-news/rss.xml; do
    curl -sf -o /dev/null "$base$p"
    curl -sf -o /dev/null -H 'Accept-Encoding: gzip' "$base$p"
  done
  # A few article pages (identity is decompressed on demand for some builds).
  for a in $(curl -sf "$base/rss.xml" | grep -o '<link>[^<]*/articles/[^<]*</link>' | sed -n 1,5p | sed 's#<link>[^<]*\(/articles/[^<]*\)</link>#\1#'); do
    curl -sf -o /dev/null "$base$a"
    curl -sf -o /dev/null -H 'Accept-Encoding: gzip' "$base$a"
  done
  hwm_req=$(kb "$PID" VmHWM); rss_req=$(kb "$PID" VmRSS)

  # One edit of the newest Markdown article; wait until it is served.
  f=$(find "$d/content" -name '*.md' | awk -F/ '{ print $NF "\t" $0 }' | sort -r | sed -n 1p | cut -f2)
  marker="RssMarker$$"
  sed -i "0,/^title/s/^title\([[:space:]]*[:=][[:space:]]*\).*/title\1\"$marker\"/" "$f"
  served=
  for _ in $(seq 1 600); do
    curl -sf "$base/rss.xml" | grep "$marker" >/dev/null && { served=1; break; }
    sleep 0.05
  done
  [ -n "$served" ] || echo "warning: the edit was not served within 30 s ($n articles)" >&2
  hwm_edit=$(kb "$PID" VmHWM); rss_edit=$(kb "$PID" VmRSS)

  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  disk=$(du -sm "$d/content" | cut -f1)
  ROWS+=("| $n | $disk | $startup | $(mb "$hwm_start") | $(mb "$hwm_req") | $(mb "$hwm_edit") | $(mb "$rss_edit") |")
  echo "${ROWS[-1]}"
  rm -rf "$d"
done

echo
echo "| articles | corpus MB | startup s (first publish) | VmHWM MB started | VmHWM MB after requests | VmHWM MB after an edit | VmRSS MB at the end |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
