"""The GPU checks' triad commands are valid here, before a lent GPU runs them: a session has 15 minutes
of device time, and a mistyped override or stage name in ``bench/gpu_checks.py`` would cost a call."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest

from triad.config import compose
from triad.heads import get_head

REPO = Path(__file__).resolve().parents[2]
STANDARD_STAGES = {"prepare", "train", "evaluate"}


def load_checks() -> dict[str, tuple[list[str], int]]:
    spec = importlib.util.spec_from_file_location("gpu_checks", REPO / "bench" / "gpu_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CHECKS


def triad_commands(argv: list[str]) -> list[list[str]]:
    """Each ``python -m triad.cli ...`` in a check, as the arguments after ``triad.cli`` (redirects cut)."""
    pieces = [shlex.split(piece) for piece in argv[2].split(" && ")] if argv[0] == "bash" else [argv]
    commands = []
    for tokens in pieces:
        if "triad.cli" in tokens:
            args = tokens[tokens.index("triad.cli") + 1 :]
            commands.append([token for token in args if not token.startswith(">")])
    return commands


CHECKS = load_checks()
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
