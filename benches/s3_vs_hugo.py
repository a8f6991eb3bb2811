#!/usr/bin/env python3
"""Publishing to an S3 bucket: Herald against `hugo deploy`, same server.

Generates a Markdown-only corpus (default 10,000 articles) with
`gen_corpus --md-only`, which Hugo reads too, starts `moto_server` (from
the Python package `moto[server]`) on a free loopback port with two
buckets, and measures side by side:

1. First full upload of the whole site to an empty bucket: `herald
   publish` against `hugo` (build) + `hugo deploy` (time, object count).
2. One edited article until the bucket holds the new main feed: the
   title of one of the newest articles becomes a unique marker; the clock
   starts just before the file is written and stops when a GET of the
   bucket's main feed (`site/rss.xml` for Herald, `index.xml` for Hugo)
   holds the marker. Herald: `herald serve` with the bucket configured,
   publishing in the background. Hugo: `hugo && hugo deploy` run at once
   after the write (what a script around it would do at best). p50 and
   max over `--edits` edits, and the objects PUT per edit, counted in
   moto's request log, with the keys Hugo re-uploads.

Both sites have the same articles, categories and tags, pages of 20
articles, feeds of 50 items and gzip-encoded objects. Hugo renders every
article page, the home, category and tag pages (paginated) and their RSS,
with two small layouts; Herald its usual site (three feed formats per
feed, article pages, OPML).

    python3 benches/s3_vs_hugo.py                  # 10,000 articles, 20 edits
    python3 benches/s3_vs_hugo.py --articles 2000 --edits 5

Needs `moto_server` (pip install 'moto[server]') and Debian's `hugo`
(apt-get install hugo). Builds `target/release/herald` and `gen_corpus`
first (`--no-build` skips that). Standard library only.
"""

import argparse
import gzip
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERALD = os.environ.get("HERALD") or os.path.join(REPO, "target", "release", "herald")
GEN = os.environ.get("GEN") or os.path.join(REPO, "target", "release", "examples", "gen_corpus")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
AUTH = ("AWS4-HMAC-SHA256 Credential=bench/20250101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=0")
ENV = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
           AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1", NO_COLOR="1")
ENV.pop("RUST_LOG", None)
TITLE_YAML = re.compile(r'^title: .*$', re.M)
TITLE_TOML = re.compile(r'^title = .*$', re.M)
DATE = re.compile(r'^date\s*[:=]\s*"?([0-9T:+\-. ]+)', re.M)

HUGO_SINGLE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ .Title }}</title></head><body><h1>{{ .Title }}</h1>
<p>{{ .Date.Format "2006-01-02" }}</p>{{ .Content }}</body></html>
"""
HUGO_LIST = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ .Title }}</title>{{ with .OutputFormats.Get "rss" }}<link rel="alternate" type="application/rss+xml" href="{{ .Permalink }}">{{ end }}
</head><body><h1>{{ .Title }}</h1><ul>
{{ range .Paginator.Pages }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a> {{ .Summary }}</li>
{{ end }}</ul>{{ with .Paginator.Next }}<a href="{{ .URL }}">Older</a>{{ end }}</body></html>
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    def __init__(self, root):
        self.port = free_port()
        self.log = os.path.join(root, "moto.log")
        self.proc = subprocess.Popen(
            ["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("moto_server did not start")
                time.sleep(0.05)

    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, method, target):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, target, headers={"Authorization": AUTH})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body

    def body(self, bucket, key):
        status, headers, body = self.request("GET", f"/{bucket}/{key}")
        if status != 200:
            return b""
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        return body

    def count(self, bucket):
        n, token = 0, None
        while True:
            q = f"/{bucket}?list-type=2&max-keys=1000"
            if token:
                q += "&continuation-token=" + token
            _, _, body = self.request("GET", q)
            text = body.decode()
            n += text.count("<Contents>")
            m = re.search(r"<NextContinuationToken>([^<]+)<", text)
            if "<IsTruncated>true" not in text or not m:
                return n
            token = m.group(1).replace("&", "%26").replace("=", "%3D").replace("+", "%2B").replace("/", "%2F")

    def requests(self):
        with open(self.log) as f:
            return [m.group(1) for m in re.finditer(r'"([A-Z]+ [^ ]+) HTTP/1\.[01]"', f.read())]

    def puts(self, bucket, since):
        prefix = f"PUT /{bucket}/"
        return [r[len(prefix):] for r in self.requests()[since:] if r.startswith(prefix)]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run(cmd, cwd, label):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{label} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return elapsed, p.stdout + p.stderr


def newest(content, k):
    """The k newest articles' files, newest first."""
    dated = []
    for dirpath, _, files in os.walk(content):
        for f in files:
            if f.endswith(".md"):
                p = os.path.join(dirpath, f)
                with open(p, encoding="utf-8") as fh:
                    m = DATE.search(fh.read(400))
                if m:
                    dated.append((m.group(1).strip(), os.path.relpath(p, content)))
    dated.sort(reverse=True)
    return [p for _, p in dated[:k]]


def retitle(path, marker):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.startswith("+++"):
        text = TITLE_TOML.sub(f'title = "{marker}"', text, count=1)
    else:
        text = TITLE_YAML.sub(f'title: "{marker}"', text, count=1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def wait_for(moto, bucket, key, marker, t0, timeout=120):
    while True:
        if marker.encode() in moto.body(bucket, key):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            sys.exit(f"{bucket}/{key} never held {marker}")
        time.sleep(0.005)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=10000)
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    for tool in ("moto_server", "hugo"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: pip install 'moto[server]' / apt-get install hugo")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "herald",
                        "--example", "gen_corpus"], cwd=REPO, check=True)
    root = tempfile.mkdtemp(prefix="herald-s3-bench-")
    herald_bin = os.path.join(root, "herald")
    shutil.copy(HERALD, herald_bin)
    try:
        corpus = os.path.join(root, "corpus")
        subprocess.run([GEN, str(args.articles), corpus, "--md-only"], check=True,
                       stdout=subprocess.DEVNULL)
        moto = Moto(root)
        for b in ("herald-bench", "hugo-bench"):
            moto.request("PUT", f"/{b}")

        # Herald's site.
        hd = os.path.join(root, "h")
        os.makedirs(hd)
        shutil.copytree(corpus, os.path.join(hd, "content"))
        with open(os.path.join(hd, "herald.toml"), "w") as f:
            f.write('title = "Bench"\nbase_url = "https://news.example.org/"\n'
                    'timezone = "Asia/Shanghai"\nmax_items = 50\npage_size = 20\n'
                    'listen = "127.0.0.1:0"\n'
                    f'[publish]\nto = "s3://herald-bench/site"\nendpoint = "{moto.endpoint()}"\n')
        # Hugo's site.
        gd = os.path.join(root, "g")
        os.makedirs(os.path.join(gd, "layouts", "_default"))
        shutil.copytree(corpus, os.path.join(gd, "content"))
        with open(os.path.join(gd, "layouts", "_default", "single.html"), "w") as f:
            f.write(HUGO_SINGLE)
        with open(os.path.join(gd, "layouts", "_default", "list.html"), "w") as f:
            f.write(HUGO_LIST)
        with open(os.path.join(gd, "hugo.toml"), "w") as f:
            f.write('baseURL = "https://news.example.org/"\ntitle = "Bench"\npaginate = 20\n'
                    'rssLimit = 50\ntimeZone = "Asia/Shanghai"\n'
                    '[taxonomies]\ncategory = "categories"\ntag = "tags"\n'
                    '[deployment]\n[[deployment.targets]]\nname = "bench"\n'
                    f'URL = "s3://hugo-bench?endpoint={moto.endpoint()}&s3ForcePathStyle=true&region=us-east-1"\n'
                    '[[deployment.matchers]]\npattern = "^.+\\\\.(html|xml|json)$"\ngzip = true\n')

        print(f"{args.articles} articles, moto_server on {moto.endpoint()}, {os.cpu_count()} CPUs", flush=True)
        # 1. First full upload.
        t_h, out = run([herald_bin, "--config", "herald.toml", "publish"], hd, "herald publish")
        n_h = moto.count("herald-bench")
        t_gb, _ = run(["hugo", "--quiet"], gd, "hugo")
        t_gd, out_g = run(["hugo", "deploy", "--target", "bench", "--maxDeletes", "-1"], gd, "hugo deploy")
        n_g = moto.count("hugo-bench")
        print(f"full upload: herald publish {t_h:.1f} s, {n_h} objects; "
              f"hugo {t_gb:.1f} s + hugo deploy {t_gd:.1f} s = {t_gb + t_gd:.1f} s, {n_g} objects", flush=True)

        # 2. Edits.
        targets = newest(os.path.join(hd, "content"), max(args.edits, 1))
        serve = subprocess.Popen([herald_bin, "--config", "herald.toml", "serve"], cwd=hd, env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "serve.log"), "w"))
        deadline = time.time() + 300
        while "bucket updated" not in ANSI.sub("", open(os.path.join(root, "serve.log")).read()):
            if time.time() > deadline or serve.poll() is not None:
                sys.exit("herald serve: no first pass:\n" + open(os.path.join(root, "serve.log")).read()[-3000:])
            time.sleep(0.05)
        h_lat, h_puts, g_lat, g_puts, g_keys = [], [], [], [], {}
        for i in range(args.edits):
            rel = targets[i % len(targets)]
            # Herald.
            mark = len(moto.requests())
            marker = f"Edited herald {i} {time.time_ns()}"
            t0 = time.perf_counter()
            retitle(os.path.join(hd, "content", rel), marker)
            h_lat.append(wait_for(moto, "herald-bench", "site/rss.xml", marker, t0))
            time.sleep(1)  # let the pass finish before counting (not timed)
            h_puts.append(len(moto.puts("herald-bench", mark)))
            # Hugo.
            mark = len(moto.requests())
            marker = f"Edited hugo {i} {time.time_ns()}"
            t0 = time.perf_counter()
            retitle(os.path.join(gd, "content", rel), marker)
            run(["hugo", "--quiet"], gd, "hugo")
            run(["hugo", "deploy", "--target", "bench", "--maxDeletes", "-1"], gd, "hugo deploy")
            g_lat.append(wait_for(moto, "hugo-bench", "index.xml", marker, t0))
            keys = moto.puts("hugo-bench", mark)
            g_puts.append(len(keys))
            for k in keys:
                kind = re.sub(r"[0-9]+", "N", k)
                g_keys[kind] = g_keys.get(kind, 0) + 1
            print(f"edit {i + 1}: herald {h_lat[-1] * 1000:.0f} ms ({h_puts[-1]} PUTs), "
                  f"hugo {g_lat[-1] * 1000:.0f} ms ({g_puts[-1]} PUTs)", flush=True)
        serve.terminate()
        serve.wait()
        moto.stop()
        p50 = lambda v: statistics.median(v)
        print()
        print("| | first full upload | objects | edit → bucket holds new main feed, p50 | max | PUTs per edit (median) |")
        print("|---|---:|---:|---:|---:|---:|")
        print(f"| herald | {t_h:.1f} s (`herald publish`) | {n_h} | {p50(h_lat) * 1000:.0f} ms | "
              f"{max(h_lat) * 1000:.0f} ms | {p50(h_puts):.0f} |")
        print(f"| hugo | {t_gb + t_gd:.1f} s (`hugo` {t_gb:.1f} + `hugo deploy` {t_gd:.1f}) | {n_g} | "
              f"{p50(g_lat) * 1000:.0f} ms | {max(g_lat) * 1000:.0f} ms | {p50(g_puts):.0f} |")
        print()
        print(f"Hugo re-uploaded over {args.edits} edits (key pattern: times):")
        for k, n in sorted(g_keys.items(), key=lambda kv: -kv[1])[:25]:
            print(f"  {k}: {n}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
