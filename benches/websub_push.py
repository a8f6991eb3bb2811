#!/usr/bin/env python3
"""WebSub push latency and fan-out of `herald serve`'s built-in hub.

Generates a corpus (default 10,000 articles) with `gen_corpus`, starts
`herald serve` with `[websub] builtin = true` on it, and runs a subscriber
(a threaded Python HTTP server on loopback that answers challenges and
records each delivery with its arrival time) that subscribes to
`/rss.xml` through Herald's hub. Then:

1. Latency: edits one recent article at a time in place (its title
   becomes a unique marker) and measures from just before the file is
   opened for writing until the subscriber has received a delivery whose
   body holds the marker. `--edits` edits (default 100), `--gap-ms` apart.
2. Fan-out: subscribes `--subscribers` callbacks in all (default 1,000;
   distinct paths on the same server) to `/rss.xml`, resets Herald's peak
   RSS (`/proc/PID/clear_refs`, as root), edits once per round and
   measures the time until every callback has the body with the marker,
   and Herald's peak RSS over the rounds (VmHWM).

Python 3 standard library only. Run from anywhere:

    python3 benches/websub_push.py
    python3 benches/websub_push.py --articles 1000 --edits 20 --subscribers 100

It builds `target/release/herald` and `gen_corpus` first (`--no-build`
skips that; `HERALD=path GEN=path` use other binaries), runs a private copy
of the binary, and removes its temporary directory at the end.
"""

import argparse
import http.server
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edit_latency as el  # noqa: E402  (corpus helpers, percentiles)

TIMEOUT_S = 30


class Subscriber:
    """Callbacks /cb/<n> on one threaded server: challenges echoed,
    deliveries recorded as (arrival time, body)."""

    def __init__(self):
        self.lock = threading.Condition()
        self.got = {}  # n -> list of (t, body)
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                body = q.get("hub.challenge", [""])[0].encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.path.rsplit("/", 1)[1])
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                t = time.perf_counter()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with outer.lock:
                    outer.got.setdefault(n, []).append((t, body))
                    outer.lock.notify_all()

        class Server(http.server.ThreadingHTTPServer):
            # Python's default backlog of 5 would drop connections when
            # Herald opens `delivery_concurrency` (32) at once.
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, n):
        return f"http://127.0.0.1:{self.port}/cb/{n}"

    def wait(self, ns, marker, t0):
        """Waits until every callback in `ns` got a body holding `marker`
        after `t0`; returns their arrival times (None on timeout)."""
        deadline = time.perf_counter() + TIMEOUT_S
        with self.lock:
            while True:
                times = []
                for n in ns:
                    hit = next((t for t, b in self.got.get(n, []) if t >= t0 and marker in b), None)
                    if hit is None:
                        break
                    times.append(hit)
                else:
                    return times
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None
                self.lock.wait(min(left, 0.5))


def subscribe(addr, topic, callback):
    data = urllib.parse.urlencode(
        {"hub.mode": "subscribe", "hub.topic": topic, "hub.callback": callback}
    ).encode()
    r = urllib.request.urlopen(f"http://{addr}/websub", data=data, timeout=10)
    if r.status != 202:
        raise RuntimeError(f"subscribe answered {r.status}")


def stored(state):
    """Subscriptions stored: websub.json, then the journal's changes if it
    follows the file's generation."""
    subs, generation = set(), 0
    try:
        with open(os.path.join(state, "websub.json")) as f:
            v = json.load(f)
        generation = v.get("generation", 0)
        subs = {(s["route"], s["callback"]) for s in v["subscriptions"]}
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(state, "websub.journal")) as f:
            lines = f.read().split("\n")
    except OSError:
        lines = []
    if lines and lines[0] and json.loads(lines[0]).get("generation") == generation:
        for line in lines[1:]:
            try:
                v = json.loads(line)
            except ValueError:
                break
            if "put" in v:
                subs.add((v["put"]["route"], v["put"]["callback"]))
            elif "del" in v:
                subs.discard((v["del"]["route"], v["del"]["callback"]))
    return len(subs)


def wait_stored(state, n):
    deadline = time.monotonic() + 120
    while stored(state) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {stored(state)} of {n} subscriptions stored")
        time.sleep(0.05)


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0


def edit(content, rel, marker):
    path = os.path.join(content, rel)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new, n = el.TITLE.subn(lambda m: f'title{m.group(1)}"{marker}"', text, count=1)
    if n != 1:
        raise RuntimeError(f"{path}: no title line")
    t0 = time.perf_counter()
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)
    return t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--articles", type=int, default=10_000)
    ap.add_argument("--edits", type=int, default=100)
    ap.add_argument("--gap-ms", type=float, default=100)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--tmp", default=None)
    a = ap.parse_args()

    if not a.no_build:
        subprocess.run(
            ["cargo", "build", "--release", "--quiet", "--bin", "herald", "--example", "gen_corpus"],
            cwd=el.REPO,
            check=True,
        )
    root = tempfile.mkdtemp(prefix="herald-websub-push-", dir=a.tmp)
    proc = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        shutil.copy2(el.HERALD, os.path.join(root, "herald"))
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=el.REPO,
                             capture_output=True, text=True).stdout.strip() or "?"
        print(f"herald {rev}; {os.cpu_count()} cores; "
              f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}", flush=True)
        content = os.path.join(root, "content")
        state = os.path.join(root, "state")
        subprocess.run([el.GEN, str(a.articles), content], check=True, stdout=subprocess.DEVNULL)
        files = el.newest_markdown(content, a.files)
        cfg = os.path.join(root, "herald.toml")
        with open(cfg, "w") as f:
            f.write(
                'base_url = "http://127.0.0.1/"\n'
                'timezone = "Asia/Shanghai"\n'
                f'content_dir = "{content}"\n'
                f'output_dir = "{os.path.join(root, "feeds")}"\n'
                f'state_dir = "{state}"\n'
                'listen = "127.0.0.1:0"\n'
                + el.admin_off(os.path.join(root, "herald"), root)
                + "[websub]\nbuiltin = true\nallow_private_callbacks = true\n"
                "requests_per_minute = 1000000\nmax_subscriptions_per_host = 100000\n"
            )
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        proc = subprocess.Popen([os.path.join(root, "herald"), "--config", cfg, "serve"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env)
        addr = None
        for raw in proc.stderr:
            m = el.LISTENING.search(el.ANSI.sub("", raw.decode("utf-8", "replace")))
            if m:
                addr = m.group(1)
                break
        if addr is None:
            raise RuntimeError("herald did not start")
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        topic = "http://127.0.0.1/rss.xml"
        sub = Subscriber()

        # 1. Latency, one subscriber.
        subscribe(addr, topic, sub.url(0))
        wait_stored(state, 1)
        lat, timeouts = [], 0
        for i in range(a.edits):
            marker = f"PushMarker n{i} {time.time_ns()}"
            t0 = edit(content, files[i % len(files)], marker)
            got = sub.wait([0], marker.encode(), t0)
            if got is None:
                timeouts += 1
            else:
                lat.append((got[0] - t0) * 1000.0)
            time.sleep(a.gap_ms / 1000.0)
        v = sorted(lat)
        print()
        print(f"{a.articles} articles; file save -> subscriber callback has the new /rss.xml, ms")
        print()
        print("| n | median | p90 | p99 | max | min | timeouts |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {len(v)} | {statistics.median(v):.1f} | {el.pct(v, 90):.1f} | {el.pct(v, 99):.1f} "
              f"| {v[-1]:.1f} | {v[0]:.1f} | {timeouts} |", flush=True)

        # 2. Fan-out.
        for n in range(1, a.subscribers):
            subscribe(addr, topic, sub.url(n))
        wait_stored(state, a.subscribers)
        rss_before = status(proc.pid, "VmRSS")
        hwm_start = status(proc.pid, "VmHWM")
        try:
            with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            reset = True
        except OSError:
            reset = False
        size = len(urllib.request.urlopen(f"http://{addr}/rss.xml", timeout=10).read())
        rows = []
        for r in range(a.rounds):
            marker = f"FanMarker r{r} {time.time_ns()}"
            t0 = edit(content, files[r % len(files)], marker)
            got = sub.wait(range(a.subscribers), marker.encode(), t0)
            if got is None:
                raise RuntimeError(f"round {r}: not every subscriber got the body in {TIMEOUT_S} s")
            got.sort()
            rows.append(((got[0] - t0) * 1000, (statistics.median(got) - t0) * 1000,
                         (got[-1] - t0) * 1000))
            time.sleep(1)
        hwm = status(proc.pid, "VmHWM")
        print()
        print(f"{a.subscribers} subscribers of /rss.xml ({size} bytes); file save -> the "
              f"first / median / last callback has the body, ms")
        print()
        print("| round | first | median | all |")
        print("|---:|---:|---:|---:|")
        for i, (f0, m, l) in enumerate(rows):
            print(f"| {i + 1} | {f0:.0f} | {m:.0f} | {l:.0f} |")
        print()
        print(f"herald RSS before the rounds: {rss_before / 1024:.1f} MiB; peak during them "
              f"(VmHWM{' after reset' if reset else ', since start'}): {hwm / 1024:.1f} MiB; "
              f"peak since start before the reset: {hwm_start / 1024:.1f} MiB")
        return 0
    finally:
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
