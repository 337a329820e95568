"""Benchmark: a stage in a fresh process against the same stage forked from a warm server (``triad.warm``).

Run from the project root after ``make pipeline`` (the stages read its ``params.yaml`` and prepared data):

    .venv/bin/python bench/warm_stages.py [--stage "prepare translator" "evaluate spread" ...] [--repeat 3]

Each stage command runs ``--repeat`` times in a fresh process (``triad stage ...``, as ``dvc repro`` runs
it) and ``--repeat`` times through one warm server started beforehand, alternating, so both see the same
machine load. The first warm run, which waits for the server's imports (paid once per pipeline run), is
timed apart. Prints the median wall time of each and their ratio. The stages rewrite their outputs with
the same bytes, so DVC sees no change afterwards.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from triad import dag, warm

DEFAULT_STAGES = ("prepare translator", "prepare diffusion", "prepare spread")  # no MLflow runs or versions


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", nargs="+", default=list(DEFAULT_STAGES), help="'STEP HEAD' of `triad stage`")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("Command: python bench/warm_stages.py " + " ".join(sys.argv[1:]))
    root = Path.cwd()
    cold_env = dag.stage_environment()
    started = time.perf_counter()
    with warm.WarmServer(root, cold_env) as server:
        warm_env = dag.stage_environment(server.env())
        # the first request waits for the server's imports (once per pipeline run): timed apart
        first = ["triad", "stage", *shlex.split(args.stage[0])]
        timed(first, warm_env)
        print(f"first warm stage, server start included: {time.perf_counter() - started:.1f} s")
        print(f"{'stage':24s} {'fresh s':>8s} {'warm s':>8s} {'ratio':>6s}")
        for stage in args.stage:
            argv = ["triad", "stage", *shlex.split(stage)]
            fresh, forked = [], []
            for _ in range(args.repeat):
                fresh.append(timed(argv, cold_env))
                forked.append(timed(argv, warm_env))
            a, b = statistics.median(fresh), statistics.median(forked)
            print(f"{stage:24s} {a:8.2f} {b:8.2f} {a / b:6.1f}x")


if __name__ == "__main__":
    main()
