"""Benchmark: each registered champion behind `mlflow models serve`, under a bounded load.

Run from the project root after `triad pipeline` (or `make pipeline`) has registered the champions:

    .venv/bin/python bench/serve_models.py [--heads translator spread transfer] [--workers 1 2]
                                           [--clients 4] [--requests 200] [--max-seconds 60]
                                           [--batch-wait-ms 0 10]

For each head and worker count it starts the ecosystem's own scoring server on loopback
(`mlflow models serve -m models:/<model>@champion --env-manager local --workers N`), waits for /ping, sends
the model's own serving example (``serving_input_example.json``, the request its signature was inferred
from) from ``--clients`` concurrent keep-alive clients until ``--requests`` have been answered or
``--max-seconds`` have passed, and prints p50/p95/p99 latency, requests per second, errors and the peak
resident memory of the server's whole process tree (sampled every 50 ms). The same machine runs the
clients, so the figures are for one 2-core box serving itself.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def champion_uri(head: str) -> str:
    from triad.cli import model_uri
    from triad.config import compose
    from triad.heads import registered_model_name

    return model_uri(None, registered_model_name(compose([]), head))


def serving_example(uri: str) -> bytes:
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(uri))
    example = local / "serving_input_example.json"
    if not example.is_file():
        raise SystemExit(f"{uri} has no serving_input_example.json")
    return example.read_bytes()


class TreeMemory(threading.Thread):
    """Peak summed RSS of a process and its children, sampled until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root, self.peak, self.running = psutil.Process(pid), 0, True

    def run(self) -> None:
        while self.running:
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)


def wait_ready(port: int, server: subprocess.Popen, timeout: float = 180) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}:\n{server.stdout.read()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not answer /ping in time")


def load(port: int, body: bytes, clients: int, requests: int, max_seconds: float) -> tuple[list[float], int, float]:
    """(latencies in seconds of the answered requests, error count, wall seconds)."""
    lock, latencies, errors = threading.Lock(), [], [0]
    remaining = [requests]
    deadline = time.perf_counter() + max_seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            started = time.perf_counter()
            try:
                conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[0] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    return latencies, errors[0], time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", nargs="+", default=["translator", "spread", "transfer"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=60)
    parser.add_argument(
        "--batch-wait-ms",
        nargs="+",
        type=float,
        default=None,
        help="serve once per value with $TRIAD_SERVE_BATCH_WAIT_MS set to it (0: no dynamic batching; models "
        "that batch read it, the translator); default: the registered model's own setting",
    )
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    import mlflow

    from triad import tracking
    from triad.config import compose

    mlflow.set_tracking_uri(tracking.tracking_uri(compose([])))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    print(
        f"{'model':32} {'workers':>7} {'wait ms':>7} {'ready s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'req/s':>7} {'errors':>6} {'answered':>8} {'peak MiB':>8}"
    )
    for head in args.heads:
        uri = champion_uri(head)
        body = serving_example(uri)
        for workers, wait_ms in [(w, b) for w in args.workers for b in (args.batch_wait_ms or [None])]:
            port = free_port()
            server_env = env if wait_ms is None else {**env, "TRIAD_SERVE_BATCH_WAIT_MS": f"{wait_ms:g}"}
            wait = "model" if wait_ms is None else f"{wait_ms:g}"
            server = subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    uri,
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "--workers",
                    str(workers),
                ],
                env=server_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            memory = TreeMemory(server.pid)
            memory.start()
            try:
                ready = wait_ready(port, server)
                load(port, body, 1, args.clients, 30)  # warm every code path once, untimed
                latencies, errors, seconds = load(port, body, args.clients, args.requests, args.max_seconds)
            finally:
                memory.running = False
                server.terminate()
                try:
                    server.wait(20)
                except subprocess.TimeoutExpired:
                    server.kill()
            if not latencies:
                print(f"{uri:32} {workers:>7} {wait:>7} no answers, {errors} errors")
                continue
            ms = [1000 * v for v in latencies]
            print(
                f"{uri.removeprefix('models:/'):32} {workers:>7} {wait:>7} {ready:7.1f} {statistics.median(ms):8.1f} "
                f"{percentile(ms, 95):8.1f} {percentile(ms, 99):8.1f} {len(latencies) / seconds:7.1f} {errors:>6} "
                f"{len(latencies):>8} {memory.peak / 2**20:8.0f}"
            )


if __name__ == "__main__":
    main()
