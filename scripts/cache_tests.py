#!/usr/bin/env python3
"""`make cache-tests`: the public HTTP caching test suite (https://cache-tests.fyi) against
dist/autodeploy-cache, on 127.0.0.1.

The suite's server stands in for the origin (plain HTTP), the proxy runs in front of it with
its defaults and an empty cache, and the suite's command-line client runs every test through
the proxy. Writes bench/cache-tests.md: passes per kind (required, optimal, check) and the
tests that fail.

The suite is not on a package registry in its current form (npm has a 2021 release without
the CDN-Cache-Control tests): point CACHE_TESTS_DIR at a checkout of
github.com/http-tests/cache-tests. Its npm dependencies are installed into it when missing.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import free_port, wait_port  # scripts/ is on the path of a script run from it

ROOT = Path(__file__).resolve().parent.parent
PROXY = ROOT / "dist" / "autodeploy-cache"
OUT = ROOT / "bench" / "cache-tests.md"

# Reads the suite's test list for each test's kind, and the results, from the suite itself.
SCORE = """
import fs from 'fs'
const suite = process.argv[1]
const { default: tests } = await import(suite + '/tests/index.mjs')
const results = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const out = []
for (const group of tests) {
  for (const t of group.tests) {
    if (t.id in results) {
      out.push({ id: t.id, kind: t.kind || 'required', group: group.id, name: t.name,
                 passed: results[t.id] === true, why: results[t.id] })
    }
  }
}
console.log(JSON.stringify(out))
"""


def main():
    suite = os.environ.get("CACHE_TESTS_DIR")
    if not suite or not (Path(suite) / "tests" / "index.mjs").exists():
        raise SystemExit("cache-tests: set CACHE_TESTS_DIR to a checkout of "
                         "https://github.com/http-tests/cache-tests (git clone it once)")
    suite = Path(suite).resolve()
    for tool in ["node", "npm"]:
        if not shutil.which(tool):
            raise SystemExit(f"cache-tests: {tool} is missing: apt-get install nodejs npm")
    if not PROXY.exists():
        raise SystemExit("cache-tests: dist/autodeploy-cache is missing: run make first")
    if not (suite / "node_modules").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--omit=dev"], cwd=suite,
                       check=True)
    origin_port, proxy_port = free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="cache-tests-"))
    env = dict(os.environ, npm_config_protocol="http", npm_config_port=str(origin_port),
               npm_config_pidfile=str(work / "server.pid"))
    server = subprocess.Popen(["node", "test-engine/server/server.mjs"], cwd=suite, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = subprocess.Popen([str(PROXY), "--listen", f"127.0.0.1:{proxy_port}",
                              "--upstream", f"http://127.0.0.1:{origin_port}",
                              "--cache-dir", str(work / "cache")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(origin_port)
        wait_port(proxy_port)
        env = dict(os.environ, npm_config_base=f"http://127.0.0.1:{proxy_port}",
                   npm_config_id="", npm_package_config_id="")
        run = subprocess.run(["node", "--no-warnings", "test-engine/cli.mjs"], cwd=suite,
                             env=env, capture_output=True, text=True, timeout=900)
        results = work / "results.json"
        results.write_text(run.stdout)
        scored = subprocess.run(["node", "--input-type=module", "-e", SCORE, str(suite),
                                 str(results)], capture_output=True, text=True, check=True)
        tests = json.loads(scored.stdout)
    finally:
        for p in (proxy, server):
            p.terminate()
            p.wait(15)
        shutil.rmtree(work, ignore_errors=True)
    version = ""
    if (suite / ".git").exists():
        version = subprocess.run(["git", "-C", str(suite), "log", "-1", "--format=%h %cs"],
                                 capture_output=True, text=True).stdout.strip()
    report(tests, version or os.environ.get("CACHE_TESTS_VERSION", ""))


def report(tests, suite_version):
    kinds = ["required", "optimal", "check"]
    counts = {k: (sum(t["passed"] for t in tests if t["kind"] == k),
                  sum(1 for t in tests if t["kind"] == k)) for k in kinds}
    both = (counts["required"][0] + counts["optimal"][0],
            counts["required"][1] + counts["optimal"][1])
    lines = [
        "# cache-tests",
        "",
        f"`make cache-tests` ({time.strftime('%Y-%m-%d')}, suite {suite_version or 'unknown'}): "
        "the public HTTP caching tests run through dist/autodeploy-cache with its defaults.",
        "",
        "| kind | passed |",
        "|---|---|",
    ]
    lines += [f"| {k} | {counts[k][0]} / {counts[k][1]} |" for k in kinds]
    lines += [f"| required + optimal | {both[0]} / {both[1]} |", "",
              "Failing required and optimal tests:", ""]
    for t in tests:
        if not t["passed"] and t["kind"] != "check":
            lines.append(f"- {t['kind']} `{t['id']}`: {t['name']}")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
