#!/usr/bin/env python3
"""`make bench`: autodeploy-cache side by side with nginx, and the agent's footprint.

Everything runs on 127.0.0.1 on this machine, in one run, so that every figure can be read as
a ratio against a reference measured minutes apart on the same hardware:

- origin: nginx over HTTPS (a CA and certificate made here with openssl) serving generated
  files, standing in for Auto Deploy; `/slow/` is rate-limited per connection for the storm;
- peer 1: nginx with the configuration users run today (no cache lock), 2 workers;
- peer 2: the same with `proxy_cache_lock on`;
- peer 3: Varnish (Debian's varnishd) with malloc storage, what Varnish users run, and
- peer 4: Varnish with file storage (its cache on disk, like ours). Open-source Varnish has no
  backend TLS, so both fetch through a plain nginx hop that unwraps the origin's TLS
  (`proxy_buffering off`: it streams, and caches nothing);
- ours: the release build of autodeploy-cache with the same limits.

Writes bench/results.md and bench/storm.svg. Tools come from Debian packages (installed by
`make bench` when missing): nginx, varnish, wrk, iperf3, GNU time, hyperfine, openssl, curl.
"""

import json
import shlex
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench"
OUT = ROOT / "bench"
DIST = ROOT / "dist"
MIB = 1 << 20

STORM_CLIENTS = 100
STORM_SIZE = 256 * MIB
STORM_RATE = "50m"  # nginx limit_rate: bytes per second per connection
SEQUENCE_HOSTS = 50
# Scenario 4: a boot sequence of 20 files from 1 KiB to 64 MiB.
SEQUENCE_SIZES = [1 << 10, 2 << 10, 4 << 10, 16 << 10, 64 << 10, 128 << 10, 256 << 10,
                  512 << 10, 1 * MIB, 1 * MIB, 2 * MIB, 2 * MIB, 4 * MIB, 4 * MIB, 8 * MIB,
                  8 * MIB, 16 * MIB, 16 * MIB, 32 * MIB, 64 * MIB]

processes = []


def log(message):
    print(f"bench: {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"bench: nothing listens on port {port} after {timeout}s")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def start(cmd, name, **kw):
    out = open(WORK / f"{name}.out", "w")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)
    processes.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def status_kib(pids, field):
    """The sum of a /proc/PID/status figure over `pids` (those that exited count 0)."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        m = re.search(field + r":\s+(\d+) kB", status)
        total += int(m.group(1)) if m else 0
    return total


def rss_peak_kib(pids):
    return status_kib(pids, "VmHWM")


class PrivatePeak:
    """Samples the anonymous (private) resident memory of `pids` every 20 ms while it runs.

    VmHWM counts file pages a process has mapped as well: a proxy that maps its cache files
    shows the page cache it reads from (shared, clean, reclaimable, there for pread too) as
    its own. RssAnon is the memory the proxy itself costs."""

    def __init__(self, pids):
        self.pids, self.peak, self.running = pids, 0, True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while self.running:
            self.peak = max(self.peak, status_kib(self.pids, "RssAnon"))
            time.sleep(0.02)

    def stop_kib(self):
        self.running = False
        self.thread.join()
        return self.peak


def nginx_pids(master):
    children = run(["ps", "-o", "pid=", "--ppid", str(master)]).split()
    return [master] + [int(c) for c in children]


# ---------------------------------------------------------------- setup

def make_files():
    files = WORK / "files"
    files.mkdir(parents=True, exist_ok=True)
    wanted = {"small.bin": 1024, "large.bin": 64 * MIB, "storm.bin": STORM_SIZE}
    for i, size in enumerate(SEQUENCE_SIZES):
        wanted[f"seq/{i:02d}.bin"] = size
    (files / "seq").mkdir(exist_ok=True)
    for name, size in wanted.items():
        path = files / name
        if not path.exists() or path.stat().st_size != size:
            with open(path, "wb") as f:
                left = size
                while left:
                    n = min(left, 4 * MIB)
                    f.write(os.urandom(n))
                    left -= n


def make_certs():
    certs = WORK / "certs"
    if (certs / "leaf.pem").exists():
        return certs
    certs.mkdir(parents=True, exist_ok=True)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-subj", "/CN=bench CA", "-keyout", str(certs / "ca.key"), "-out", str(certs / "ca.pem"),
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(certs / "leaf.key"), "-out", str(certs / "leaf.csr")])
    (certs / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(["openssl", "x509", "-req", "-in", str(certs / "leaf.csr"), "-CA", str(certs / "ca.pem"),
         "-CAkey", str(certs / "ca.key"), "-CAcreateserial", "-days", "30",
         "-extfile", str(certs / "ext.cnf"), "-out", str(certs / "leaf.pem")])
    return certs


NGINX_COMMON = """
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
"""


def start_origin(port, certs):
    d = WORK / "origin"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    conf = NGINX_COMMON.format(workers=2, dir=d) + f"""
http {{
    log_format bytes '$request_uri $body_bytes_sent';
    access_log {d}/access.log bytes;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certs}/leaf.pem;
        ssl_certificate_key {certs}/leaf.key;
        root {WORK}/files;
        location /slow/ {{ alias {WORK}/files/; limit_rate {STORM_RATE}; }}
        location = /x/2/tweets {{
            default_type application/json;
            return 201 '{{"data":{{"id":"1790000000000000000","text":"bench"}}}}';
        }}
    }}
}}
"""
    (d / "nginx.conf").write_text(conf)
    p = start(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)], "origin")
    wait_port(port)
    return p, d / "access.log"


def start_peer(name, port, origin_port, lock):
    d = WORK / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    # The configuration users run today (see the reference), plus the lock for peer 2.
    conf = NGINX_COMMON.format(workers=2, dir=d) + f"""
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    sendfile on; proxy_buffering on; proxy_cache_valid 200 1d;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=my-cache:15m max_size=1g inactive=24h;
    proxy_temp_path {d}/cache/tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass https://127.0.0.1:{origin_port};
            proxy_cache my-cache;
            proxy_redirect off;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $server_name;
            {"proxy_cache_lock on;" if lock else ""}
        }}
    }}
}}
"""
    (d / "nginx.conf").write_text(conf)
    p = start(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)], name)
    wait_port(port)
    time.sleep(0.3)  # let the workers start before their pids are read
    return p


def start_unwrap(port, origin_port):
    """Plain HTTP in front of the HTTPS origin, for Varnish (no backend TLS in its open
    source edition): streams, caches nothing, keeps upstream connections alive."""
    d = WORK / "unwrap"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    conf = NGINX_COMMON.format(workers=2, dir=d) + f"""
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass https://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""
    (d / "nginx.conf").write_text(conf)
    p = start(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)], "unwrap")
    wait_port(port)
    return p


def start_varnish(name, port, unwrap_port, storage):
    """varnishd in the foreground, no privilege separation (the bench runs as one user), a
    day's TTL for what the origin sends without freshness (as nginx's proxy_cache_valid)."""
    d = WORK / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    store = "malloc,1G" if storage == "malloc" else f"file,{d}/storage.bin,1G"
    p = start(["varnishd", "-F", "-j", "none", "-n", str(d / "work"),
               "-a", f"127.0.0.1:{port}", "-b", f"127.0.0.1:{unwrap_port}",
               "-s", store, "-t", "86400", "-p", "thread_pool_min=50"], name)
    wait_port(port)
    return p


def start_ours(port, origin_port, certs):
    d = WORK / "ours"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    p = start([str(DIST / "autodeploy-cache"), "--listen", f"127.0.0.1:{port}",
               "--upstream", f"https://127.0.0.1:{origin_port}",
               "--upstream-ca", str(certs / "ca.pem"), "--cache-dir", str(d / "cache"),
               "--max-size", "1g", "--inactive", "24h", "--valid", "1d"], "ours")
    wait_port(port)
    return p


class Proxies:
    """The three proxies under test, restartable with empty caches."""

    def __init__(self, origin_port, certs, unwrap_port):
        self.origin_port, self.certs, self.unwrap_port = origin_port, certs, unwrap_port
        starters = {
            "nginx": lambda port: start_peer("peer1", port, self.origin_port, False),
            "nginx+lock": lambda port: start_peer("peer2", port, self.origin_port, True),
            "varnish": lambda port: start_varnish("peer3", port, self.unwrap_port, "malloc"),
            "varnish-file": lambda port: start_varnish("peer4", port, self.unwrap_port, "file"),
            "ours": lambda port: start_ours(port, self.origin_port, self.certs),
        }
        # BENCH_PEERS=ours,varnish: a partial run against fewer peers, while working on one.
        wanted = os.environ.get("BENCH_PEERS")
        if wanted:
            unknown = set(wanted.split(",")) - set(starters)
            if unknown:
                raise SystemExit(f"bench: unknown peer {', '.join(sorted(unknown))} in "
                                 f"BENCH_PEERS: choose from {', '.join(starters)}")
            starters = {k: v for k, v in starters.items() if k in wanted.split(",")}
        self.starters = starters
        self.ports = {name: free_port() for name in starters}
        self.procs = {}

    def restart(self):
        for p in self.procs.values():
            stop(p)
        self.procs = {name: begin(self.ports[name]) for name, begin in self.starters.items()}

    def pids(self, name):
        p = self.procs[name]
        # varnishd's manager and its cache child, like nginx's master and workers.
        return [p.pid] if name == "ours" else nginx_pids(p.pid)

    def url(self, name, path):
        return f"http://127.0.0.1:{self.ports[name]}{path}"


def origin_bytes(access_log, since_line, prefix):
    lines = access_log.read_text().splitlines()[since_line:]
    return sum(int(l.split()[1]) for l in lines if l.startswith(prefix))


def log_lines(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


def curl(url):
    out = run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url])
    code, size = out.split()
    if code != "200":
        raise SystemExit(f"bench: {url} answered {code}")
    return int(size)


# ---------------------------------------------------------------- scenarios

def wrk(url, connections, seconds):
    out = run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
    scale = {"B": 1, "KB": 1e3, "MB": 1 << 20, "GB": 1 << 30}[transfer.group(2)]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = float(p99.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[p99.group(2)]
    return rps, p99_ms, float(transfer.group(1)) * scale


def scenario_hot(proxies, results):
    for name in proxies.ports:
        curl(proxies.url(name, "/small.bin"))
        curl(proxies.url(name, "/large.bin"))
        curl(proxies.url(name, "/small.bin"))  # nginx caches on the first completed response
    for name in proxies.ports:
        log(f"scenario 1: 1 KiB hits through {name}")
        rps, p99, _ = wrk(proxies.url(name, "/small.bin"), 64, 10)
        results["s1"][name] = {"rps": rps, "p99_ms": p99}
        log(f"scenario 2: 64 MiB hits through {name}")
        _, _, bps = wrk(proxies.url(name, "/large.bin"), 8, 10)
        results["s2"][name] = {"gbps": bps / 1e9}


def storm(url, clients):
    """Starts `clients` curls together; returns (seconds to the last finish, median TTFB)."""
    started = time.time()
    procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w",
                               "%{http_code} %{time_starttransfer} %{size_download}", url],
                              stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    ttfb = []
    for p in procs:
        code, first, size = p.communicate()[0].split()
        if code != "200" or int(size) != STORM_SIZE:
            raise SystemExit(f"bench: storm client got {code}, {size} bytes")
        ttfb.append(float(first))
    return time.time() - started, statistics.median(ttfb)


def scenario_storm(proxies, origin_log, results):
    proxies.restart()
    # The reference for the storm: one client alone, cold, through ours. Best of two, as a
    # shared machine only ever makes a run slower.
    singles = []
    for attempt in range(2):
        log(f"scenario 3: one client alone through ours ({attempt + 1}/2)")
        proxies.restart()
        t0 = time.time()
        curl(proxies.url("ours", "/slow/storm.bin"))
        singles.append(time.time() - t0)
    results["s3_single_ours_s"] = min(singles)
    proxies.restart()
    for name in proxies.ports:
        log(f"scenario 3: {STORM_CLIENTS} clients, cold, through {name}")
        since = log_lines(origin_log)
        private = PrivatePeak(proxies.pids(name))
        total, ttfb = storm(proxies.url(name, "/slow/storm.bin"), STORM_CLIENTS)
        time.sleep(0.5)  # the origin writes its log line when the transfer ends
        results["s3"][name] = {
            "last_s": total,
            "median_ttfb_s": ttfb,
            "origin_bytes": origin_bytes(origin_log, since, "/slow/storm.bin"),
            "rss_mib": rss_peak_kib(proxies.pids(name)) / 1024,
            "private_mib": private.stop_kib() / 1024,
        }


def sequence(url_base, hosts):
    urls = [f"{url_base}/seq/{i:02d}.bin" for i in range(len(SEQUENCE_SIZES))]
    started = time.time()
    procs = []
    for _ in range(hosts):
        cmd = ["curl", "-s", "--fail"]
        for u in urls:
            cmd += ["-o", "/dev/null", u]
        procs.append(subprocess.Popen(cmd))
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("bench: a simulated host failed its boot sequence")
    return time.time() - started


def scenario_sequence(proxies, origin_log, results):
    proxies.restart()
    for name in proxies.ports:
        log(f"scenario 4: {SEQUENCE_HOSTS} hosts x {len(SEQUENCE_SIZES)} files through {name}")
        since = log_lines(origin_log)
        cold = sequence(proxies.url(name, ""), SEQUENCE_HOSTS)
        time.sleep(0.5)
        sent = origin_bytes(origin_log, since, "/seq/")
        # Best of two warm runs, for the same reason as the storm's reference.
        warm = min(sequence(proxies.url(name, ""), SEQUENCE_HOSTS) for _ in range(2))
        results["s4"][name] = {"cold_s": cold, "warm_s": warm, "origin_bytes": sent}


def scenario_ceiling(results):
    log("scenario 5: loopback TCP ceiling (iperf3)")
    port = free_port()
    server = start(["iperf3", "-s", "-p", str(port)], "iperf3")
    # No readiness probe on the port: iperf3 would take it for a client. Retry the client.
    for _ in range(50):
        done = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "5", "-P", "8", "-l", "1M", "-J"],
                              capture_output=True, text=True)
        out = json.loads(done.stdout or "{}")
        if "sum_received" in out.get("end", {}):
            break
        time.sleep(0.1)
    else:
        raise SystemExit("bench: iperf3 did not run")
    stop(server)
    results["s5_gbps"] = out["end"]["sum_received"]["bits_per_second"] / 8 / 1e9


def scenario_agent(origin_port, certs, results):
    log("scenario 6: the agent")
    agent = DIST / "esxi-tweet"
    env = dict(os.environ, TWITTER_CONSUMER_KEY="bench", TWITTER_CONSUMER_SECRET="bench-secret",
               TWITTER_ACCESS_TOKEN="1-bench", TWITTER_ACCESS_TOKEN_SECRET="bench-token-secret",
               HOME=str(WORK))
    cmd = [str(agent), "post", "--api-base", f"https://127.0.0.1:{origin_port}/x",
           "--ca-file", str(certs / "ca.pem"), "benchmark post"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    export = WORK / "hyperfine.json"
    run(["hyperfine", "--runs", "30", "--warmup", "3", "--export-json", str(export),
         "-N", shlex.join(cmd)], env=env)
    timing = json.loads(export.read_text())["results"][0]
    peaks = []
    for _ in range(10):
        out = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, capture_output=True, text=True)
        peaks.append(int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)))
    log("scenario 6: signer throughput (criterion)")
    bench = run(["cargo", "bench", "-q", "-p", "esxi-tweet", "--bench", "signer", "--",
                 "--warm-up-time", "1", "--measurement-time", "3"], cwd=ROOT)
    m = re.search(r"time:\s+\[[\d.]+ \w+ ([\d.]+) (ns|µs|us|ms)", bench)
    per_sign_s = float(m.group(1)) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3}[m.group(2)]
    results["s6"] = {
        "size_bytes": agent.stat().st_size,
        "post_mean_ms": timing["mean"] * 1e3,
        "post_stddev_ms": timing["stddev"] * 1e3,
        "post_peak_rss_mib": max(peaks) / 1024,
        "signs_per_s": 1 / per_sign_s,
    }


# ---------------------------------------------------------------- report

def ratio(ours, theirs):
    return ours / theirs if theirs else float("inf")


def verdict(ok):
    return "met" if ok else "**missed**"


def report(results):
    r = results
    n, l, v, f, o = "nginx", "nginx+lock", "varnish", "varnish-file", "ours"
    s1, s2, s3, s4 = r["s1"], r["s2"], r["s3"], r["s4"]
    single = r["s3_single_ours_s"]

    def row(label, metric, table, key, fmt, target="", ok=None, vs=True):
        cells = [format(table[p][key], fmt) for p in (n, l, v, f, o)]
        ratios = [f"{ratio(table[o][key], table[n][key]):.2f}",
                  f"{ratio(table[o][key], table[v][key]):.2f}"] if vs else ["", ""]
        done = "" if ok is None else verdict(ok)
        return f"| {label} | {metric} | " + " | ".join(cells + ratios) + f" | {target} | {done} |"

    lines = [
        "# Benchmark results",
        "",
        f"Run {r['date']} on {r['machine']}. {r['versions']}",
        "",
        "All on 127.0.0.1 in one run; ratios compare figures measured minutes apart on the",
        "same machine. `nginx` is the users' configuration (no cache lock), `nginx+lock` adds",
        "`proxy_cache_lock on`; `varnish` is varnishd with malloc storage, `varnish-file` with",
        "file storage, both fetching through a plain nginx hop that unwraps the origin's TLS",
        "(open-source Varnish has no backend TLS). Storm clients are curl writing to /dev/null.",
        "Produced by `make bench` (scripts/bench.py).",
        "",
        "| scenario | metric | nginx | nginx+lock | varnish | varnish-file | ours | ours / nginx | ours / varnish | target | |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        row("1. hot 1 KiB hits, wrk -c64", "requests/s", s1, "rps", ".0f",
            ">= 1.0 x varnish, >= 1.3 x nginx",
            s1[o]["rps"] >= s1[v]["rps"] and s1[o]["rps"] >= 1.3 * s1[n]["rps"]),
        row("", "p99 latency ms", s1, "p99_ms", ".2f"),
        row("2. hot 64 MiB hits, 8 clients", "GB/s", s2, "gbps", ".2f", ">= 1.2 x varnish",
            s2[o]["gbps"] >= 1.2 * s2[v]["gbps"]),
        f"| 3. storm: {STORM_CLIENTS} cold clients, {STORM_SIZE // MIB} MiB, origin {STORM_RATE}B/s per connection | last client done, s | "
        + " | ".join(f"{s3[p]['last_s']:.1f}" for p in (n, l, v, f, o))
        + f" | {ratio(s3[o]['last_s'], s3[n]['last_s']):.2f} | {ratio(s3[o]['last_s'], s3[v]['last_s']):.2f}"
        + f" | <= varnish (one client alone, best of 2: {single:.1f} s) | {verdict(s3[o]['last_s'] <= s3[v]['last_s'])} |",
        row("", "median time to first byte, s", s3, "median_ttfb_s", ".2f", "<= 1 s",
            s3[o]["median_ttfb_s"] <= 1, vs=False),
        "| | copies the origin sent | "
        + " | ".join(f"{s3[p]['origin_bytes'] / STORM_SIZE:.1f}" for p in (n, l, v, f, o))
        + f" | | | exactly 1 | {verdict(s3[o]['origin_bytes'] == STORM_SIZE)} |",
        row("", "proxy peak private memory (RssAnon), MiB", s3, "private_mib", ".0f", "<= 64",
            s3[o]["private_mib"] <= 64, vs=False),
        row("", "proxy peak RSS with mapped page cache (VmHWM), MiB", s3, "rss_mib", ".0f",
            vs=False),
        row(f"4. {SEQUENCE_HOSTS} hosts x {len(SEQUENCE_SIZES)} files", "cold, s", s4, "cold_s",
            ".1f"),
        row("", "warm (best of 2), s", s4, "warm_s", ".1f", "<= 1.0 x nginx",
            s4[o]["warm_s"] <= s4[n]["warm_s"]),
        "| | origin bytes / one copy of each | "
        + " | ".join(f"{s4[p]['origin_bytes'] / sum(SEQUENCE_SIZES):.1f}" for p in (n, l, v, f, o))
        + f" | | | exactly 1 | {verdict(s4[o]['origin_bytes'] == sum(SEQUENCE_SIZES))} |",
        f"| 5. loopback TCP, iperf3 -P 8 -l 1M | GB/s | | | | | {r['s5_gbps']:.2f} | | | ceiling | |",
        "",
        "| agent | figure | target | |",
        "|---|---|---|---|",
        f"| dist/esxi-tweet size | {r['s6']['size_bytes'] / MIB:.2f} MiB | <= 2.5 MiB | {verdict(r['s6']['size_bytes'] <= 2.5 * MIB)} |",
        f"| `post` to a local fake API, wall time | {r['s6']['post_mean_ms']:.1f} ms ± {r['s6']['post_stddev_ms']:.1f} | | |",
        f"| `post` peak RSS (max of 10) | {r['s6']['post_peak_rss_mib']:.1f} MiB | <= 10 MiB | {verdict(r['s6']['post_peak_rss_mib'] <= 10)} |",
        f"| signatures per second (criterion) | {r['s6']['signs_per_s']:.0f} | | |",
        "",
        "Raw figures: `bench/results.json`.",
        "",
    ]
    (OUT / "results.md").write_text("\n".join(lines) + "\n" + r.get("notes", ""))
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def svg(results):
    """Three bar charts side by side: last client, median first byte, origin copies."""
    s3 = results["s3"]
    names = ["nginx", "nginx+lock", "varnish", "varnish-file", "ours"]
    colors = {"nginx": "#9aa5b1", "nginx+lock": "#52606d", "varnish": "#c08a2e",
              "varnish-file": "#8a5a12", "ours": "#2f80ed"}
    panels = [
        ("last client done (s)", [s3[n]["last_s"] for n in names], "{:.1f}"),
        ("median first byte (s)", [s3[n]["median_ttfb_s"] for n in names], "{:.2f}"),
        ("copies sent by origin", [s3[n]["origin_bytes"] / STORM_SIZE for n in names], "{:.0f}"),
    ]
    w, h, pw = 780, 300, 240
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<text x="10" y="20" font-size="14" font-weight="bold">Boot storm: {STORM_CLIENTS} cold clients, one {STORM_SIZE // MIB} MiB object</text>']
    for i, (title, values, fmt) in enumerate(panels):
        x0 = 20 + i * (pw + 20)
        top = max(values) or 1
        parts.append(f'<text x="{x0}" y="50">{title}</text>')
        for j, (name, v) in enumerate(zip(names, values)):
            bh = 180 * v / top
            x = x0 + j * 47
            y = 250 - bh
            label = {"nginx+lock": "+lock", "varnish-file": "v-file"}.get(name, name)
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="40" height="{bh:.1f}" fill="{colors[name]}"/>')
            parts.append(f'<text x="{x + 20}" y="{y - 4:.1f}" text-anchor="middle">{fmt.format(v)}</text>')
            parts.append(f'<text x="{x + 20}" y="268" text-anchor="middle" font-size="10">{label}</text>')
    parts.append("</svg>")
    (OUT / "storm.svg").write_text("\n".join(parts) + "\n")


def main():
    # `scripts/bench.py storm hot`: only those scenarios, printed, not written to bench/.
    only = sys.argv[1:]
    unknown = set(only) - {"hot", "storm", "sequence", "ceiling", "agent"}
    if unknown:
        raise SystemExit(f"bench: unknown scenario {', '.join(sorted(unknown))}: "
                         "choose from hot, storm, sequence, ceiling, agent")
    for tool in ["nginx", "varnishd", "wrk", "iperf3", "hyperfine", "openssl", "curl",
                 "/usr/bin/time"]:
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is missing: run `make bench`, which installs it")
    WORK.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(exist_ok=True)
    log("generating files and certificates")
    make_files()
    certs = make_certs()
    origin_port = free_port()
    _, origin_log = start_origin(origin_port, certs)
    unwrap_port = free_port()
    start_unwrap(unwrap_port, origin_port)
    proxies = Proxies(origin_port, certs, unwrap_port)
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs ({cpu.group(1) if cpu else platform.machine()}), "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / (1 << 30):.0f} GiB, "
                   f"Linux {platform.release()}",
        "versions": "; ".join([
            subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
            subprocess.run(["varnishd", "-V"], capture_output=True,
                           text=True).stderr.splitlines()[0].strip(),
            subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
            run(["rustc", "-V"]).strip(),
            run([str(DIST / "autodeploy-cache"), "--version"]).strip(),
        ]),
        "s1": {}, "s2": {}, "s3": {}, "s4": {},
    }
    partial = WORK / "partial.json"
    steps = {"hot": lambda: scenario_hot(proxies, results),
             "storm": lambda: scenario_storm(proxies, origin_log, results),
             "sequence": lambda: scenario_sequence(proxies, origin_log, results),
             "ceiling": lambda: scenario_ceiling(results),
             "agent": lambda: scenario_agent(origin_port, certs, results)}
    try:
        proxies.restart()
        for name in only or steps:
            steps[name]()
            partial.write_text(json.dumps(results, indent=2))
    finally:
        for p in processes:
            stop(p)
    if only:
        # A partial run is for working on one figure: print it, keep the committed report.
        print(json.dumps(results, indent=2))
        return
    notes = OUT / "notes.md"
    if notes.exists():
        results["notes"] = notes.read_text()
    report(results)
    svg(results)
    log(f"wrote {OUT / 'results.md'} and {OUT / 'storm.svg'}")
    print((OUT / "results.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
