#!/usr/bin/env bash
# Pathological inputs: how the cost of one article file grows with its size.
#
#   benches/pathological.sh                            # the main classes at 64K 256K 1M
#   SIZES="4K 16K 64K" CLASSES="yaml-flow-nesting md-categories" benches/pathological.sh
#   HERALD=/path/to/herald REPS=5 TIMEOUT=30 benches/pathological.sh
#   benches/pathological.sh list                       # the classes (main, extra), one a line
#   benches/pathological.sh gen CLASS SIZE FILE        # write one input, run nothing
#   benches/pathological.sh seeds [DIR] [SIZE]         # the fuzz seeds (default fuzz/seeds, 4K)
#   TIMEOUT=60 benches/pathological.sh table RESULTS.tsv  # the tables again, from a run's raw file
#
# For each class and size: generate ONE article file of exactly that many
# bytes, then REPS times, each in a fresh workspace (content/ holding only
# that file, empty feeds/ and state/), run `herald build` under
# /usr/bin/time (wall time, peak RSS) and record the outcome and the bytes
# written to feeds/. The tables give medians per cell and, per class, the
# growth of wall time from each size to the next and from the smallest to
# the largest, and of peak RSS and output: linear work grows by about the
# ratio of the sizes (4 per step, 16 for 1M / 64K by default), less where
# the fixed cost of starting the process dominates.
#
# Outcomes: `published` (exit 0; `+warn` when the log has a warning),
# `rejected` (exit 1 with `rejected=1` in the log: the file's error is
# what Herald should say), `timeout` (killed after TIMEOUT s, shown as
# "> TIMEOUT s"; the cell's other repetitions are skipped), `out of memory`
# (an allocation failed under the MEM_LIMIT address-space cap), `output
# cap` (killed once feeds/ held more than OUT_LIMIT), `write failed` (exit
# 5: writing feeds/ failed, e.g. a name longer than the file system
# allows), `panic`, or `exit N`. The first error or warning of each
# cell's first run is listed under the tables.
#
# Environment:
#   HERALD     herald binary (default: target/release/herald, built here)
#   SIZES      sizes, in bytes or with K/M suffixes (IEC) (default "64K 256K 1M")
#   CLASSES    classes to run, or `main`, `extra`, `all` (default: main; see `list`)
#   REPS       repetitions per cell; the median is reported (default 3)
#   TIMEOUT    seconds before a run is killed (default 60)
#   MEM_LIMIT  address-space cap per run, MiB (default 4096)
#   OUT_LIMIT  cap on feeds/ per run, MiB (default 2048): some inputs make
#              Herald write without bound, and the disk is shared
#   WORK       scratch directory (default: a new one under $TMPDIR, removed
#              at the end)
#   KEEP_GOING when 1, a class that timed out at one size is still run at
#              the larger ones (default: they are reported as skipped)
#
# Run it niced on a shared machine: `nice -n 5 benches/pathological.sh`.
set -euo pipefail

CALLER=$PWD
cd "$(dirname "$0")/.."
REPO=$PWD
SIZES=${SIZES:-64K 256K 1M}
CLASSES=${CLASSES:-main}
REPS=${REPS:-3}
TIMEOUT=${TIMEOUT:-60}
MEM_LIMIT=${MEM_LIMIT:-4096}
OUT_LIMIT=${OUT_LIMIT:-2048}
KEEP_GOING=${KEEP_GOING:-0}

# The classes. MAIN_CLASSES are the ones the table in README.md follows:
# the shapes a careless editor or a hostile file can take, and every shape
# found slow on the way. EXTRA_CLASSES were tried as well and grew
# linearly before any limit; they stay runnable (CLASSES=extra or all).
# README.md says what each one is; gen() below writes them.
MAIN_CLASSES=(
    md-categories
    md-tags
    md-huge-category
    yaml-flow-nesting
    yaml-flow-unclosed
    yaml-flow-mappings
    yaml-block-mappings
    yaml-block-sequences
    yaml-anchors
    yaml-anchors-tags
    toml-array-nesting
    toml-table-nesting
    html-div-nesting
    html-unclosed-div
    html-nested-lists
    html-nested-anchors
    html-nested-tables
    html-table-soup
    html-formatting-soup
    html-font-soup
    html-attributes
    md-blockquote-nesting
    md-tab-blockquotes
    md-list-nesting
    md-tab-lists
    md-unmatched-delimiters
    md-table-columns
    md-huge-title
    yaml-huge-summary
    yaml-huge-slug
    column-huge-paragraph
    column-tiny-paragraphs
    column-huge-title
)
EXTRA_CLASSES=(
    html-template-nesting
    html-svg-nesting
    md-link-brackets
    md-nested-images
    md-backtick-runs
    md-emphasis-runs
    md-inline-comments
    md-unclosed-destinations
    md-autolinks
    md-lt-runs
    md-link-refs
    md-footnotes
    md-ordered-list-nesting
    column-image-lines
    column-blank-line
    yaml-folded-lines
    yaml-many-keys
    yaml-quoted-escapes
)
ALL_CLASSES=("${MAIN_CLASSES[@]}" "${EXTRA_CLASSES[@]}")

FM_YAML='---\ntitle: "Pathological input"\ndate: 2025-05-22T06:40:00+08:00\n'
FM_END='---\n'
BODY='Body.\n'

# fill SIZE HEAD UNIT MID CLOSE TAIL [PAD]: writes to stdout exactly SIZE
# bytes: HEAD, then UNIT repeated, then MID, then CLOSE as many times as
# UNIT when CLOSE is not empty (a nesting), then PAD (default a newline)
# repeated up to SIZE, then TAIL. In UNIT and CLOSE, @I is the
# repetition's number (from 1), @P the one before, @S two spaces per
# level. Escapes (\n, \t) are read as awk reads -v values.
fill() {
    LC_ALL=C awk -v size="$1" -v head="$2" -v unit="$3" -v mid="$4" -v closer="$5" -v tail="$6" -v pad="${7:-\n}" '
    # (by hand: gsub is slow in some awks, and this runs once per unit)
    function expand(u, i,    out, k, t) {
        out = ""
        while ((k = index(u, "@")) > 0) {
            t = substr(u, k + 1, 1)
            out = out substr(u, 1, k - 1) (t == "I" ? i : t == "P" ? i - 1 : t == "S" ? sp : "@" t)
            u = substr(u, k + 2)
        }
        return out u
    }
    BEGIN {
        fixed = length(head) + length(mid) + length(tail)
        if (fixed > size) { print "pathological: size " size " is below the fixed part (" fixed ")" > "/dev/stderr"; exit 2 }
        printf "%s", head
        n = fixed
        counted = (unit ~ /@[IPS]/ || closer ~ /@[IPS]/)
        spaced = (unit ~ /@S/)
        sp = ""
        reps = 0
        if (closer != "" && !counted) {
            reps = int((size - fixed) / (length(unit) + length(closer)))
            # Build the run by doubling: two appends per level would be slow at 1 MiB.
            o = ""; c = ""; u = unit; k = closer; r = reps
            while (r > 0) { if (r % 2) { o = o u; c = c k }; u = u u; k = k k; r = int(r / 2) }
            printf "%s%s%s", o, mid, c
            n += reps * (length(unit) + length(closer))
        } else {
            for (i = 1; ; i++) {
                if (spaced) sp = sp "  "
                s = counted ? expand(unit, i) : unit
                cl = counted ? expand(closer, i) : closer
                if (n + length(s) + length(cl) + closing > size) break
                printf "%s", s
                n += length(s)
                closing += length(cl)
                reps = i
            }
            printf "%s", mid
            for (i = 1; i <= reps && closer != ""; i++) { printf "%s", (counted ? expand(closer, i) : closer) }
            n += closing
        }
        for (; n < size; n++) printf "%s", pad
        printf "%s", tail
    }'
}

# ext CLASS: the file extension a class is written with.
ext() {
    case $1 in
    column-*) echo txt ;;
    *) echo md ;;
    esac
}

# gen CLASS SIZE: writes one article of the class, SIZE bytes, to stdout.
gen() {
    local size=$2
    local y=$FM_YAML e=$FM_END b=$BODY
    local t='+++\ntitle = "Pathological input"\ndate = 2025-05-22T06:40:00+08:00\n'
    local col='May 22, 2025, 6:40 a.m.\n\nColumns and Opinions\n\n'
    case $1 in
    # Front matter listing ever more distinct labels. Each category is
    # three more feeds that each carry the article with all its labels.
    md-categories) fill "$size" "${y}categories:\n" '  - c@I\n' '' '' "$e$b" ;;
    md-tags) fill "$size" "${y}tags:\n" '  - t@I\n' '' '' "$e$b" ;;
    # One category whose name is the whole file: its feeds' directory name.
    md-huge-category) fill "$size" "${y}categories: [\"" 'word ' '"]\n' '' "$e$b" ;;
    # x: [[[[ … ]]]] in YAML flow style; the same never closed; {a: {a: … }}.
    yaml-flow-nesting) fill "$size" "${y}x: " '[' '' ']' "\n$e$b" ;;
    yaml-flow-unclosed) fill "$size" "${y}x: " '[' '' '' "\n$e$b" ;;
    yaml-flow-mappings) fill "$size" "${y}x: " '{a: ' '1' '}' "\n$e$b" ;;
    # Indented block mappings, one level deeper per line (the size grows
    # with the square of the depth: 1 MiB is about 1,000 levels).
    yaml-block-mappings) fill "$size" "${y}x:\n" '@Sk:\n' '' '' "$e$b" ;;
    # Compact nested block sequences, `- - - - …` on one line: depth grows
    # with the size.
    yaml-block-sequences) fill "$size" "${y}x:\n  " '- ' 'v' '' "\n$e$b" ;;
    # Billion laughs: each anchor is a list of ten aliases of the one
    # before, as many levels as fit, under keys Herald ignores.
    yaml-anchors) fill "$size" "${y}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" \
        'l@I: &l@I [*l@P, *l@P, *l@P, *l@P, *l@P, *l@P, *l@P, *l@P, *l@P, *l@P]\n' '' '' "$e$b" ;;
    # The same read by Herald: nine levels (shallow enough for serde_yaml's
    # depth limit), each as wide as the size allows, and `tags:` an alias
    # of the last, so the aliases must be expanded.
    yaml-anchors-tags)
        LC_ALL=C awk -v size="$size" -v head="$y" -v tail="tags: *l8\n$e$b" '
        BEGIN {
            levels = 9
            w = int((size - length(head) - length(tail) - 8 * levels) / (levels * 6))
            if (w < 1) w = 1
            printf "%s", head
            n = length(head) + length(tail)
            for (l = 0; l < levels; l++) {
                s = "l" l ": &l" l " ["
                for (j = 0; j < w; j++) s = s (j ? ", " : "") (l ? "*l" (l - 1) : "lol")
                s = s "]\n"
                printf "%s", s
                n += length(s)
            }
            for (; n < size; n++) printf "\n"
            printf "%s", tail
        }'
        ;;
    toml-array-nesting) fill "$size" "${t}x = " '[' '' ']' '\n+++\nBody.\n' ;;
    toml-table-nesting) fill "$size" "${t}x = " '{a = ' '1' '}' '\n+++\nBody.\n' ;;
    # Raw HTML in the body goes through ammonia (html5ever). Nested and
    # closed; opened and never closed; lists in lists.
    html-div-nesting) fill "$size" "$y$e" '<div>' 'x' '</div>' '\n' ;;
    html-unclosed-div) fill "$size" "$y$e" '<div>' '' '' 'x\n' ;;
    html-nested-lists) fill "$size" "$y$e" '<ul><li>' 'x' '' '\n' ;;
    # A link opened inside a link: the adoption agency runs for each.
    html-nested-anchors) fill "$size" "$y$e" '<a href=#>x<div>' '' '' '\n' ;;
    html-nested-tables) fill "$size" "$y$e" '<table><tr><td>' 'x' '' '\n' ;;
    # Text and inline elements straight inside <table>: foster parenting.
    html-table-soup) fill "$size" "$y$e" '<table><tr>x<b>y<table>' '' '' '\n' ;;
    # Unclosed formatting elements, each distinct (the Noah's Ark clause
    # keeps at most three identical ones), text only at the end.
    html-formatting-soup) fill "$size" "$y$e" '<b c=@I><i>' '' '' 'x\n' ;;
    # The same with a paragraph before each: every <p> reopens (clones)
    # all the formatting elements still active, so the tree grows with
    # the square of their number.
    html-font-soup) fill "$size" "$y$e" '<p><font size=@I>' 'x' '' '\n' ;;
    # One element with ever more distinct attributes (each new name is
    # checked against the ones before it).
    html-attributes) fill "$size" "$y$e<div" ' a@I' '>x</div>' '' '\n' ;;
    # Block quotes and lists nested on one line, with spaces and with tabs
    # (a tab after a marker is expanded to the next tab stop).
    md-blockquote-nesting) fill "$size" "$y$e" '> ' 'x' '' '\n' ;;
    md-tab-blockquotes) fill "$size" "$y$e" '>\t' 'x' '' '\n' ;;
    md-list-nesting) fill "$size" "$y$e" '- ' 'x' '' '\n' ;;
    md-tab-lists) fill "$size" "$y$e" '-\t' 'x' '' '\n' ;;
    # Emphasis delimiters and link brackets that never close, one paragraph.
    md-unmatched-delimiters) fill "$size" "$y$e" '*a _b [c ' '' '' '\n' ;;
    # A table header with many columns over rows of one cell each (half
    # the file each): every short row is padded to the header's width.
    md-table-columns)
        fill $((size / 2)) "$y$e" '|a' '|\n' '|-' '\n' ' '
        fill $((size - size / 2)) '' '|x|\n' '' '' ''
        ;;
    # One huge front-matter string each: the title (in every feed, the
    # page and the index), the summary, the slug (a directory name).
    md-huge-title) fill "$size" '---\ntitle: "' 'word ' '"\ndate: 2025-05-22T06:40:00+08:00\n' '' "$e$b" ;;
    yaml-huge-summary) fill "$size" "${y}summary: \"" 'word ' '"\n' '' "$e$b" ;;
    yaml-huge-slug) fill "$size" "${y}slug: \"" 'word-' '"\n' '' "$e$b" ;;
    # Scraped columns (FORMAT.md §1): one paragraph of the whole size;
    # ever more one-letter paragraphs; a title line of the whole size.
    column-huge-paragraph) fill "$size" "${col}Title\n\n" 'word ' '\n' '' '' ;;
    column-tiny-paragraphs) fill "$size" "${col}Title\n\n" 'p\n\n' '' '' '' ;;
    column-huge-title) fill "$size" "$col" 'word ' '\n\nBody.\n' '' '' ;;

    # The extra classes.
    html-template-nesting) fill "$size" "$y$e" '<template>' 'x' '' '\n' ;;
    html-svg-nesting) fill "$size" "$y$e" '<svg><g>' 'x' '' '\n' ;;
    md-link-brackets) fill "$size" "$y$e" '[' 'x' '](u)' '\n' ;;
    md-nested-images) fill "$size" "$y$e" '![' 'x' '](u)' '\n' ;;
    md-backtick-runs) fill "$size" "$y$e" '`@I ' '' '' '\n' ;;
    md-emphasis-runs) fill "$size" "$y$e" '_a*' '' '' '\n' ;;
    md-inline-comments) fill "$size" "$y$e" 'a <!-- ' '' '' '\n' ;;
    md-unclosed-destinations) fill "$size" "$y$e" '[a](<' '' '' '\n' ;;
    md-autolinks) fill "$size" "$y$e" '<http://a ' '' '' '\n' ;;
    md-lt-runs) fill "$size" "$y$e" 'a<b ' '' '' '\n' ;;
    md-link-refs) fill "$size" "$y$e" '[r@I] ' '\n\n' '[r@I]: /u\n' '' ;;
    md-footnotes) fill "$size" "$y$e" 'x[^@I] ' '\n\n' '[^@I]: d\n' '' ;;
    md-ordered-list-nesting) fill "$size" "$y$e" '1. ' 'x' '' '\n' ;;
    yaml-folded-lines) fill "$size" "${y}summary: first\n" '  word\n' '' '' "$e$b" ;;
    yaml-many-keys) fill "$size" "$y" 'k@I: v\n' '' '' "$e$b" ;;
    yaml-quoted-escapes) fill "$size" "${y}summary: \"" '\\t\\u00e9' '"\n' '' "$e$b" ;;
    column-image-lines) fill "$size" "${col}Title\n\n" 'image\n\n' 'Body.\n' '' '' ;;
    column-blank-line) fill "$size" "${col}Title\n\nBody.\n\n" ' \t' '\n' '' '' ;;
    *)
        echo "pathological: unknown class $1 (see: $0 list)" >&2
        return 2
        ;;
    esac
}

bytes() { numfmt --from=iec "$1"; }
human() {
    awk -v b="$1" 'BEGIN {
        if (b % 1048576 == 0) print b / 1048576 " MiB"
        else if (b % 1024 == 0) print b / 1024 " KiB"
        else print b " B"
    }'
}

# tables RESULTS: the Markdown tables of a results file (one line per
# cell: class, size, runs, median wall s, median peak KB, median feeds/
# bytes, outcomes, first message), classes in the order they ran.
tables() {
    local results=$1 c size n wall peak out outcome
    local classes sizes
    classes=$(cut -f1 "$results" | awk '!seen[$0]++')
    sizes=$(cut -f2 "$results" | sort -n -u)
    echo "| class | size | runs | median wall | median peak RSS | outcome | feeds/ written |"
    echo "|---|---:|---:|---:|---:|---|---:|"
    while IFS=$'\t' read -r c size n wall peak out outcome _; do
        case $outcome in
        skipped) printf '| %s | %s | 0 | (skipped) | | | |\n' "$c" "$(human "$size")" ;;
        # One run that timed out is enough: the cell is "more than TIMEOUT".
        *timeout*)
            printf '| %s | %s | %s | > %s s | %.0f MB | %s | %.1f MB |\n' "$c" "$(human "$size")" "$n" "$TIMEOUT" \
                "$(echo "$peak / 1024" | bc -l)" "$outcome" "$(echo "$out / 1048576" | bc -l)"
            ;;
        *)
            # A run stopped by a cap did not finish: its time is a lower bound.
            case $outcome in *"output cap"* | *"out of memory"*) ge='≥ ' ;; *) ge= ;; esac
            printf '| %s | %s | %s | %s%.2f s | %.0f MB | %s | %.1f MB |\n' "$c" "$(human "$size")" "$n" "$ge" "$wall" \
                "$(echo "$peak / 1024" | bc -l)" "$outcome" "$(echo "$out / 1048576" | bc -l)"
            ;;
        esac
    done <"$results"

    local first last
    first=$(head -n 1 <<<"$sizes") last=$(tail -n 1 <<<"$sizes")
    if [ "$first" != "$last" ]; then
        # Wall time from each size to the next and from the first to the
        # last; memory and output from the first to the last. Below about
        # 0.1 s a cell is mostly the process starting, so its ratio says
        # little: read the step between the two largest sizes.
        local -a sz
        mapfile -t sz <<<"$sizes"
        local head="| class |" rule="|---|" i
        for ((i = 1; i < ${#sz[@]}; i++)); do
            head+=" wall $(human "${sz[i]}") / $(human "${sz[i - 1]}") |"
            rule+="---:|"
        done
        if [ ${#sz[@]} -gt 2 ]; then
            head+=" wall $(human "$last") / $(human "$first") |"
            rule+="---:|"
        fi
        head+=" peak RSS $(human "$last") / $(human "$first") | feeds/ $(human "$last") / $(human "$first") |"
        rule+="---:|---:|"
        echo
        echo "Growth. Linear work: the ratio of the sizes ($((last / first)) from $(human "$first") to $(human "$last")). A cell that timed out or hit a cap makes a ratio a lower bound (> or ≥), a skipped one unknown (—)."
        echo
        echo "$head"
        echo "$rule"
        for c in $classes; do
            awk -F'\t' -v c="$c" -v sizes="${sz[*]}" -v t="$TIMEOUT" '
            function ratio(x, y) { return (x > 0 && y != "-" && y != "") ? sprintf("%.1f", y / x) : "—" }
            # wall(i, j): growth of the wall time from size i to size j.
            function wall(i, j) {
                if (x[i] ~ /timeout/ || x[i] ~ capped || x[i] == "skipped" || x[i] == "") return "—"
                if (x[j] == "skipped" || x[j] == "") return "—"
                if (x[j] ~ /timeout/) return sprintf("> %.0f", t / w[i])
                if (x[j] ~ capped) return "≥ " ratio(w[i], w[j])
                return ratio(w[i], w[j])
            }
            BEGIN { n = split(sizes, sz, " "); capped = "output cap|out of memory" }
            $1 == c { for (i = 1; i <= n; i++) if ($2 == sz[i]) { w[i] = $4; m[i] = $5; o[i] = $6; x[i] = $7 } }
            END {
                line = "| " c " |"
                for (i = 2; i <= n; i++) line = line " " wall(i - 1, i) " |"
                if (n > 2) line = line " " wall(1, n) " |"
                # Memory of an unfinished run is a lower bound; what it
                # wrote means nothing.
                unfinished = (x[n] ~ /timeout/ || x[n] ~ capped)
                bad = (x[1] ~ /timeout/ || x[1] ~ capped || x[1] == "skipped" || x[1] == "" || x[n] == "skipped" || x[n] == "")
                if (bad) line = line " — | — |"
                else if (unfinished) line = line " ≥ " ratio(m[1], m[n]) " | — |"
                else line = line " " ratio(m[1], m[n]) " | " ratio(o[1], o[n]) " |"
                print line
            }' "$results"
        done
    fi

    echo
    echo "What Herald said (first error or warning of the first run):"
    echo
    echo "| class | sizes | message |"
    echo "|---|---|---|"
    # One row per class and message, with the sizes that gave it.
    awk -F'\t' '$8 != "" { print $1 "\t" $2 "\t" $8 }' "$results" | while IFS=$'\t' read -r c size m; do
        printf '%s\t%s\t%s\n' "$c" "$(human "$size")" "$m"
    done | awk -F'\t' '
        { k = $1 "\t" $3; if (k in sizes) sizes[k] = sizes[k] ", " $2; else { order[n++] = k; sizes[k] = $2 } }
        END { for (i = 0; i < n; i++) { split(order[i], f, "\t"); printf "| %s | %s | `%s` |\n", f[1], sizes[order[i]], f[2] } }'
}

case ${1:-} in
list)
    printf 'main  %s\n' "${MAIN_CLASSES[@]}"
    printf 'extra %s\n' "${EXTRA_CLASSES[@]}"
    exit 0
    ;;
gen)
    [ $# -eq 4 ] || { echo "usage: $0 gen CLASS SIZE FILE" >&2; exit 2; }
    case $4 in /*) out=$4 ;; *) out=$CALLER/$4 ;; esac
    gen "$2" "$(bytes "$3")" >"$out"
    exit 0
    ;;
seeds)
    dir=${2:-fuzz/seeds}
    size=$(bytes "${3:-4K}")
    for c in "${ALL_CLASSES[@]}"; do
        case $c in
        md-categories | md-tags | md-huge-category) targets="markdown render" ;;
        column-*) targets="column render" ;;
        *) targets="markdown" ;;
        esac
        for target in $targets; do
            mkdir -p "$dir/$target"
            gen "$c" "$size" >"$dir/$target/$c.$(ext "$c")"
        done
    done
    echo "pathological: seeds of $(human "$size") written under $dir" >&2
    exit 0
    ;;
table)
    [ $# -eq 2 ] || { echo "usage: $0 table RESULTS.tsv" >&2; exit 2; }
    case $2 in /*) tables "$2" ;; *) tables "$CALLER/$2" ;; esac
    exit 0
    ;;
'') ;;
*)
    echo "usage: $0 [list | gen CLASS SIZE FILE | seeds [DIR] [SIZE] | table RESULTS.tsv]" >&2
    exit 2
    ;;
esac

[ -x /usr/bin/time ] || { echo "pathological: needs GNU time (/usr/bin/time; Debian: apt-get install time)" >&2; exit 1; }
command -v timeout >/dev/null || { echo "pathological: needs timeout (coreutils)" >&2; exit 1; }
if [ -z "${HERALD:-}" ]; then
    cargo build --release --quiet --bin herald
    HERALD=$REPO/target/release/herald
fi
case $CLASSES in
main) CLASSES="${MAIN_CLASSES[*]}" ;;
extra) CLASSES="${EXTRA_CLASSES[*]}" ;;
all) CLASSES="${ALL_CLASSES[*]}" ;;
esac
for c in $CLASSES; do
    [[ " ${ALL_CLASSES[*]} " == *" $c "* ]] || { echo "pathological: unknown class $c (see: $0 list)" >&2; exit 2; }
done
SIZE_BYTES=()
for s in $SIZES; do SIZE_BYTES+=("$(bytes "$s")"); done

OWN_WORK=0
if [ -z "${WORK:-}" ]; then
    OWN_WORK=1
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/herald-patho-XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
cat >"$WORK/herald.toml" <<'TOML'
title = "Pathological inputs"
base_url = "https://news.example.org/"
timezone = "Asia/Shanghai"
TOML
RESULTS=$WORK/results.tsv
: >"$RESULTS"
echo "herald $("$HERALD" --version 2>/dev/null | awk '{print $NF}'), binary $(sha256sum "$HERALD" | cut -c1-12); $(nproc) CPUs; $(date -u +%FT%TZ)" >&2

# run FILE: one build of FILE in a fresh workspace; sets R_WALL (s),
# R_PEAK (KB), R_OUT (bytes in feeds/) and R_OUTCOME, and leaves the log in
# $WORK/last.log. It runs in this shell, not a subshell, so that the
# workspace is gone before the next run starts and an interrupt can stop
# the build under way (RUN_PID).
RUN_PID=
run() {
    local file=$1 ws=$WORK/ws
    rm -rf "$ws"
    mkdir -p "$ws/content" "$ws/feeds" "$ws/state"
    cp "$file" "$ws/content/"
    local tf=$WORK/time.out log=$WORK/last.log capped=0
    rm -f "$tf"
    # The address-space cap makes a runaway allocation fail (Rust aborts
    # with "memory allocation of N bytes failed") instead of taking the
    # machine's memory from everyone else.
    (
        ulimit -v $((MEM_LIMIT * 1024))
        exec /usr/bin/time -f '%e %M' -o "$tf" timeout -k 5 "$TIMEOUT" \
            "$HERALD" --config "$WORK/herald.toml" --content "$ws/content" \
            --output "$ws/feeds" --state "$ws/state" build
    ) >"$log" 2>&1 &
    local pid=$! polls=0
    RUN_PID=$pid
    # Most runs end within a poll or two; feeds/ is only measured from the
    # second second on, so that short runs share no CPU with du.
    while kill -0 "$pid" 2>/dev/null; do
        sleep 0.05
        polls=$((polls + 1))
        if [ $((polls % 20)) -eq 0 ] && [ "$capped" = 0 ] &&
            [ "$(du -sm "$ws/feeds" 2>/dev/null | cut -f1)" -gt "$OUT_LIMIT" ]; then
            capped=1
            pkill -TERM -P "$pid" timeout 2>/dev/null || true
        fi
    done
    local rc=0
    wait "$pid" || rc=$?
    RUN_PID=
    # GNU time puts "Command exited with non-zero status N" (or "terminated
    # by signal") on a line of its own before the figures.
    local wall=0 peak=0
    [ -s "$tf" ] && { read -r wall peak < <(tail -n 1 "$tf") || true; }
    local outcome plain
    plain=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
    if [ "$capped" = 1 ]; then
        outcome="output cap"
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        outcome=timeout
    elif grep -q 'memory allocation of .* failed' <<<"$plain"; then
        outcome="out of memory"
    elif grep -q 'panicked' <<<"$plain"; then
        outcome=panic
    elif [ "$rc" = 0 ]; then
        outcome=published
        grep -q ' WARN ' <<<"$plain" && outcome=published+warn
    elif [ "$rc" = 1 ] && grep -q 'rejected=1' <<<"$plain"; then
        outcome=rejected
    elif [ "$rc" = 5 ] && grep -q '^herald: writing' <<<"$plain"; then
        outcome="write failed"
    else
        outcome="exit $rc"
    fi
    R_WALL=$wall R_PEAK=$peak R_OUT=$(du -sb "$ws/feeds" | cut -f1) R_OUTCOME=$outcome
    rm -rf "$ws"
}

# An interrupt stops the build under way (timeout passes the signal on).
trap 'if [ -n "$RUN_PID" ]; then pkill -TERM -P "$RUN_PID" timeout || true; wait "$RUN_PID" || true; fi; exit 130' INT TERM

# first_message: the first ERROR or WARN line of the last log (or the
# fatal line, or a panic), without the timestamp and the workspace path;
# past 100 characters its middle is cut (a huge input may be quoted whole).
first_message() {
    sed 's/\x1b\[[0-9;]*m//g' "$WORK/last.log" |
        grep -m1 -E ' (ERROR|WARN) |panicked|memory allocation|^herald: ' |
        sed -E 's/^[^ ]+ +(ERROR|WARN) +//' |
        awk -v ws="$WORK/ws/" '{
            while ((i = index($0, ws)) > 0) $0 = substr($0, 1, i - 1) substr($0, i + length(ws))
            gsub(/\|/, "/")
            gsub(/`/, "\x27")
            if (length($0) > 100) $0 = substr($0, 1, 55) " … " substr($0, length($0) - 39)
            print
        }' |
        # awk may count bytes: drop a character its cut split in two.
        iconv -c -f UTF-8 -t UTF-8 || true
}

for c in $CLASSES; do
    ex=$(ext "$c")
    skip=
    for size in "${SIZE_BYTES[@]}"; do
        if [ -n "$skip" ]; then
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$size" 0 "-" "-" "-" "skipped" >>"$RESULTS"
            echo "$c $(human "$size"): skipped (timed out at $skip)" >&2
            continue
        fi
        file=$WORK/2025-05-22-$c.$ex
        gen "$c" "$size" >"$file"
        walls=() peaks=() outs=() outcomes=()
        msg=
        for r in $(seq "$REPS"); do
            run "$file"
            walls+=("$R_WALL") peaks+=("$R_PEAK") outs+=("$R_OUT") outcomes+=("$R_OUTCOME")
            [ -n "$msg" ] || msg=$(first_message)
            echo "$c $(human "$size") rep $r: $R_WALL s, $((R_PEAK / 1024)) MB, $R_OUTCOME, feeds/ $((R_OUT / 1048576)) MB" >&2
            case $R_OUTCOME in timeout | "output cap" | "out of memory") break ;; esac
        done
        med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
        outcome=$(printf '%s\n' "${outcomes[@]}" | sort -u | paste -sd/)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$size" "${#walls[@]}" "$(med "${walls[@]}")" \
            "$(med "${peaks[@]}")" "$(med "${outs[@]}")" "$outcome" "$msg" >>"$RESULTS"
        rm -f "$file"
        [ "$KEEP_GOING" = 1 ] || case $outcome in *timeout* | *"output cap"*) skip=$(human "$size") ;; esac
    done
done

tables "$RESULTS"
echo
[ "$OWN_WORK" = 1 ] || echo "Raw: $RESULTS"
echo "($(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -sr), $(date -u +%F))"
