"""The GPU checks' triad commands are valid here, before a lent GPU runs them: a session has 15 minutes
of device time, and a mistyped override or stage name in ``bench/gpu_checks.py`` would cost a call."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import torch

from triad.config import compose
from triad.heads import get_head

REPO = Path(__file__).resolve().parents[2]
STANDARD_STAGES = {"prepare", "train", "evaluate"}


def load_bench(name: str):
    """The module ``bench/<name>.py`` (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def triad_commands(argv: list[str]) -> list[list[str]]:
    """Each ``python -m triad.cli ...`` in a check, as the arguments after ``triad.cli`` (redirects cut)."""
    pieces = [shlex.split(piece) for piece in argv[2].split(" && ")] if argv[0] == "bash" else [argv]
    commands = []
    for tokens in pieces:
        if "triad.cli" in tokens:
            args = tokens[tokens.index("triad.cli") + 1 :]
            commands.append([token for token in args if not token.startswith(">")])
    return commands


CHECKS = load_bench("gpu_checks").CHECKS
TRIAD_CHECKS = sorted(name for name, (argv, _) in CHECKS.items() if triad_commands(argv))


def test_the_training_checks_are_found():
    assert {"translator_multi30k", "diffusion_fashion", "transfer_pneumonia", "transfer_evidence"} <= set(TRIAD_CHECKS)


@pytest.mark.parametrize("name", TRIAD_CHECKS)
def test_each_checks_overrides_compose_and_its_stages_exist(name):
    argv, limit = CHECKS[name]
    assert 0 < limit <= 600, "one device call runs at most 600 s"
    for command in triad_commands(argv):
        verb = command[0]
        if verb == "config":
            compose(command[1:])  # raises ConfigError naming the bad key or value
        elif verb == "train":
            compose(command[2:])
            get_head(command[1], compose([]))
        elif verb == "stage":
            assert command[1] == "--params", f"{name}: a check's stage reads its own params file"
            step, head = command[3], command[4]
            extra = set(get_head(head, compose([])).steps())
            assert step in STANDARD_STAGES | extra, f"{name}: the {head} head has no stage {step!r}"
        else:
            pytest.fail(f"{name}: unexpected triad command {command}")


def test_each_device_call_names_only_existing_checks():
    """``bench/gpu_call.sh`` is what a session runs on the device: a check it names that gpu_checks lacks
    would only be found there, at the cost of the call."""
    calls = re.findall(r"^\s*(\w+)\) carry=(\S+) checks=(\S+) ", (REPO / "bench" / "gpu_call.sh").read_text(), re.M)
    assert {call for call, _, _ in calls} == {"trainings", "throughput"}
    for call, carry, checks in calls:
        named = set(re.split(r"[,+]", checks))
        assert named <= set(CHECKS), f"{call}: unknown checks {sorted(named - set(CHECKS))}"
        assert carry in {".gpu", ".gpu2"}, f"{call}: carry {carry} is not one bench/gpu_carry.sh builds"


@pytest.mark.parametrize(
    "kernel, family",
    [
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matmul"),
        ("nvjet_tst_256x128_64x4_2x1_v_bz_coopA_TNT", "matmul"),
        ("void flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4>>", "attention"),
        ("void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor<float, 4>>", "optimizer"),
        ("triton_poi_fused_addmm_gelu_0", "fused (Inductor Triton)"),
        ("triton_tem_fused_mm_3", "matmul"),
        ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>", "other"),
        ("aten::mm", "matmul"),
    ],
)
def test_kernels_are_sorted_into_families(kernel, family):
    assert load_bench("timing").kernel_family(kernel) == family


def test_a_profile_puts_a_matrix_products_time_in_matmul(capsys):
    timing = load_bench("timing")
    a, b = torch.randn(384, 384), torch.randn(384, 384)
    families = timing.profile_calls(lambda: (a @ b).relu_(), 3, torch.device("cpu"))
    assert max(families, key=families.get) == "matmul", families
    assert "matmul" in capsys.readouterr().out
