"""Benchmark of the demo: time from `make demo` to the first generated image, and generate latency
at concurrency 1, 8 and 50.

Why: the demo is what a newcomer runs first; it should be up and drawing within seconds of
`make demo` on a built environment, and stay responsive when many people (or a script) call it.

Protocol (all on this machine, loopback only):

1. cold start, ``--starts`` times: run ``make demo PORT=p`` (the environment is already
   built, so make only checks it), poll the port, and call ``/generate`` with a prompt as
   soon as it answers; the figure is the wall time from launching make to holding the
   generated images (so it includes Python start-up, imports, loading the manifest and the
   first model, and the first request);
2. latency: against one warm server, ``--rounds`` rounds per concurrency c in {1, 8, 50}:
   c clients submit one ``/generate`` call each (the prompt alone: 4 images, default model)
   at the same moment (and more rounds where c is small: at least 20 requests per level); every request's wall time from submit to result is recorded.
   Reported: p50 / p95 / max over all requests of all rounds, and requests per second.

    python scripts/benchmark_demo.py --json docs/results/demo/benchmark_demo.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red bell over a blue ball"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_client(url: str, deadline: float) -> Any:
    from gradio_client import Client

    while time.time() < deadline:
        try:
            return Client(url, verbose=False)
        except Exception:  # not listening yet
            time.sleep(0.1)
    raise RuntimeError(f"{url}: no answer before the deadline")


SERVER_LOG = Path(os.environ.get("TMPDIR", "/tmp")) / "benchmark_demo_server.log"


def start(cmd: List[str], port: int) -> subprocess.Popen:
    env = {**os.environ, "PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(SERVER_LOG, "a")  # the server's own output, for when a request fails
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cold_start(cmd: List[str]) -> float:
    port = free_port()
    t0 = time.perf_counter()
    proc = start(cmd, port)
    try:
        client = wait_client(f"http://127.0.0.1:{port}/", time.time() + 300)
        images = client.predict(PROMPT, api_name="/generate")[0]
        assert len(images) == 4
        return time.perf_counter() - t0
    finally:
        stop(proc)


def pct(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def latency(url: str, concurrency: int, rounds: int) -> Dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(concurrency)]

    def one(i: int) -> float:
        t = time.perf_counter()
        out = clients[i].predict(PROMPT, seed=i, api_name="/generate")
        assert len(out[0]) == 4
        return time.perf_counter() - t

    lat: List[float] = []
    walls = []
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(max(rounds, -(-20 // concurrency))):  # at least 20 requests per level
            t0 = time.perf_counter()
            lat += list(pool.map(one, range(concurrency)))
            walls.append(time.perf_counter() - t0)
    return {"concurrency": concurrency, "requests": len(lat), "p50_s": statistics.median(lat), "p95_s": pct(lat, 0.95),
            "max_s": max(lat), "requests_per_s": len(lat) / sum(walls)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=3, help="cold starts through make demo (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per concurrency level (default 3)")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 8, 50])
    ap.add_argument("--models", help="a checkpoint folder other than app/checkpoints (runs t2i demo directly)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    if args.models:
        cmd = [sys.executable, "-m", "imagetext.cli", "demo", "--models", args.models]
        how = f"t2i demo --models {args.models}"
    else:
        cmd = ["make", "demo"]
        how = "make demo"
    starts = [cold_start(cmd) for _ in range(args.starts)]
    print(f"{how} -> first generated image: " + ", ".join(f"{s:.1f} s" for s in starts), flush=True)

    port = free_port()
    proc = start(cmd, port)
    rows = []
    try:
        url = f"http://127.0.0.1:{port}/"
        c = wait_client(url, time.time() + 300)
        c.predict(PROMPT, api_name="/generate")  # warm
        for level in args.levels:
            r = latency(url, level, args.rounds)
            rows.append(r)
            print(f"concurrency {level:3d}: p50 {r['p50_s'] * 1000:.0f} ms, p95 {r['p95_s'] * 1000:.0f} ms, "
                  f"max {r['max_s'] * 1000:.0f} ms, {r['requests_per_s']:.1f} req/s over {r['requests']} requests",
                  flush=True)
    finally:
        stop(proc)
    out = {"command": how, "first_image_s": starts, "first_image_median_s": statistics.median(starts),
           "latency": rows, "request": f"/generate with the prompt alone ({PROMPT!r}: 4 images, the default model)",
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "server_concurrency": 4, "note": "loopback; the server and the clients share this machine's CPUs"}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
