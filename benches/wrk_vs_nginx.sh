#!/usr/bin/env bash
# Throughput and CPU per request of `herald serve` against nginx serving the
# same feeds directory (the deployment Herald's `.gz` twins are made for).
#
#   benches/wrk_vs_nginx.sh              # 10,000 articles, 5 repetitions, 10 s runs
#   REPS=3 DURATION=5 ARTICLES=2000 benches/wrk_vs_nginx.sh
#   BARE=1 benches/wrk_vs_nginx.sh       # also examples/bare_hyper.rs (hyper alone)
#   CASES='gzip 304' benches/wrk_vs_nginx.sh   # only some of the cases
#   HERALD=/path/to/herald NO_BUILD=1 benches/wrk_vs_nginx.sh   # another build
#
# Both servers get two cores' worth of workers: nginx `worker_processes 2`,
# Herald its two runtime threads. Each case is run with
# `wrk -t2 -c64 -d$DURATION` against /rss.xml, alternating the servers
# (nginx, herald, herald, nginx, ...) so both see the same background load:
#
#   plain  GET, no Accept-Encoding         -> 200, identity body
#   gzip   GET, Accept-Encoding: gzip      -> 200, the precompressed twin
#   304    GET, gzip + If-None-Match: <that server's ETag of the gzip body>
#
# Around every run the server's CPU time (utime+stime from /proc/PID/stat;
# for nginx the master plus its workers) is read, giving CPU µs per
# request. wrk's bytes read per request is checked against the expected
# response size, so a run that silently served errors or short bodies is
# flagged. Needs: wrk, nginx (Debian `nginx` or `nginx-light`), curl,
# python3 (summary only). Everything listens on 127.0.0.1 and is stopped on
# exit; the temporary directory is removed.
set -euo pipefail

ARTICLES=${ARTICLES:-10000}
REPS=${REPS:-5}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CASES=${CASES:-plain gzip 304}
CONNS=${CONNS:-64}
REPO=$(cd "$(dirname "$0")/.." && pwd)
HERALD=${HERALD:-$REPO/target/release/herald}
GEN=${GEN:-$REPO/target/release/examples/gen_corpus}
BARE_BIN=${BARE_BIN:-$REPO/target/release/examples/bare_hyper}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
for t in wrk curl python3; do
  command -v "$t" >/dev/null || { echo "wrk_vs_nginx: needs $t" >&2; exit 2; }
done
[ -x "$NGINX" ] || { echo "wrk_vs_nginx: needs nginx (apt-get install nginx-light)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/herald-wrk-XXXXXX)
NGINX_PID= HERALD_PID= BARE_PID=
cleanup() {
  set +e # a child's non-zero exit status must not stop the cleanup
  for p in $HERALD_PID $BARE_PID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  # nginx: QUIT (graceful, the master stops its workers), then TERM.
  if [ -n "$NGINX_PID" ]; then
    kill -QUIT "$NGINX_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${NO_BUILD:-}" ]; then
  (cd "$REPO" && cargo build --release --quiet --bin herald --example gen_corpus \
    ${BARE:+--example bare_hyper})
fi
# A private copy, so a rebuild in the tree during the run changes nothing.
cp "$HERALD" "$TMP/herald"; HERALD=$TMP/herald
echo "== herald: $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'), binary $(sha256sum "$HERALD" | cut -c1-12)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

. "$REPO/benches/lib.sh"
ADMIN_OFF=$(admin_off)

echo "== corpus: $ARTICLES articles"
"$GEN" "$ARTICLES" "$TMP/content"
cat >"$TMP/herald.toml" <<EOF
title = "wrk vs nginx"
base_url = "http://127.0.0.1/"
timezone = "Asia/Shanghai"
content_dir = "$TMP/content"
output_dir = "$TMP/feeds"
state_dir = "$TMP/state"
listen = "127.0.0.1:0"
log_level = "warn,herald=info"
# Every wrk connection comes from 127.0.0.1.
max_connections_per_ip = 1024
$ADMIN_OFF
EOF
/usr/bin/time -f "herald build: %e s wall, %M KB max RSS" "$HERALD" --config "$TMP/herald.toml" build 2>&1 | tail -2

# nginx over the directory `herald build` wrote.
NPORT=$(free_port)
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
user root;
worker_processes 2;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  gzip off;
  gzip_static on;
  gzip_vary on;
  etag on;
  open_file_cache max=20000 inactive=60s;
  open_file_cache_valid 60s;
  open_file_cache_errors on;
  server {
    listen 127.0.0.1:$NPORT;
    root $TMP/feeds;
    add_header Cache-Control "public, max-age=300";
  }
}
EOF
"$NGINX" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!

# Herald on the same content, with its own output dir (same bytes).
sed -e "s#$TMP/feeds#$TMP/feeds-herald#" -e "s#$TMP/state#$TMP/state-herald#" \
  "$TMP/herald.toml" >"$TMP/herald-serve.toml"
"$HERALD" --config "$TMP/herald-serve.toml" serve 2>"$TMP/herald.log" &
HERALD_PID=$!
HPORT=
for _ in $(seq 1 600); do
  HPORT=$(sed -n 's#.*listening on http://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' "$TMP/herald.log" | sed -n 1p)
  [ -n "$HPORT" ] && break
  kill -0 "$HERALD_PID" 2>/dev/null || { cat "$TMP/herald.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$HPORT" ] || { echo "herald did not start" >&2; exit 1; }
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$HPORT/healthz" >/dev/null && curl -sf "http://127.0.0.1:$NPORT/rss.xml" -o /dev/null && break
  sleep 0.1
done

URL_nginx=http://127.0.0.1:$NPORT/rss.xml
URL_herald=http://127.0.0.1:$HPORT/rss.xml
PID_nginx=$NGINX_PID
PID_herald=$HERALD_PID
SERVERS="nginx herald"
if [ -n "${BARE:-}" ]; then
  # hyper alone, same bytes from memory (the files herald serve wrote).
  BPORT=$(free_port)
  "$BARE_BIN" "127.0.0.1:$BPORT" "$TMP/feeds-herald/rss.xml" ${BARE_ARGS:-} 2>"$TMP/bare.log" &
  BARE_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$BPORT/rss.xml" -o /dev/null && break; sleep 0.1; done
  URL_bare=http://127.0.0.1:$BPORT/rss.xml
  PID_bare=$BARE_PID
  SERVERS="nginx herald bare"
fi

etag_of() { # URL [curl args...]: the ETag of that response
  local url=$1; shift
  curl -s -o /dev/null -D - "$@" "$url" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p'
}
ETAG_nginx=$(etag_of "$URL_nginx" -H 'Accept-Encoding: gzip')
ETAG_herald=$(etag_of "$URL_herald" -H 'Accept-Encoding: gzip')
[ -n "${BARE:-}" ] && ETAG_bare=$(etag_of "$URL_bare" -H 'Accept-Encoding: gzip')

case_args() { # server case: the extra wrk/curl headers
  case $2 in
    plain) ;;
    gzip) printf '%s\n' -H 'Accept-Encoding: gzip' ;;
    304) eval "printf '%s\n' -H 'Accept-Encoding: gzip' -H \"If-None-Match: \$ETAG_$1\"" ;;
  esac
}

# One sample response per server and case: status, encoding, length.
sample() { # server case -> "status encoding body_bytes etag"
  local url; eval "url=\$URL_$1"
  local -a h; mapfile -t h < <(case_args "$1" "$2")
  rm -f "$TMP/body"; : >"$TMP/body"
  curl -s -o "$TMP/body" -D "$TMP/head" "${h[@]}" "$url"
  local st enc tag
  st=$(head -1 "$TMP/head" | awk '{print $2}')
  enc=$(tr -d '\r' <"$TMP/head" | sed -n 's/^[Cc]ontent-[Ee]ncoding: //p')
  tag=$(tr -d '\r' <"$TMP/head" | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
  echo "$st ${enc:-identity} $(stat -c %s "$TMP/body") $tag"
}

SIZE_PLAIN=$(stat -c %s "$TMP/feeds/rss.xml")
SIZE_GZ=$(stat -c %s "$TMP/feeds/rss.xml.gz")
echo "== /rss.xml: $SIZE_PLAIN bytes, gzip twin $SIZE_GZ bytes"
echo "== nginx $("$NGINX" -v 2>&1 | sed 's#.*/##') on :$NPORT (pid $NGINX_PID, workers $(pgrep -P "$NGINX_PID" | tr '\n' ' ')); herald on :$HPORT (pid $HERALD_PID)"
echo "== sample responses (status encoding body_bytes etag)"
declare -A WANT=([plain]="200 identity $SIZE_PLAIN" [gzip]="200 gzip $SIZE_GZ" [304]="304 identity 0")
for c in plain gzip 304; do
  for s in $SERVERS; do
    got=$(sample $s $c)
    printf '  %-6s %-6s %s\n' "$c" "$s" "$got"
    read -r st enc len _ <<<"$got"
    if [ "$c" = 304 ]; then ok=$([ "$st $len" = "304 0" ] && echo y || true)
    else ok=$([ "$st $enc $len" = "${WANT[$c]}" ] && echo y || true); fi
    [ -n "$ok" ] || { echo "wrong response from $s for $c: want '${WANT[$c]}', got '$got'" >&2; exit 1; }
  done
done

cpu_ticks() { # pid: utime+stime of it and its children processes (nginx workers)
  local total=0 p f
  for p in "$1" $(pgrep -P "$1" || true); do
    f=$(cut -d')' -f2- "/proc/$p/stat") || continue
    set -- $f
    total=$((total + ${12} + ${13}))
  done
  echo $total
}
TCK=$(getconf CLK_TCK)

RESULTS=$TMP/results.tsv
printf 'rep\tcase\tserver\treqs\tseconds\trps\tbytes_per_req\tcpu_us_per_req\terrors\tp50_ms\tp99_ms\n' >"$RESULTS"
run() { # rep case server
  local rep=$1 c=$2 s=$3 url pid out
  eval "url=\$URL_$s; pid=\$PID_$s"
  local -a h; mapfile -t h < <(case_args "$s" "$c")
  local before after
  before=$(cpu_ticks "$pid")
  out=$(timeout $((DURATION + 30)) wrk --latency -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "${h[@]}" "$url")
  after=$(cpu_ticks "$pid")
  echo "$out" >"$TMP/wrk-$rep-$c-$s.txt"
  python3 - "$rep" "$c" "$s" "$before" "$after" "$TCK" "$RESULTS" "$TMP/wrk-$rep-$c-$s.txt" <<'PY'
import re, sys
rep, case, server, before, after, tck, results, path = sys.argv[1:]
out = open(path).read()
m = re.search(r"(\d+) requests in ([\d.]+)(m?s), ([\d.]+)([KMGT]?B) read", out)
reqs, secs = int(m.group(1)), float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
read = float(m.group(4)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}[m.group(5)]
errors = 0
for e in re.finditer(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
    errors += sum(int(x) for x in e.groups())
n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
if n:
    errors += int(n.group(1))
cpu_us = (int(after) - int(before)) * 1e6 / int(tck)
def lat(p):
    m = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)] if m else float("nan")
with open(results, "a") as f:
    f.write(f"{rep}\t{case}\t{server}\t{reqs}\t{secs:.2f}\t{reqs/secs:.0f}\t{read/reqs:.0f}\t{cpu_us/reqs:.2f}\t{errors}\t{lat(50):.2f}\t{lat(99):.2f}\n")
print(f"  rep {rep} {case:5} {server:6} {reqs/secs:9.0f} req/s  {cpu_us/reqs:7.2f} CPU us/req  {read/reqs:8.0f} B/req  p50 {lat(50):6.2f} ms  errors {errors}")
PY
}

echo "== runs: wrk -t$THREADS -c$CONNS -d${DURATION}s, $REPS repetitions, servers alternated"
for rep in $(seq 1 "$REPS"); do
  for c in $CASES; do
    if [ $((rep % 2)) -eq 1 ]; then order=$SERVERS; else order=$(echo $SERVERS | tr ' ' '\n' | tac | tr '\n' ' '); fi
    for s in $order; do
      run "$rep" "$c" "$s"
    done
  done
done

echo "== sample responses after the runs"
for c in plain gzip 304; do
  for s in $SERVERS; do printf '  %-6s %-6s %s\n' "$c" "$s" "$(sample $s $c)"; done
done
echo "== server CPU over the whole bench: nginx $(cpu_ticks "$NGINX_PID") ticks, herald $(cpu_ticks "$HERALD_PID") ticks (1 tick = $((1000 / TCK)) ms)"
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$RESULTS" "$TMP"/wrk-*.txt "$TMP/herald.log" "$KEEP"/; fi

python3 - "$RESULTS" "$SIZE_PLAIN" "$SIZE_GZ" <<'PY'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
size = {"plain": int(sys.argv[2]), "gzip": int(sys.argv[3]), "304": 0}
print()
print("| case | server | runs | req/s (median) | CPU µs/req (median) | server CPU, cores | wrk p50 latency ms | bytes/req read | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
summary = {}
servers = list(dict.fromkeys(x["server"] for x in rows))
cases = list(dict.fromkeys(x["case"] for x in rows))
for c in cases:
    for s in sorted(servers, key=["nginx", "herald", "bare"].index):
        r = [x for x in rows if x["case"] == c and x["server"] == s]
        rps = st.median(float(x["rps"]) for x in r)
        cpu = st.median(float(x["cpu_us_per_req"]) for x in r)
        bpr = st.median(float(x["bytes_per_req"]) for x in r)
        p50 = st.median(float(x["p50_ms"]) for x in r)
        err = sum(int(x["errors"]) for x in r)
        summary[c, s] = (rps, cpu)
        print(f"| {c} | {s} | {len(r)} | {rps:,.0f} | {cpu:.2f} | {rps * cpu / 1e6:.2f} | {p50:.2f} | {bpr:,.0f} | {err} |")
print()
for s in [x for x in ["herald", "bare"] if x in servers]:
    print()
    print(f"| case | {s}/nginx req/s | {s}/nginx CPU/req | median of per-rep req/s ratios | median of per-rep CPU/req ratios |" + (" target (req/s ≥ 1, CPU ≤ 1) |" if s == "herald" else ""))
    print("|---|---:|---:|---:|---:|" + ("---|" if s == "herald" else ""))
    for c in cases:
        (nr, nc), (hr, hc) = summary[c, "nginx"], summary[c, s]
        per, perc = [], []
        for rep in sorted({x["rep"] for x in rows}):
            a = [x for x in rows if x["case"] == c and x["rep"] == rep and x["server"] == s]
            b = [x for x in rows if x["case"] == c and x["rep"] == rep and x["server"] == "nginx"]
            if a and b:
                per.append(float(a[0]["rps"]) / float(b[0]["rps"]))
                perc.append(float(a[0]["cpu_us_per_req"]) / float(b[0]["cpu_us_per_req"]))
        ok = (" met |" if hr >= nr and hc <= nc else " NOT met |") if s == "herald" else ""
        print(f"| {c} | {hr / nr:.2f} | {hc / nc:.2f} | {st.median(per):.2f} | {st.median(perc):.2f} |{ok}")
PY
