"""The spread head on a user's own networks, for the end-to-end flow test (tests/spine/test_own_data_flow.py).

``make`` writes a folder of two edge lists: a 6x6 grid with arbitrary (negative, sparse, large) node ids,
whitespace-separated with comments, and a ring of 30 nodes, comma-separated with a header and a weight column.
The model trains on tiny generated graphs and is scored on these two as held-out networks. ``check`` predicts
on the grid through ``triad predict`` and reads the CSV back: one row per node, named by the user's ids.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.tiny import TINY

GRID_SIDE, RING = 6, 30


def grid_id(row: int, col: int) -> int:
    """The user's id of grid node (row, col): arbitrary integers, some negative, none consecutive."""
    return -5000 + 7919 * (row * GRID_SIDE + col)


def grid_ids() -> list[int]:
    return [grid_id(r, c) for r in range(GRID_SIDE) for c in range(GRID_SIDE)]


def write_grid(path: Path) -> Path:
    lines = ["# a 6x6 grid: each node linked to its right and lower neighbour", ""]
    for r in range(GRID_SIDE):
        for c in range(GRID_SIDE):
            if c + 1 < GRID_SIDE:
                lines.append(f"{grid_id(r, c)} {grid_id(r, c + 1)}")
            if r + 1 < GRID_SIDE:
                lines.append(f"{grid_id(r, c)}\t{grid_id(r + 1, c)}  # down")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ring(path: Path) -> Path:
    rows = ["source,target,weight"] + [f"{100 + i},{100 + (i + 1) % RING},1.0" for i in range(RING)]
    path.write_text("\n".join(rows) + "\n")
    return path


def make(folder: Path) -> list[str]:
    """Two networks under ``folder``; the overrides that evaluate a tiny model on them as ``own-spread``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_grid(folder / "grid.txt")
    write_ring(folder / "ring.csv")
    return [
        "data/spread=edge_list",
        f"data.spread.path={folder}",
        "data.spread.name=own-spread",
        *TINY["spread"],
    ]


def check(project: Path, folder: Path, out_dir: Path) -> None:
    """``triad predict --model own-spread/1 spread grid.txt --seeds <id> --p 0.3 --out out_dir/result.csv``."""
    from triad.cli import main

    out = out_dir / "result.csv"
    seed = grid_id(2, 3)
    code = main(
        ["predict", "--model", "own-spread/1", "spread", str(folder / "grid.txt"), "--seeds", str(seed)]
        + ["--p", "0.3", "--out", str(out)]
    )
    assert code == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    nodes = [int(row["node"]) for row in rows]
    assert len(nodes) == GRID_SIDE**2 and sorted(nodes) == sorted(grid_ids())  # one row per node, the user's ids
    probabilities = {int(row["node"]): float(row["probability"]) for row in rows}
    assert probabilities[seed] == 1.0 and all(0.0 <= p <= 1.0 for p in probabilities.values())
    summary = json.loads((out_dir / "result.summary.json").read_text())
    assert summary["nodes"] == GRID_SIDE**2 and summary["edges"] == 2 * GRID_SIDE * (GRID_SIDE - 1)
    assert abs(summary["expected_size"] - sum(probabilities.values())) < 1e-3

    # A request the model cannot answer is refused before it loads: a seed that is not in the file.
    assert (
        main(
            ["predict", "--model", "own-spread/1", "spread", str(folder / "grid.txt"), "--seeds", "1"] + ["--p", "0.3"]
        )
        == 2
    )
