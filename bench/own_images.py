"""Benchmark: preparing a user's folder of 60,000 images, against the fastest plain decode loop.

Run from the project root (needs the Debian package ``dataset-fashion-mnist``, which puts Fashion-MNIST's IDX
files in /usr/share/datasets/fashion-mnist; nothing else on the network):

    .venv/bin/python bench/own_images.py [--work DIR] [--n 60000] [--head transfer]

It writes the Fashion-MNIST training images as PNG files into ``DIR/fashion/<class>/<index>.png`` (once), makes a
scratch triad project in ``DIR/project`` (git + DVC, this checkout's code and conf), and measures, each in its own
process so that its peak memory is its own:

1. reference: the fastest loop we could write that does the least prepare must do: read each file, decode it with
   PIL, convert to grey, copy into one preallocated uint8 array;
2. ``triad stage prepare <head>`` on the folder (scan, decode, hash, split, de-duplicate, report, write);
3. ``dvc repro prepare_<head>``: the first run (DVC hashes the 60,000 raw files, prepares, caches the output);
4. the same again with nothing changed (the issue's target: "unchanged" decided in 5 s or less);
5. 100 images added (copies of test images into the class folders): DVC sees the change and prepares again, and
   no file that was there before changed split.

It prints the command, each figure, the peak memory (RSS, target under 2 GiB) and prepare's ratio to the reference.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IDX = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")

REFERENCE = """
import sys, time, numpy as np
from pathlib import Path
from PIL import Image
files = sorted(p for p in Path(sys.argv[1]).rglob("*.png"))
out = np.empty((len(files), 28, 28), dtype=np.uint8)
started = time.perf_counter()
for i, path in enumerate(files):
    with Image.open(path) as image:
        out[i] = np.asarray(image.convert("L"))
print(len(files), time.perf_counter() - started)
"""


def idx_images(name: str) -> np.ndarray:
    with gzip.open(IDX / f"{name}-images-idx3-ubyte.gz") as f:
        data = f.read()
    count = int.from_bytes(data[4:8], "big")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, 28, 28)


def idx_labels(name: str) -> np.ndarray:
    with gzip.open(IDX / f"{name}-labels-idx1-ubyte.gz") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=8)


def write_folder(folder: Path, n: int) -> None:
    from PIL import Image

    if folder.is_dir() and sum(1 for _ in folder.rglob("*.png")) == n:
        return
    shutil.rmtree(folder, ignore_errors=True)
    images, labels = idx_images("train")[:n], idx_labels("train")[:n]
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
    started = time.perf_counter()
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(folder / CLASSES[label] / f"{i:05d}.png")
    print(f"wrote {n} PNG files in {time.perf_counter() - started:.1f}s")


def make_project(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for name in ("conf", "src", "flows", "dvc.yaml"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, root / name)
    for cmd in (
        ["git", "init", "-q"],
        [str(BIN / "dvc"), "init", "-q"],
        [str(BIN / "dvc"), "config", "core.analytics", "false"],
    ):
        subprocess.run(cmd, cwd=root, check=True)


def measured(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB of the largest process, stdout) of ``cmd`` run under /usr/bin/time."""
    started = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    peak_kib = int(out.stderr.strip().splitlines()[-1])
    return seconds, peak_kib / 1024, out.stdout


def splits_by_file(data_dir: Path) -> dict[str, str]:
    """file -> split, from the prepared data's ``files.csv`` (written for a user's own data)."""
    import csv

    listing = data_dir / "files.csv"
    if not listing.is_file():
        return {}
    with listing.open(newline="", encoding="utf-8") as handle:
        return {row["file"]: row["split"] for row in csv.DictReader(handle)}


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/triad-own-images"))
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--head", default="transfer")
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    folder, project = args.work / "fashion", args.work / "project"
    write_folder(folder, args.n)
    make_project(project)
    env = {**os.environ, "TRIAD_ROOT": str(project), "PATH": f"{BIN}:{os.environ['PATH']}"}
    overrides = [f"data/{args.head}=image_folder", f"data.{args.head}.path={folder}", f"data.{args.head}.on_bad=fail"]
    subprocess.run(
        [str(BIN / "triad"), "config", "--write-params", *overrides],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )

    ref_s, ref_mib, ref_out = measured([sys.executable, "-c", REFERENCE, str(folder)], project, env)
    ref_loop = float(ref_out.split()[1])
    print(f"reference decode loop: {ref_s:.1f}s wall ({ref_loop:.1f}s in the loop), peak {ref_mib:.0f} MiB")

    prep_s, prep_mib, _ = measured([str(BIN / "triad"), "stage", "prepare", args.head], project, env)
    print(
        f"triad stage prepare {args.head}: {prep_s:.1f}s, peak {prep_mib:.0f} MiB; "
        f"ratio to the reference {prep_s / ref_s:.2f}x (wall, both including start-up)"
    )

    first_s, first_mib, _ = measured([str(BIN / "dvc"), "repro", f"prepare_{args.head}"], project, env)
    print(
        f"dvc repro prepare_{args.head} (first: hash raw files, prepare, cache): {first_s:.1f}s, "
        f"peak {first_mib:.0f} MiB"
    )
    before = splits_by_file(project / "data" / args.head)

    again_s, _, again_out = measured([str(BIN / "dvc"), "repro", f"prepare_{args.head}"], project, env)
    unchanged = "didn't change" in again_out or "up to date" in again_out
    print(f"dvc repro prepare_{args.head} again, nothing changed: {again_s:.1f}s, decided unchanged: {unchanged}")

    extra_images, extra_labels = idx_images("t10k")[:100], idx_labels("t10k")[:100]
    from PIL import Image

    for i, (image, label) in enumerate(zip(extra_images, extra_labels)):
        Image.fromarray(image).save(folder / CLASSES[label] / f"added-{i:03d}.png")
    added_s, added_mib, added_out = measured([str(BIN / "dvc"), "repro", f"prepare_{args.head}"], project, env)
    reran = "Running stage" in added_out
    after = splits_by_file(project / "data" / args.head)
    moved = sum(1 for name, split in before.items() if after.get(name) != split)
    print(
        f"100 images added: dvc repro prepare_{args.head} ran again: {reran}, {added_s:.1f}s, "
        f"peak {added_mib:.0f} MiB; "
        f"files that changed split: {moved} of {len(before)}" + ("" if before else " (no files.csv to compare)")
    )
    for name in list(folder.rglob("added-*.png")):
        name.unlink()


if __name__ == "__main__":
    main()
