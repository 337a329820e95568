"""Timing shared by the benchmarks: triad and its reference take turns, round after round.

Timing one model and then the other lets a slow spell of a shared machine land on one of them
only; on the 2-core CI machines that alone moved a ratio by 15%. Here every round times each
contender once, so a slow spell hits both, and the figures are medians over the rounds: the
median rate of each and the median of the rounds' ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def seconds_per_call(fn: Callable[[], object], calls: int, device: torch.device, warmup: int = 2) -> float:
    """Mean seconds of ``calls`` calls of ``fn``, after ``warmup`` untimed calls (GPU work awaited)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls


def take_turns(
    contenders: dict[str, Callable[[], object]], rounds: int, calls: int, device: torch.device, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds per call of each contender in each round; within a round they run one after another."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(rounds):
        for name, fn in contenders.items():
            seconds[name].append(seconds_per_call(fn, calls, device, warmup if round_ == 0 else 0))
    return seconds


def compare(what: str, work: float, unit: str, ours: list[float], theirs: list[float], names: tuple[str, str]) -> float:
    """Print both median rates (``work`` units per call) and the median ratio; return that ratio."""
    ratios = sorted(b / a for a, b in zip(ours, theirs))  # rate ratio = their seconds / our seconds
    ratio = statistics.median(ratios)
    print(
        f"{what}: {names[0]} {work / statistics.median(ours):,.1f} {unit}/s, "
        f"{names[1]} {work / statistics.median(theirs):,.1f} {unit}/s; ratio {names[0]}/{names[1]} "
        f"{ratio:.2f}x (median of {len(ratios)} rounds: {' '.join(f'{r:.2f}' for r in ratios)})"
    )
    return ratio


# kernel families, by name (first match wins): where a GPU step's time goes
KERNEL_FAMILIES = (
    ("attention", ("flash", "fmha", "attention", "sdpa", "mha")),
    ("optimizer", ("adam", "multi_tensor", "foreach", "fused_sgd")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "matmul", "aten::mm", "addmm", "bmm")),
)


def kernel_family(name: str) -> str:
    """``attention``, ``optimizer``, ``matmul``, ``fused (Inductor Triton)`` or ``other``, from a kernel's
    (or CPU operator's) name. Inductor names its kernels after the operators they fuse
    (``triton_poi_fused_addmm_gelu_0`` is a pointwise bias and GELU), so its kernels are sorted by their
    prefix first: ``triton_tem`` is a matmul template (max-autotune), any other ``triton_`` a fused kernel."""
    lowered = name.lower()
    if lowered.startswith("triton_tem"):
        return "matmul"
    if lowered.startswith("triton"):
        return "fused (Inductor Triton)"
    for family, needles in KERNEL_FAMILIES:
        if any(needle in lowered for needle in needles):
            return family
    return "other"


def profile_calls(fn: Callable[[], object], calls: int, device: torch.device, top: int = 12) -> dict[str, float]:
    """Profile ``calls`` calls of ``fn`` (already warm) and print where the time went.

    On a GPU: each kernel family's device milliseconds per call and share of device time, the device's
    busy time against the wall time (the rest is the GPU waiting on the host: launches, Python, syncs),
    then the ``top`` kernels. On a CPU the same for operators' self CPU time. Returns ms per call by family.
    """
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    if on_gpu:
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if on_gpu:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1e3 / calls

    def self_us(event) -> float:
        if on_gpu:
            return float(getattr(event, "self_device_time_total", 0.0) or getattr(event, "self_cuda_time_total", 0.0))
        return float(event.self_cpu_time_total)

    wanted = torch.autograd.DeviceType.CUDA if on_gpu else torch.autograd.DeviceType.CPU
    rows = [(e.key, self_us(e) / 1e3 / calls) for e in prof.key_averages() if e.device_type == wanted]
    rows = [(name, ms) for name, ms in rows if ms > 0]
    busy = sum(ms for _, ms in rows)
    families: dict[str, float] = {}
    for name, ms in rows:
        family = kernel_family(name)
        families[family] = families.get(family, 0.0) + ms
    where = "device" if on_gpu else "self CPU"
    print(
        f"profile over {calls} call(s): wall {wall_ms:.1f} ms per call, "
        f"{where} time {busy:.1f} ms ({busy / wall_ms:.0%})"
    )
    for family, ms in sorted(families.items(), key=lambda item: -item[1]):
        print(f"  {family:<24} {ms:8.2f} ms per call  {ms / busy:6.1%}")
    print(f"  top {top} by {where} time:")
    for name, ms in sorted(rows, key=lambda row: -row[1])[:top]:
        print(f"    {ms:8.2f} ms  {kernel_family(name):<12} {name[:110]}")
    return families
