"""Every check that needs a GPU, in one call: what a lent GPU can show that a CPU cannot.

Checks (each a subprocess with its own time limit; a failure is reported and the next check runs):
  env                 the device, its measured bf16 matrix-product ceiling (8192^3) and copy bandwidth
  translator_bench    tokens/s against Marian of the same size, bf16 + torch.compile, MFU; GPT-124M at seq 1024
  translator_eager    the same benchmark in fp32 without compile (what bf16 and compile buy)
  diffusion_bench     images/s against diffusers' UNet2DModel, bf16 + compile; DDIM 10/50/1000-step sampling
  diffusion_eager     the same in fp32 without compile
  translator_multi30k the real pipeline entry (`triad train`) on Multi30k de->en, trainer=gpu: BLEU, wall time
  diffusion_gpu       `triad train diffusion` with a full-resolution UNet on MNIST-5k, trainer=gpu
  transfer_pneumonia  experiment=pneumonia_full, stages prepare/train/evaluate: accuracy and AUC on the official test split
  transfer_evidence   the evidence stage of the same experiment (fine-tuned against scratch at 3 label fractions)

Usage (on the GPU machine, repository root; data mirror and wheels prepared as bench/GPU.md says):
  python bench/gpu_checks.py [--only a,b] [--budget SECONDS] [--out DIR]
Prints the command, each check's figures and a summary table at the end; full logs go to --out.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
QUIET = ["trainer.enable_progress_bar=false"]

ENV_CODE = r"""
import torch, time
p = torch.cuda.get_device_properties(0)
print(f"device: {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}")
def bench(fn, n=10):
    for _ in range(3): fn()
    torch.cuda.synchronize(); s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(n): fn()
    e.record(); torch.cuda.synchronize(); return s.elapsed_time(e) / 1e3 / n
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
t = bench(lambda: a @ b)
print(f"measured bf16 matmul 8192^3: {2 * 8192**3 / t / 1e12:.0f} TFLOP/s")
a32 = torch.randn(8192, 8192, device="cuda"); b32 = torch.randn_like(a32)
torch.backends.cuda.matmul.allow_tf32 = True
t = bench(lambda: a32 @ b32)
print(f"measured tf32 matmul 8192^3: {2 * 8192**3 / t / 1e12:.0f} TFLOP/s")
x = torch.randn(2**28, device="cuda"); y = torch.empty_like(x)
t = bench(lambda: y.copy_(x))
print(f"measured device copy: {2 * x.numel() * 4 / t / 1e12:.2f} TB/s (bytes read + written)")
"""

CHECKS: dict[str, tuple[list[str], int]] = {
    "env": ([PY, "-c", ENV_CODE], 60),
    "translator_bench": ([PY, "bench/translator_throughput.py", "--size", "base", "--device", "cuda", "--bf16",
                          "--compile", "--gpt", "--batch-size", "128", "--steps", "20"], 240),
    "translator_eager": ([PY, "bench/translator_throughput.py", "--size", "base", "--device", "cuda",
                          "--batch-size", "128", "--steps", "20"], 120),
    "diffusion_bench": ([PY, "bench/diffusion_throughput.py", "--device", "cuda", "--bf16", "--compile",
                         "--batch-size", "256", "--channels", "64", "--res-blocks", "2", "--steps", "20",
                         "--sample-steps", "10", "50", "1000", "--sample-batch", "500"], 150),
    "diffusion_eager": ([PY, "bench/diffusion_throughput.py", "--device", "cuda", "--batch-size", "256",
                         "--channels", "64", "--res-blocks", "2", "--steps", "20", "--sample-steps", "50",
                         "--sample-batch", "500"], 150),
    "translator_multi30k": ([PY, "-m", "triad.cli", "train", "translator", "experiment=multi30k_de_en", *QUIET], 420),
    "diffusion_gpu": ([PY, "-m", "triad.cli", "train", "diffusion", "trainer=gpu", "model/diffusion=medium",
                       "model.diffusion.max_epochs=60", "model.diffusion.eval_steps=[10,20,50,100]",
                       "model.diffusion.eval_samples=2000", "model.diffusion.grid_every_n_epochs=20", *QUIET], 420),
    # the stages one by one, as dvc.yaml runs them: the evidence stage (many small trainings) is its own check
    "transfer_pneumonia": (["bash", "-c", " && ".join([
        f"{PY} -m triad.cli config --write-params experiment=pneumonia_full {' '.join(QUIET)} >/dev/null",
        *(f"{PY} -m triad.cli stage {step} transfer" for step in ("prepare", "train", "evaluate")),
        f"cat reports/transfer/metrics.json"])], 420),
    "transfer_evidence": ([PY, "-m", "triad.cli", "stage", "evidence", "transfer"], 420),
}
# lines worth carrying into the summary
FIGURES = re.compile(r"(device:|measured|parameters|images/s|tokens/s|ratio|MFU|^test|bleu|chrf|fid|accuracy|auc"
                     r"|score|precision|recall|champion|seconds|error|Error)", re.IGNORECASE)


def run_check(name: str, out_dir: Path, limit: int) -> tuple[str, float, list[str]]:
    command, _ = CHECKS[name]
    log = out_dir / f"{name}.log"
    print(f"\n=== {name}: {shlex.join(command[:2] + ['...'] if name == 'env' else command)} (limit {limit} s)", flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        try:
            proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=limit)
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = f"timed out at {limit} s"
    seconds = time.perf_counter() - start
    lines = [line.rstrip() for line in log.read_text(errors="replace").splitlines()]
    figures = [line for line in lines if FIGURES.search(line) and len(line) < 240][-25:]
    for line in figures:
        print("   ", line)
    if status != "ok":
        print("    last lines:", *lines[-15:], sep="\n    ")
    print(f"--- {name}: {status} in {seconds:.0f} s", flush=True)
    return status, seconds, figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(CHECKS), help="comma-separated checks (default: all)")
    parser.add_argument("--budget", type=float, default=560, help="start no check that could overrun this many seconds")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-checks")))
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        parser.error(f"unknown checks {unknown}; choose from {sorted(CHECKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    print("command: python bench/gpu_checks.py " + shlex.join(argv))
    began = time.perf_counter()
    results = {}
    for name in names:
        left = args.budget - (time.perf_counter() - began)
        if left < 30:
            results[name] = ("not run: budget spent", 0.0, [])
            continue
        results[name] = run_check(name, args.out, int(min(CHECKS[name][1], left)))
    print("\n=== summary")
    for name, (status, seconds, _) in results.items():
        print(f"{name:<20} {status:<24} {seconds:6.0f} s")
    return 0 if all(r[0] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
