#!/usr/bin/env python3
"""Herald at the size of a real archive: what a site of 1,000, 10,000 and
100,000 articles costs to build, to start, to keep in memory and to edit,
for one or more Herald binaries measured side by side.

For each size, a Markdown corpus with categories and 0-3 tags per article
(`gen_corpus N DIR --md-only`, made once and cached under --work), and for
each repetition, each binary in turn (the order alternating between
repetitions, so all see the same background load):

1. cold build: `herald build` into empty output and state directories:
   wall time, peak RSS (wait4), files and bytes written (the output tree);
2. start on that output and state: `herald serve` until the first 200 on
   /rss.xml (wall time), its start-up log line, resident memory 2 s later;
3. restart: SIGTERM, `herald serve` again on what the first left behind:
   time to the first 200, the log line;
4. edits: the newest article's title changed in place, then polled on
   /rss.xml (conditional GET over one keep-alive connection, no sleeps)
   until the new title is served: milliseconds from before the write to
   the response read, p50 and p99 over --edits edits; the article is
   restored afterwards;
5. resident memory after the edits; SIGTERM.

Medians over repetitions are printed as a Markdown table. Python 3
standard library only; Linux only (/proc, wait4).

    python3 benches/scale.py                               # 1k, 10k; target/release/herald
    python3 benches/scale.py --sizes 100000 --reps 1 --edits 10
    python3 benches/scale.py --binary before=/tmp/herald-old --binary after=target/release/herald

It builds target/release/herald and the gen_corpus example first unless
--no-build is given, and runs a private copy of each binary.
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT_BASE = 18400


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def corpus(work, gen, n):
    d = os.path.join(work, f"c{n}")
    mark = os.path.join(work, f"c{n}.done")
    if not os.path.exists(mark):
        shutil.rmtree(d, ignore_errors=True)
        print(f"generating {n} articles in {d}", file=sys.stderr)
        sh(gen, str(n), d, "--md-only", stdout=subprocess.DEVNULL)
        open(mark, "w").close()
    return d


def tree_size(d):
    files = size = 0
    for root, _, names in os.walk(d):
        for name in names:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
                files += 1
            except OSError:
                pass
    return files, size


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def config(path, content, out, state, port):
    with open(path, "w") as f:
        f.write(
            f'content_dir = "{content}"\noutput_dir = "{out}"\nstate_dir = "{state}"\n'
            f'base_url = "https://news.example.org/"\nlisten = "127.0.0.1:{port}"\n'
            'admin_listen = "off"\n'
        )


class Serve:
    """One `herald serve`, its log in a file."""

    def __init__(self, binary, cfg, port, log):
        self.port = port
        self.log_path = log
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [binary, "--config", cfg, "serve"],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "w"),
            env={**os.environ, "NO_COLOR": "1", "RUST_LOG": "info"},
        )
        self.up = self.wait_up()

    def wait_up(self, limit=900):
        while time.monotonic() - self.t0 < limit:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited: {open(self.log_path).read()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/rss.xml")
                if c.getresponse().status == 200:
                    return time.monotonic() - self.t0
            except OSError:
                pass
            time.sleep(0.02)
        raise SystemExit("serve did not come up")

    def start_line(self):
        for line in open(self.log_path):
            if 'reason="start"' in line:
                return line.split("published", 1)[-1].strip()
        return "?"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def edit_latency(content, port, edits):
    """Edits the newest article's title `edits` times; ms to served."""
    newest = max(
        (os.path.join(r, n) for r, _, ns in os.walk(content) for n in ns if n.endswith(".md")),
        key=lambda p: p,
    )
    original = open(newest, "rb").read()
    text = original.decode()
    m = re.search(r'^title = "(.*)"$|^title: (.*)$', text, re.M)
    if not m:
        raise SystemExit(f"no title line in {newest}")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    etag = None
    out = []
    try:
        for i in range(edits):
            marker = f"Scale edit {os.getpid()} {i} {time.time_ns()}"
            line = m.group(0)
            new = line.replace(m.group(1) or m.group(2), marker)
            t0 = time.monotonic()
            with open(newest, "w") as f:
                f.write(text.replace(line, new, 1))
            while True:
                h = {"If-None-Match": etag} if etag else {}
                conn.request("GET", "/rss.xml", headers=h)
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    etag = r.getheader("ETag")
                    if marker.encode() in body:
                        break
                if time.monotonic() - t0 > 30:
                    raise SystemExit("an edit was not served within 30 s")
            out.append((time.monotonic() - t0) * 1000)
            time.sleep(0.3)
    finally:
        with open(newest, "wb") as f:
            f.write(original)
    time.sleep(1)
    return out


def run_one(name, binary, content, work, n, edits, port):
    d = os.path.join(work, f"run-{name}-{n}")
    out, state = os.path.join(d, "feeds"), os.path.join(d, "state")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    cfg = os.path.join(d, "herald.toml")
    config(cfg, content, out, state, port)
    r = {}
    t0 = time.monotonic()
    p = subprocess.Popen(
        [binary, "--config", cfg, "build"],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(d, "build.log"), "w"),
        env={**os.environ, "NO_COLOR": "1"},
    )
    _, status, ru = os.wait4(p.pid, 0)
    r["build_s"] = time.monotonic() - t0
    if status != 0:
        raise SystemExit(f"{name}: herald build failed: {open(os.path.join(d, 'build.log')).read()[-2000:]}")
    r["build_peak_mb"] = ru.ru_maxrss / 1024
    r["files"], size = tree_size(out)
    r["written_mb"] = size / 1e6

    s = Serve(binary, cfg, port, os.path.join(d, "serve1.log"))
    r["start_s"] = s.up
    time.sleep(2)
    r["start_rss_mb"] = rss_kb(s.proc.pid) / 1024
    r["start_line"] = s.start_line()
    s.stop()

    s = Serve(binary, cfg, port, os.path.join(d, "serve2.log"))
    r["restart_s"] = s.up
    r["restart_line"] = s.start_line()
    time.sleep(2)
    r["rss_mb"] = rss_kb(s.proc.pid) / 1024
    lat = edit_latency(content, port, edits)
    lat.sort()
    r["edit_p50_ms"] = statistics.median(lat)
    r["edit_p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    r["edit_rss_mb"] = rss_kb(s.proc.pid) / 1024
    s.stop()
    shutil.rmtree(d, ignore_errors=True)
    return r


COLUMNS = [
    ("build_s", "cold build s", "{:.1f}"),
    ("build_peak_mb", "build peak MB", "{:.0f}"),
    ("files", "files", "{:.0f}"),
    ("written_mb", "MB written", "{:.0f}"),
    ("start_s", "start on build s", "{:.2f}"),
    ("restart_s", "restart s", "{:.2f}"),
    ("rss_mb", "RSS MB", "{:.0f}"),
    ("edit_p50_ms", "edit p50 ms", "{:.0f}"),
    ("edit_p99_ms", "edit p99 ms", "{:.0f}"),
    ("edit_rss_mb", "RSS after edits MB", "{:.0f}"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--edits", type=int, default=15)
    ap.add_argument("--binary", action="append", default=[], help="NAME=PATH (repeatable)")
    ap.add_argument("--work", default="/tmp/herald-scale")
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    if not a.no_build:
        sh("cargo", "build", "--release", "--bin", "herald", "--example", "gen_corpus", cwd=ROOT)
    gen = os.environ.get("GEN", os.path.join(ROOT, "target/release/examples/gen_corpus"))
    binaries = []
    for spec in a.binary or [f"herald={os.path.join(ROOT, 'target/release/herald')}"]:
        name, _, path = spec.partition("=")
        private = os.path.join(a.work, f"bin-{name}")
        shutil.copy2(path, private)
        binaries.append((name, private))
    results = {}
    for n in [int(x) for x in a.sizes.split(",")]:
        content = corpus(a.work, gen, n)
        for rep in range(a.reps):
            order = binaries if rep % 2 == 0 else binaries[::-1]
            for i, (name, binary) in enumerate(order):
                r = run_one(name, binary, content, a.work, n, a.edits, PORT_BASE + i)
                print(f"{n} {name} rep {rep}: " + ", ".join(
                    f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                ), file=sys.stderr)
                results.setdefault((n, name), []).append(r)
    print("| articles | binary | " + " | ".join(c[1] for c in COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for (n, name), rs in results.items():
        cells = [fmt.format(statistics.median(r[k] for r in rs)) for k, _, fmt in COLUMNS]
        print(f"| {n:,} | {name} | " + " | ".join(cells) + " |")
    print()
    for (n, name), rs in results.items():
        print(f"- {n:,} {name}: start `{rs[-1]['start_line']}`; restart `{rs[-1]['restart_line']}`")


if __name__ == "__main__":
    main()
