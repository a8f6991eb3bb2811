#!/usr/bin/env bash
# herald build vs Hugo: wall time and peak RSS, medians of interleaved runs.
#
#   benches/build_vs_hugo.sh            # everything (1k, 10k, 100k mixed; 10k md-only vs Hugo)
#   REPS=7 SIZES="1000 10000" benches/build_vs_hugo.sh
#
# Environment:
#   WORK     where corpora and outputs go (default /tmp/herald-bench; ~1.5 GB
#            of corpora, up to ~5 GB of output, all kept until the end)
#   REPS     repetitions per measurement for 1k/10k (default 5)
#   REPS_BIG repetitions for sizes above 10k (default 3)
#   SIZES    mixed corpus sizes (default "1000 10000 100000")
#   HERALD   herald binary (default: target/release/herald, built here)
#   MD_N     size of the md-only corpus built by both (default 10000)
#
# Every repetition is: herald cold build (empty output and state dirs),
# herald second build over the same dirs (nothing changed: must write
# nothing, checked), and, for the md-only corpus, Hugo building its home
# and category RSS feeds, in the order herald, Hugo, herald, Hugo … so
# that load from other users of the machine falls on both alike.
# Peak RSS is GNU time's "Maximum resident set size".
set -euo pipefail

cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/herald-bench}
REPS=${REPS:-5}
REPS_BIG=${REPS_BIG:-3}
SIZES=${SIZES:-1000 10000 100000}
MD_N=${MD_N:-10000}

missing=()
command -v hugo >/dev/null || missing+=(hugo)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    echo "build_vs_hugo: needs Debian packages: ${missing[*]}" >&2
    if [ "$(id -u)" = 0 ]; then
        echo "build_vs_hugo: installing them: apt-get install -y ${missing[*]}" >&2
        apt-get install -y "${missing[@]}" >&2
    else
        echo "build_vs_hugo: run: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

if [ -z "${HERALD:-}" ]; then
    cargo build --release --quiet --bin herald
    HERALD=$PWD/target/release/herald
fi
cargo build --release --quiet --example gen_corpus
GEN=$PWD/target/release/examples/gen_corpus
mkdir -p "$WORK"

# corpus DIR N [flag]: generates once; a marker records what is there.
corpus() {
    local dir=$1 n=$2 flag=${3:-}
    if [ "$(cat "$dir/.corpus" 2>/dev/null)" != "$n $flag" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        "$GEN" "$n" "$dir" $flag
        echo "$n $flag" >"$dir/.corpus"
    fi
}

cat >"$WORK/herald.toml" <<'TOML'
title = "Herald bench"
base_url = "https://news.example.org/"
timezone = "Asia/Shanghai"
max_items = 50
TOML

# Hugo 0.111: only the home page's and the category terms' RSS, 50 items;
# regular pages are listed in feeds but never rendered (cascade _build),
# every other kind is off and no HTML is written. rssLimit is the 0.111
# spelling (0.114 moved it to [services.rss] limit).
mkdir -p "$WORK/md-$MD_N"
cat >"$WORK/md-$MD_N/hugo.toml" <<'TOML'
baseURL = "https://news.example.org/"
title = "Herald bench"
disableKinds = ["section", "sitemap", "robotsTXT", "404"]
rssLimit = 50
[taxonomies]
category = "categories"
[outputs]
home = ["RSS"]
taxonomy = ["RSS"]
term = ["RSS"]
[[cascade]]
[cascade._build]
render = "never"
list = "always"
[cascade._target]
kind = "page"
TOML

RESULTS=$WORK/results.tsv
: >"$RESULTS"

# measure LABEL CMD...: appends "LABEL seconds peak_kb" to the results.
measure() {
    local label=$1
    shift
    local log=$WORK/last.log
    /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" >"$log" 2>&1 || {
        echo "build_vs_hugo: $label failed:" >&2
        cat "$log" >&2
        exit 1
    }
    echo "$label $(cat "$WORK/time.out")" >>"$RESULTS"
}

# herald_pair LABEL CONTENT RUN: a cold build and a second one.
herald_pair() {
    local label=$1 content=$2 run=$3
    measure "$label cold" "$HERALD" --config "$WORK/herald.toml" --content "$content" \
        --output "$run/out" --state "$run/state" build
    measure "$label second" "$HERALD" --config "$WORK/herald.toml" --content "$content" \
        --output "$run/out" --state "$run/state" build
    # (colour codes stripped: herald may colour its log even into a file)
    if ! sed 's/\x1b\[[0-9;]*m//g' "$WORK/last.log" | grep -q 'written=0 '; then
        echo "build_vs_hugo: second build of $label wrote files:" >&2
        cat "$WORK/last.log" >&2
        exit 1
    fi
}

# Output trees are deleted only when the script ends: on ext4 without a
# journal (this VM's root file system), inodes freed in the last minutes
# are skipped one by one when new ones are allocated, so deleting 10^4 to
# 10^5 files right before a cold build slows it by up to 2x (measured:
# 69.5 s against 30-31 s at 100k). The Hugo comparison runs first, before
# anything has been deleted. Give the machine a few minutes after deleting
# large trees (an earlier run's) before starting.
RUNS=$WORK/runs-$$
trap 'rm -rf "$RUNS"' EXIT

corpus "$WORK/md-$MD_N/content" "$MD_N" --md-only
for r in $(seq "$REPS"); do
    run=$RUNS/md-$r
    herald_pair "herald md-$MD_N" "$WORK/md-$MD_N/content" "$run"
    (cd "$WORK/md-$MD_N" && measure "hugo md-$MD_N cold" hugo --quiet --source . -d "$run/hugo")
    echo "md-$MD_N rep $r: $(tail -3 "$RESULTS" | awk '{print $(NF-1) "s"}' | paste -sd' ')" >&2
done
items=$(grep -c '<item>' "$RUNS/md-1/hugo/index.xml")
feeds=$(find "$RUNS/md-1/hugo" -name index.xml | wc -l)
files=$(find "$RUNS/md-1/out" -type f | wc -l)

for n in $SIZES; do
    corpus "$WORK/mixed-$n" "$n"
    reps=$REPS
    [ "$n" -gt 10000 ] && reps=$REPS_BIG
    for r in $(seq "$reps"); do
        herald_pair "herald mixed-$n" "$WORK/mixed-$n" "$RUNS/mixed-$n-$r"
        echo "mixed-$n rep $r: $(tail -2 "$RESULTS" | awk '{print $(NF-1) "s"}' | paste -sd' ')" >&2
    done
done

# Medians per label.
echo
echo "| run | reps | median wall s | median peak RSS MB |"
echo "|---|---:|---:|---:|"
awk '{ key=$1" "$2" "$3; t[key]=t[key]" "$4; m[key]=m[key]" "$5; order[key]=NR } END {
    for (k in t) print order[k] "\t" k "\t" t[k] "\t" m[k] }' "$RESULTS" | sort -n |
while IFS=$'\t' read -r _ key ts ms; do
    med() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
    n=$(echo "$ts" | wc -w)
    mt=$(echo "$ts" | med)
    mm=$(echo "$ms" | med)
    printf '| %s | %d | %.2f | %.0f |\n' "$key" "$n" "$mt" "$(echo "$mm / 1024" | bc -l)"
done
echo
echo "Hugo wrote $feeds RSS files ($items items in the main one); herald wrote $files files."
echo "Raw: $RESULTS ($(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(date -u +%F))"
