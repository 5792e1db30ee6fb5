#!/usr/bin/env python3
"""`make demo`: a one-minute boot storm, nginx (the users' configuration) against ours.

20 clients ask at once for the same 64 MiB object that neither proxy has yet, through an origin
limited to 50 MB/s per connection (a busy vCenter). Prints what the origin sent, what the
clients got, and how long it took. Reuses the machinery of scripts/bench.py.
"""

import sys
import time

import bench

CLIENTS = 20
SIZE = 64 * bench.MIB


def main():
    bench.WORK.mkdir(parents=True, exist_ok=True)
    bench.make_files()
    certs = bench.make_certs()
    origin_port = bench.free_port()
    _, origin_log = bench.start_origin(origin_port, certs)
    proxies = bench.Proxies(origin_port, certs)
    bench.STORM_SIZE = SIZE
    rows = []
    try:
        proxies.restart()
        for name in ["nginx", "ours"]:
            print(f"demo: {CLIENTS} hosts boot at once through {name} ...", flush=True)
            since = bench.log_lines(origin_log)
            total, ttfb = bench.storm(proxies.url(name, "/slow/large.bin"), CLIENTS)
            time.sleep(0.5)
            sent = bench.origin_bytes(origin_log, since, "/slow/large.bin")
            rows.append((name, sent, CLIENTS * SIZE, total, ttfb))
    finally:
        for p in bench.processes:
            bench.stop(p)
    print()
    print(f"{'proxy':8} {'origin fetches':>15} {'origin MiB':>11} {'served MiB':>11} {'last host done':>15} {'median 1st byte':>16}")
    for name, sent, served, total, ttfb in rows:
        print(f"{name:8} {sent / SIZE:>15.0f} {sent / bench.MIB:>11.0f} {served / bench.MIB:>11.0f} {total:>14.1f}s {ttfb:>15.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
