#!/usr/bin/env python3
"""What the bucket's periodic repair costs, and how long a repair takes.

Generates a corpus (default 10,000 articles, `gen_corpus --md-only`),
starts `moto_server` on a free loopback port, fills the bucket with
`herald publish`, then runs `herald serve` with `repair_interval_secs`
short (default 5 s) and measures:

1. A repair pass that finds nothing (the usual case): its wall time, as
   the mirror logs it at debug level (`bucket listed and compared:
   nothing drifted … ms=`), the LIST requests it sends (moto's request
   log) and the CPU time `serve` spends over the passes (`/proc`), per
   pass.
2. A bucket emptied from outside: every object under the prefix deleted
   with the bulk delete API; the time until the next repair pass has put
   every object back (polled by listing the bucket).

    python3 benches/s3_repair.py                   # 10,000 articles
    python3 benches/s3_repair.py --articles 2000 --passes 3

Needs `moto_server` (pip install 'moto[server]'). Builds
`target/release/herald` and `gen_corpus` first (`--no-build` skips that).
Standard library only; reuses the helpers of `s3_vs_hugo.py`.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from s3_vs_hugo import ANSI, ENV, GEN, HERALD, REPO, Moto, run  # noqa: E402

BUCKET = "repair-bench"
NOTHING = re.compile(r"nothing drifted.*?ms=([0-9.]+)")


def cpu_seconds(pid):
    """User + system CPU of `pid` so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def keys(moto):
    """Every key in the bucket, over as many LIST pages as it takes."""
    out, token = [], None
    while True:
        q = f"/{BUCKET}?list-type=2&max-keys=1000"
        if token:
            q += "&continuation-token=" + token
        _, _, body = moto.request("GET", q)
        text = body.decode()
        out += re.findall(r"<Key>([^<]+)</Key>", text)
        m = re.search(r"<NextContinuationToken>([^<]+)<", text)
        if "<IsTruncated>true" not in text or not m:
            return out
        token = (m.group(1).replace("&", "%26").replace("=", "%3D")
                 .replace("+", "%2B").replace("/", "%2F"))


def empty_bucket(moto, all_keys):
    """Deletes `all_keys` with the S3 bulk delete API, 1,000 a request."""
    import http.client
    for i in range(0, len(all_keys), 1000):
        chunk = all_keys[i:i + 1000]
        body = ("<Delete>" + "".join(f"<Object><Key>{k}</Key></Object>" for k in chunk)
                + "</Delete>").encode()
        c = http.client.HTTPConnection("127.0.0.1", moto.port, timeout=60)
        c.request("POST", f"/{BUCKET}?delete", body=body,
                  headers={"Authorization": "AWS4-HMAC-SHA256 Credential=bench/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
                           "Content-Type": "application/xml"})
        r = c.getresponse()
        r.read()
        c.close()
        if r.status != 200:
            sys.exit(f"bulk delete: {r.status}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=10000)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-empty", action="store_true", help="skip step 2")
    args = ap.parse_args()
    if not shutil.which("moto_server"):
        sys.exit("moto_server not found: pip install 'moto[server]'")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "herald",
                        "--example", "gen_corpus"], cwd=REPO, check=True)
    root = tempfile.mkdtemp(prefix="herald-s3-repair-")
    try:
        subprocess.run([GEN, str(args.articles), os.path.join(root, "content"), "--md-only"],
                       check=True, stdout=subprocess.DEVNULL)
        moto = Moto(root)
        moto.request("PUT", f"/{BUCKET}")
        with open(os.path.join(root, "herald.toml"), "w") as f:
            f.write('title = "Bench"\nbase_url = "https://news.example.org/"\n'
                    'max_items = 50\npage_size = 20\nlisten = "127.0.0.1:0"\n'
                    'admin_listen = "127.0.0.1:0"\n'
                    f'[publish]\nto = "s3://{BUCKET}/site"\nendpoint = "{moto.endpoint()}"\n'
                    f'repair_interval_secs = {args.interval}\n')
        t, _ = run([HERALD, "--config", "herald.toml", "publish"], root, "herald publish")
        objects = len(keys(moto))
        print(f"{args.articles} articles: {objects} objects, first upload {t:.1f} s; "
              f"{os.cpu_count()} CPUs", flush=True)

        log_path = os.path.join(root, "serve.log")
        env = dict(ENV, RUST_LOG="info,herald::mirror=debug")
        serve = subprocess.Popen([HERALD, "--config", "herald.toml", "serve"], cwd=root,
                                 env=env, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))

        def log():
            with open(log_path) as f:
                return ANSI.sub("", f.read())

        def wait(pred, what, timeout=600):
            deadline = time.time() + timeout
            while not pred():
                if time.time() > deadline or serve.poll() is not None:
                    sys.exit(f"{what}: not seen:\n{log()[-3000:]}")
                time.sleep(0.05)

        try:
            # The first pass at start lists and compares too.
            wait(lambda: "bucket updated" in log() or "nothing drifted" in log(), "first pass")
            seen = len(NOTHING.findall(log()))
            mark = len(moto.requests())
            cpu0 = cpu_seconds(serve.pid)
            wait(lambda: len(NOTHING.findall(log())) >= seen + args.passes, "repair passes")
            cpu = cpu_seconds(serve.pid) - cpu0
            ms = [float(x) for x in NOTHING.findall(log())[seen:seen + args.passes]]
            reqs = moto.requests()[mark:]
            # Every GET of the bucket itself is a LIST page (its query
            # parameters in any order).
            lists = sum(1 for r in reqs if r.startswith(f"GET /{BUCKET}?"))
            others = len(reqs) - lists
            print(f"repair pass finding nothing, {args.passes} passes: wall p50 "
                  f"{statistics.median(ms):.0f} ms (min {min(ms):.0f}, max {max(ms):.0f}); "
                  f"{lists / args.passes:.1f} LIST requests per pass, {others} other requests; "
                  f"serve's CPU over the passes {cpu:.2f} s ({cpu / args.passes:.2f} s per pass, "
                  f"idle time between passes included)", flush=True)

            # 2. Emptied from outside.
            if args.no_empty:
                return
            all_keys = keys(moto)
            t0 = time.perf_counter()
            empty_bucket(moto, all_keys)
            t_empty = time.perf_counter() - t0
            wait(lambda: len(keys(moto)) >= objects, "every object back")
            t_back = time.perf_counter() - t0
            print(f"bucket emptied from outside ({len(all_keys)} objects, {t_empty:.1f} s): "
                  f"every object back after {t_back:.1f} s "
                  f"(repair_interval_secs = {args.interval})", flush=True)
        finally:
            serve.terminate()
            serve.wait()
            moto.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
