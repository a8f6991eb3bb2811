#!/usr/bin/env python3
"""The built-in WebSub hub under load, binaries side by side.

Three measurements, each on a fresh `herald serve` (`[websub] builtin =
true`) over a small generated site, with subscriptions written into
`state/websub.json` before the start:

- `renewals`: `/rss.xml` throughput and p99 with `wrk` (or, without it,
  a Python load generator) for `--secs` seconds, alone and then while a
  client re-subscribes existing callbacks (renewals: verified, stored) at
  `--rate` per second, with `--subs` subscriptions stored (default 9,300).
  Prints requests/s, p99 and the renewals actually achieved per second.
- `slow`: `--slow` subscribers (default 1,000) whose callbacks never answer
  a delivery and one fast subscriber (sorted last); the feed changes
  twice, `--gap` seconds apart, and the fast one's delivery time is
  measured for each change (capped at `--cap` seconds). Default timeouts.
- `fds`: `--hosts` subscriptions (default 10,000), each on its own callback
  host (127.A.B.C, servers that keep connections alive), Herald under
  `ulimit -n --nofile` (default 4096); one change; samples Herald's open
  descriptors and a reader's `/rss.xml` every 100 ms until every callback
  has the delivery (or `--cap` seconds). Prints the most descriptors in
  use, deliveries, time, and readers' failed requests.

Callbacks are served by one asyncio server in this script (loopback only).
Python 3 standard library only; `wrk` when installed. Run:

    python3 benches/hub_load.py renewals --herald /tmp/herald-before target/release/herald
    python3 benches/hub_load.py slow --herald OLD NEW
    python3 benches/hub_load.py fds --herald OLD NEW
"""

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

LISTENING = re.compile(r"listening on http://([0-9.:\[\]]+)/")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TOPIC = "http://127.0.0.1/rss.xml"


def column(day, title):
    return (f"May {day}, 2025, 9 a.m.\n\nNews\n\n  • views:12\n\n{title}\n\nimage\n\n"
            + f"Body of {title}. " * 40 + "\n\nRecommend\n\nTeaser\n\nLatest")


class Callbacks:
    """An asyncio HTTP/1.1 server on a thread: GET echoes hub.challenge;
    POST to /slow/* never answers; other POSTs are answered 200 and
    recorded (path -> arrival times). Connections are kept alive."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.got = {}
        self.lock = threading.Lock()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    async def _handle(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target = line.decode("latin-1").split()[:2]
                length = 0
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                if length:
                    await reader.readexactly(length)
                path, _, query = target.partition("?")
                if method == "GET":
                    body = urllib.parse.parse_qs(query).get("hub.challenge", [""])[0].encode()
                elif path.startswith("/slow"):
                    await asyncio.sleep(3600)
                    return
                else:
                    t = time.perf_counter()
                    with self.lock:
                        self.got.setdefault(path, []).append(t)
                    body = b"ok"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def listen(self, host):
        async def start():
            s = await asyncio.start_server(self._handle, host, 0, backlog=1024)
            return s.sockets[0].getsockname()[1]
        return asyncio.run_coroutine_threadsafe(start(), self.loop).result()

    def count(self, prefix="", after=0.0):
        with self.lock:
            return sum(1 for p, ts in self.got.items() if p.startswith(prefix) and any(t >= after for t in ts))

    def first_after(self, path, after):
        with self.lock:
            return next((t for t in self.got.get(path, []) if t >= after), None)


class Herald:
    def __init__(self, exe, root, subs, extra="", nofile=None):
        self.root = root
        content = os.path.join(root, "content")
        os.makedirs(content)
        os.makedirs(os.path.join(root, "state"))
        for i in range(1, 21):
            with open(os.path.join(content, f"a{i:02}.txt"), "w") as f:
                f.write(column(1 + i % 28, f"Article {i}"))
        far = 4_102_444_800
        with open(os.path.join(root, "state", "websub.json"), "w") as f:
            json.dump({"version": 1, "subscriptions": [
                {"route": "/rss.xml", "topic": TOPIC, "callback": cb, "expires": far} for cb in subs]}, f)
        cfg = os.path.join(root, "herald.toml")
        with open(cfg, "w") as f:
            f.write(
                'base_url = "http://127.0.0.1/"\n'
                f'content_dir = "{content}"\noutput_dir = "{root}/feeds"\nstate_dir = "{root}/state"\n'
                'listen = "127.0.0.1:0"\nadmin_listen = "off"\ndebounce_ms = 30\n'
                "[websub]\nbuiltin = true\nallow_private_callbacks = true\n"
                "requests_per_minute = 100000000\nmax_subscriptions_per_host = 100000\n"
                "max_subscriptions = 100000\n" + extra)
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        cmd = [exe, "--config", cfg, "serve"]
        if nofile:
            cmd = ["sh", "-c", f'ulimit -n {nofile} && exec "$0" "$@"'] + cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        self.log = []
        for raw in self.proc.stderr:
            line = ANSI.sub("", raw.decode("utf-8", "replace"))
            self.log.append(line)
            m = LISTENING.search(line)
            if m:
                self.addr = m.group(1)
                break
        else:
            raise RuntimeError("herald did not start:\n" + "".join(self.log))
        threading.Thread(target=lambda: [self.log.append(ANSI.sub("", r.decode("utf-8", "replace")))
                                         for r in self.proc.stderr], daemon=True).start()
        # Wait until the feed is served.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://{self.addr}/rss.xml", timeout=5).status == 200:
                    break
            except OSError:
                time.sleep(0.1)

    def edit(self, n):
        with open(os.path.join(self.root, "content", f"new{n}.txt"), "w") as f:
            f.write(column(28, f"New article {n} {time.time_ns()}"))
        return time.perf_counter()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def load(addr, secs, conns=32):
    """/rss.xml for `secs` seconds: (requests/s, p99 ms, errors)."""
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency",
                              f"http://{addr}/rss.xml"], capture_output=True, text=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
        p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
        err = re.search(r"Socket errors: (.*)", out)
        return rps, p99, err.group(1) if err else "none"
    lat, errors, stop = [], [0], time.perf_counter() + secs
    host, port = addr.rsplit(":", 1)

    def worker():
        req = f"GET /rss.xml HTTP/1.1\r\nHost: {addr}\r\n\r\n".encode()
        s = None
        while time.perf_counter() < stop:
            try:
                if s is None:
                    s = socket.create_connection((host, int(port)), timeout=10)
                    f = s.makefile("rb")
                t = time.perf_counter()
                s.sendall(req)
                n = 0
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    if h.lower().startswith(b"content-length:"):
                        n = int(h.split(b":")[1])
                f.read(n)
                lat.append(time.perf_counter() - t)
            except OSError:
                errors[0] += 1
                s = None
    ts = [threading.Thread(target=worker) for _ in range(min(conns, 8))]
    [t.start() for t in ts]
    [t.join() for t in ts]
    lat.sort()
    return len(lat) / secs, lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan"), errors[0]


def renewals(a, exe, cbs):
    root = tempfile.mkdtemp(prefix="herald-hub-load-")
    port = cbs.listen("127.0.0.1")
    subs = [f"http://127.0.0.1:{port}/cb/{i:05}" for i in range(a.subs)]
    h = Herald(exe, root, subs)
    try:
        base = load(h.addr, a.secs)
        done, stop = [0], time.perf_counter() + a.secs + 1

        def renew():
            i, t = 0, time.perf_counter()
            while time.perf_counter() < stop:
                data = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.topic": TOPIC,
                                               "hub.callback": subs[(i * 7919) % len(subs)]}).encode()
                try:
                    if urllib.request.urlopen(f"http://{h.addr}/websub", data=data, timeout=30).status == 202:
                        done[0] += 1
                except OSError:
                    pass
                i += 1
                t += 1 / a.rate
                time.sleep(max(0, t - time.perf_counter()))
        r = threading.Thread(target=renew)
        r.start()
        time.sleep(0.5)
        busy = load(h.addr, a.secs)
        r.join()
        renewed = sum(1 for l in h.log if "websub: renewed" in l)
        print(f"{exe}: {a.subs} subscriptions; /rss.xml alone {base[0]:,.0f} req/s p99 {base[1]:.1f} ms; "
              f"with renewals at {a.rate}/s: {busy[0]:,.0f} req/s p99 {busy[1]:.1f} ms "
              f"(errors {busy[2]}); {done[0]} accepted, {renewed} verified and stored", flush=True)
    finally:
        h.stop()
        shutil.rmtree(root, ignore_errors=True)


def slow(a, exe, cbs):
    root = tempfile.mkdtemp(prefix="herald-hub-load-")
    port = cbs.listen("127.0.0.1")
    subs = [f"http://127.0.0.1:{port}/slow/{i:05}" for i in range(a.slow)]
    fast = f"/zz-fast-{os.getpid()}-{time.time_ns()}"
    subs.append(f"http://127.0.0.1:{port}{fast}")
    h = Herald(exe, root, subs)
    try:
        times = []
        for n in range(2):
            t0 = h.edit(n)
            while True:
                t = cbs.first_after(fast, t0)
                if t is not None:
                    times.append(f"{t - t0:.2f} s")
                    break
                if time.perf_counter() - t0 > a.cap:
                    times.append(f"> {a.cap} s")
                    break
                time.sleep(0.02)
            if n == 0:
                time.sleep(a.gap)
        print(f"{exe}: {a.slow} hanging + 1 fast subscriber; fast one's delivery after change 1: "
              f"{times[0]}, after change 2 ({a.gap} s later): {times[1]}", flush=True)
    finally:
        h.stop()
        shutil.rmtree(root, ignore_errors=True)


def fds(a, exe, cbs):
    root = tempfile.mkdtemp(prefix="herald-hub-load-")
    subs = []
    for i in range(a.hosts):
        host = f"127.{1 + i // 62500}.{(i // 250) % 250}.{1 + i % 250}"
        subs.append(f"http://{host}:{cbs.listen(host)}/d/{i}")
    h = Herald(exe, root, subs, nofile=a.nofile)
    try:
        pid = h.proc.pid
        t0 = h.edit(0)
        most, failed, served = 0, 0, 0
        while cbs.count("/d/", t0) < a.hosts and time.perf_counter() - t0 < a.cap:
            most = max(most, len(os.listdir(f"/proc/{pid}/fd")))
            try:
                urllib.request.urlopen(f"http://{h.addr}/rss.xml", timeout=2).read()
                served += 1
            except OSError:
                failed += 1
            time.sleep(0.1)
        took = time.perf_counter() - t0
        emfile = sum(1 for l in h.log if "Too many open files" in l)
        print(f"{exe}: {a.hosts} callback hosts, ulimit -n {a.nofile}: {cbs.count('/d/', t0)} delivered "
              f"in {took:.1f} s; at most {most} fds in use; readers {served} served, {failed} failed; "
              f"{emfile} 'Too many open files' log lines", flush=True)
    finally:
        h.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["renewals", "slow", "fds"])
    ap.add_argument("--herald", nargs="+", required=True)
    ap.add_argument("--subs", type=int, default=9300)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--secs", type=int, default=15)
    ap.add_argument("--slow", type=int, default=1000)
    ap.add_argument("--gap", type=float, default=15)
    ap.add_argument("--hosts", type=int, default=10000)
    ap.add_argument("--nofile", type=int, default=4096)
    ap.add_argument("--cap", type=float, default=400)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; "
          f"load generator: {'wrk' if shutil.which('wrk') else 'python'}", flush=True)
    cbs = Callbacks()
    for exe in a.herald:
        {"renewals": renewals, "slow": slow, "fds": fds}[a.what](a, os.path.abspath(exe), cbs)


if __name__ == "__main__":
    sys.exit(main())
