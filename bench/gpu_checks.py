"""Every check that needs a GPU, in one call: what a lent GPU can show that a CPU cannot.

Checks (each a subprocess with its own time limit; a failure is reported and the next check runs):
  env                 the device, its measured bf16 matrix-product ceiling (8192^3) and copy bandwidth
  translator_bench    tokens/s against Marian of the same size, bf16 + torch.compile, MFU; GPT-124M at seq 1024
  translator_eager    the translator against Marian in bf16 without compile (seconds, not minutes)
  gpt_mfu             GPT-124M at seq 1024, bf16 + compile (loss included) + fused AdamW, batch 32: tokens/s, MFU,
                      then a profile of 3 steps (device time by kernel family, the top kernels)
  gpt_mfu_autotune    the same at batch 32 with compile mode max-autotune-no-cudagraphs (minutes of autotuning)
  diffusion_bench     images/s against diffusers' UNet2DModel, bf16 + compile; DDIM 10/50/1000-step sampling
  diffusion_bf16      the same in bf16 without compile (DDIM 50 only)
  diffusion_eager     the same in fp32 without compile
  translator_multi30k Multi30k de->en, stages prepare/train/evaluate, trainer=gpu, 3-minute cap: BLEU, wall time
  diffusion_fashion   experiment=fashion_mnist_h100 (25 epochs, 3.5-minute cap), stages prepare/judge/train/evaluate:
                      conditional accuracy, classifier-space FID by DDIM steps (carry: bench/gpu_carry.sh --fashion)
  diffusion_gpu       `triad train diffusion` with a full-resolution UNet on MNIST-5k, trainer=gpu
  transfer_pneumonia  experiment=pneumonia_full, stages prepare/train/evaluate: accuracy and AUC on the official
                      test split
  transfer_evidence   the evidence stage of the same experiment, after transfer_pneumonia (its params and data)

Usage (on the GPU machine, repository root; data mirror and wheels prepared as bench/GPU.md says):
  python bench/gpu_checks.py [--only a,b+c] [--budget SECONDS] [--out DIR]
``--only`` runs its comma-separated items in turn; ``b+c`` runs b and c side by side on the one GPU
(for trainings whose wall time matters less than the lease's: never for throughput checks). Each
check gets its own MLflow database (``mlflow-<check>.db``) so that side-by-side runs never share one.
Prints the command, each check's figures and a summary table at the end; full logs go to --out.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
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

# triad's UNet against diffusers' at the medium profile's shape (conf/model/diffusion/medium.yaml), on the GPU
DIFFUSION_BENCH = [
    PY,
    "bench/diffusion_throughput.py",
    "--device",
    "cuda",
    "--batch-size",
    "256",
    "--channels",
    "64",
    "--res-blocks",
    "2",
    "--steps",
    "20",
    "--sample-batch",
    "500",
]

CHECKS: dict[str, tuple[list[str], int]] = {
    "env": ([PY, "-c", ENV_CODE], 60),
    "translator_bench": (
        [
            PY,
            "bench/translator_throughput.py",
            "--size",
            "base",
            "--device",
            "cuda",
            "--bf16",
            "--compile",
            "--gpt",
            "--batch-size",
            "128",
            "--steps",
            "20",
        ],
        240,
    ),
    "translator_eager": (
        [
            PY,
            "bench/translator_throughput.py",
            "--size",
            "base",
            "--device",
            "cuda",
            "--bf16",
            "--batch-size",
            "128",
            "--steps",
            "20",
        ],
        90,
    ),
    "gpt_mfu": (
        [
            PY,
            "bench/translator_throughput.py",
            "--gpt-only",
            "--device",
            "cuda",
            "--bf16",
            "--compile",
            "--gpt-batch",
            "32",
            "--steps",
            "10",
            "--profile",
            "3",
        ],
        150,
    ),
    "gpt_mfu_autotune": (
        [
            PY,
            "bench/translator_throughput.py",
            "--gpt-only",
            "--device",
            "cuda",
            "--bf16",
            "--compile",
            "--compile-mode",
            "max-autotune-no-cudagraphs",
            "--gpt-batch",
            "32",
            "--steps",
            "10",
        ],
        360,
    ),
    "diffusion_bench": ([*DIFFUSION_BENCH, "--bf16", "--compile", "--sample-steps", "10", "50"], 150),
    "diffusion_bf16": ([*DIFFUSION_BENCH, "--bf16", "--sample-steps", "50"], 150),
    "diffusion_eager": ([*DIFFUSION_BENCH, "--sample-steps", "50"], 150),
    # the stages the measured run took (bench/GPU.md, 2026-11-26: BLEU 41.3 after the 3-minute cap, 20 epochs);
    # the language-model stage is left out: it does not change the translator
    "translator_multi30k": (
        [
            "bash",
            "-c",
            " && ".join(
                [
                    f"{PY} -m triad.cli config experiment=multi30k_de_en model.translator.max_epochs=30 "
                    f"trainer.checkpoint_every_n_steps=1000 trainer.max_time_minutes=3 {' '.join(QUIET)} "
                    ">params-multi30k.yaml",
                    *(
                        f"{PY} -m triad.cli stage --params params-multi30k.yaml {step} translator"
                        for step in ("prepare", "train", "evaluate")
                    ),
                    "cat reports/translator/metrics.json artifacts/translator/train/run.json",
                ]
            ),
        ],
        330,
    ),
    # issue 4's target run, cut to fit one call: 25 of the experiment's 40 epochs, DDIM steps 10, 50 and 1000
    # only (a cosine schedule that completes: the H200 bench's 7,238 images/s for this UNet puts an epoch
    # near 8 s), a 3.5-minute cap, and 1,500 samples per DDIM step count (1000-step sampling with guidance is
    # most of the evaluation).
    # Fashion-MNIST travels xz-compressed (bench/gpu_carry.sh --fashion) and is re-gzipped into the mirror here.
    "diffusion_fashion": (
        [
            "bash",
            "-c",
            " && ".join(
                [
                    'mirror="${TRIAD_DATA_MIRROR:?set TRIAD_DATA_MIRROR to the carried data}"',
                    '{ [ -d "$mirror/fashion-mnist" ] || { tar -xJf "$mirror/fashion-mnist.tar.xz" -C "$mirror" '
                    '&& gzip -1 "$mirror"/fashion-mnist/*-ubyte; }; }',
                    f"{PY} -m triad.cli config experiment=fashion_mnist_h100 model.diffusion.max_epochs=25 "
                    "trainer.max_time_minutes=3.5 model.diffusion.eval_samples=1500 "
                    "'model.diffusion.eval_steps=[10,50,1000]' "
                    f"{' '.join(QUIET)} "
                    ">params-fashion.yaml",
                    *(
                        f"{PY} -m triad.cli stage --params params-fashion.yaml {step} diffusion"
                        for step in ("prepare", "judge", "train", "evaluate")
                    ),
                    "cat reports/diffusion/metrics.json",
                ]
            ),
        ],
        570,
    ),
    "diffusion_gpu": (
        [
            PY,
            "-m",
            "triad.cli",
            "train",
            "diffusion",
            "trainer=gpu",
            "model/diffusion=medium",
            "model.diffusion.max_epochs=60",
            "model.diffusion.eval_steps=[10,20,50,100]",
            "model.diffusion.eval_samples=2000",
            "model.diffusion.grid_every_n_epochs=20",
            *QUIET,
        ],
        420,
    ),
    # the stages one by one, as dvc.yaml runs them, each check with its own params file so that checks side by
    # side never read each other's; the evidence stage (many small trainings) is its own check
    "transfer_pneumonia": (
        [
            "bash",
            "-c",
            " && ".join(
                [
                    f"{PY} -m triad.cli config experiment=pneumonia_full trainer.max_time_minutes=4 {' '.join(QUIET)} "
                    ">params-pneumonia.yaml",
                    *(
                        f"{PY} -m triad.cli stage --params params-pneumonia.yaml {step} transfer"
                        for step in ("prepare", "train", "evaluate")
                    ),
                    "cat reports/transfer/metrics.json",
                ]
            ),
        ],
        360,
    ),
    "transfer_evidence": (
        [PY, "-m", "triad.cli", "stage", "--params", "params-pneumonia.yaml", "evidence", "transfer"],
        420,
    ),
}
# lines worth carrying into the summary
FIGURES = re.compile(
    r"(device:|measured|parameters|images/s|tokens/s|ratio|MFU|^test|bleu|chrf|fid|accuracy|auc"
    r"|score|precision|recall|champion|seconds|error|Error)",
    re.IGNORECASE,
)


def run_group(names: list[str], out_dir: Path, left: float) -> dict[str, tuple[str, float, list[str]]]:
    """Run ``names`` side by side (one name: alone), each within its limit and ``left`` seconds."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    running = {}
    for name in names:
        command, limit = CHECKS[name]
        limit = int(min(limit, left))
        shown = shlex.join(command[:2] + ["..."] if name == "env" else command)
        print(f"\n=== {name}: {shown} (limit {limit} s{', side by side' if len(names) > 1 else ''})", flush=True)
        handle = (out_dir / f"{name}.log").open("w")
        proc = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env, MLFLOW_TRACKING_URI=f"sqlite:///mlflow-{name}.db"),
        )
        running[name] = (proc, handle, time.perf_counter(), limit)
    results = {}
    for name, (proc, handle, start, limit) in running.items():
        try:
            proc.wait(timeout=max(1.0, start + limit - time.perf_counter()))
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"timed out at {limit} s"
        seconds = time.perf_counter() - start
        handle.close()
        lines = [line.rstrip() for line in (out_dir / f"{name}.log").read_text(errors="replace").splitlines()]
        figures = [line for line in lines if FIGURES.search(line) and len(line) < 240][-25:]
        print(f"\n--- {name}: {status} in {seconds:.0f} s")
        for line in figures:
            print("   ", line)
        if status != "ok":
            print("    last lines:", *lines[-15:], sep="\n    ")
        results[name] = (status, seconds, figures)
    sys.stdout.flush()
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        default=",".join(CHECKS),
        help="comma-separated checks run in turn; a+b runs a and b side by side (default: all, in turn)",
    )
    parser.add_argument("--budget", type=float, default=560, help="start no check that could overrun this many seconds")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-checks")))
    args = parser.parse_args(argv)
    groups = [[n for n in item.split("+") if n] for item in args.only.split(",") if item]
    unknown = sorted({n for group in groups for n in group} - set(CHECKS))
    if unknown:
        parser.error(f"unknown checks {unknown}; choose from {sorted(CHECKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    print("command: python bench/gpu_checks.py " + shlex.join(argv))
    began = time.perf_counter()
    results = {}
    for group in groups:
        left = args.budget - (time.perf_counter() - began)
        if left < 30:
            results.update({name: ("not run: budget spent", 0.0, []) for name in group})
            continue
        results.update(run_group(group, args.out, left))
    print("\n=== summary")
    for name, (status, seconds, _) in results.items():
        print(f"{name:<20} {status:<24} {seconds:6.0f} s")
    return 0 if all(r[0] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
