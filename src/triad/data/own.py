"""A user's own files as a head's data: find them, check them, split them stably, report on them.

Every head's own-data source (``conf/data/<head>/image_folder.yaml``, ``text_csv.yaml``, ...) uses
these pieces, so that the same fault gets the same message whatever the head:

- ``own_path``: the configured path, resolved against the project root, or an error naming the key.
- ``Problems``: every fault found, each with its file (and line), reported all at once.
  ``on_bad: fail`` stops with the list; ``on_bad: skip`` drops the bad files and counts them.
- ``split_of``: a file's split from a hash of its name, so adding files never moves existing ones.
- ``scan_image_folder`` / ``read_images``: ``DIR/<class>/*``, ``DIR/{train,val,test}/<class>/*`` or a
  flat ``DIR/*`` of PNG or JPEG files, decoded (any mode, 8 or 16 bits, any size) to the configured
  size and channels, streamed into one preallocated uint8 array.
- ``write_report``: ``data_report.json``, ``data_report.md`` and ``examples.png`` next to the prepared data.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from triad.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
OnBad = Literal["fail", "skip"]
REPORT_JSON, REPORT_MD, REPORT_GRID = "data_report.json", "data_report.md", "examples.png"
SHOWN = 20  # problems listed in an error message; the report lists them all


def own_path(value: str | None, key: str, layout: str) -> Path:
    """``value`` (a config path, relative to the project root) as an existing absolute path.

    ``key`` is the config key (``data.<head>.path``) and ``layout`` the expected layout, both named
    in the error when the path is unset or missing.
    """
    from triad.config import project_root

    if not value:
        raise DataError(f"{key} is not set: point it at your data ({layout}), e.g. {key}=/path/to/data")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else project_root() / path
    if not path.exists():
        raise DataError(f"{key}={value}: {path} does not exist. Expected {layout}.")
    return path


@dataclass(frozen=True)
class Problem:
    """One fault in the user's data: the file, the line where it applies, and what is wrong."""

    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.reason}"


@dataclass
class Problems:
    """The faults found while reading a source, kept in order; ``skipped`` counts the files dropped."""

    items: list[Problem] = field(default_factory=list)
    skipped: int = 0

    def add(self, path: str | Path, reason: str, line: int | None = None) -> None:
        self.items.append(Problem(str(path), reason, line))

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def counts(self) -> dict[str, int]:
        """How many problems of each kind (the reason up to its first colon)."""
        return dict(Counter(p.reason.split(":")[0] for p in self.items))

    def listing(self, limit: int = SHOWN) -> str:
        lines = [f"  {p}" for p in self.items[:limit]]
        if len(self.items) > limit:
            lines.append(f"  ... and {len(self.items) - limit} more (all are in the data report)")
        return "\n".join(lines)

    def fail(self, what: str, fix: str) -> None:
        """Raise a DataError listing every problem (``what`` says which data, ``fix`` what to do)."""
        if self.items:
            raise DataError(f"{len(self.items)} problem(s) in {what}:\n{self.listing()}\n{fix}")

    def settle(self, on_bad: OnBad, what: str) -> None:
        """``on_bad: fail``: raise with the list. ``skip``: log them (the caller dropped the files)."""
        if on_bad == "fail":
            self.fail(what, "Fix or remove these files, or set on_bad: skip to leave them out (they are counted).")
        elif self.items:
            log.warning("skipped %d bad file(s) in %s:\n%s", len(self.items), what, self.listing())

    def as_report(self) -> list[dict[str, Any]]:
        return [{"path": p.path, "line": p.line, "reason": p.reason} for p in self.items]


def split_of(key: str, val_fraction: float, test_fraction: float) -> str:
    """``train``, ``val`` or ``test`` for the example named ``key`` (a relative path, a line's text).

    The split depends on the key alone (the first 8 bytes of its sha256, as a number in [0, 1)), so
    adding or removing other files never moves this one, and the same key always lands in the same split.
    """
    u = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    return "val" if u < test_fraction + val_fraction else "train"


def progress(items: Iterable, total: int, desc: str) -> Iterator:
    """``items`` with a progress bar on a terminal, or a log line every 10% when stderr is a file."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total, desc=desc, unit="file", leave=False)
        return
    step = max(1, math.ceil(total / 10))
    started = time.perf_counter()
    for i, item in enumerate(items, 1):
        yield item
        if i % step == 0 or i == total:
            log.info("%s: %d/%d (%.0fs)", desc, i, total, time.perf_counter() - started)


# --- image folders --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageFile:
    """One image file of a folder: its path, its name relative to the folder (the split key), its class
    (None in a flat folder) and the split the user put it in (None: ``split_of`` decides)."""

    path: Path
    rel: str
    label: str | None
    split: str | None


@dataclass
class ImageFolder:
    """What ``scan_image_folder`` found: the files, the class names (sorted; empty when flat) and the layout."""

    root: Path
    files: list[ImageFile]
    class_names: list[str]
    layout: Literal["classes", "splits", "flat"]
    ignored: list[str]  # files without an image suffix


FOLDER_LAYOUT = (
    "DIR/<class>/*.png|jpg|jpeg (one sub-folder per class), DIR/{train,val,test}/<class>/* to keep your own "
    "split, or, where a head accepts unlabelled images, a flat DIR/*.png"
)


def _images_under(folder: Path, root: Path, label: str | None, split: str | None, ignored: list[str]):
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            yield ImageFile(path, path.relative_to(root).as_posix(), label, split)
        else:
            ignored.append(path.relative_to(root).as_posix())


def scan_image_folder(root: Path, key: str, allow_flat: bool) -> ImageFolder:
    """The image files under ``root``, by layout (see ``FOLDER_LAYOUT``); ``key`` names the setting in errors.

    Hidden files are skipped; files without an image suffix are listed in ``ignored``. A folder whose
    top level mixes files and sub-folders, holds no images, or has a single class is refused.
    """
    if not root.is_dir():
        raise DataError(f"{key}={root} is not a folder. Expected {FOLDER_LAYOUT}.")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    dirs = [p for p in entries if p.is_dir()]
    top_images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    ignored: list[str] = []
    if dirs and top_images:
        raise DataError(
            f"{root} mixes image files ({top_images[0].name}, ...) with sub-folders ({dirs[0].name}, ...). "
            f"Expected {FOLDER_LAYOUT}."
        )
    if not dirs:
        if not allow_flat:
            raise DataError(
                f"{root} has no class sub-folders; this head needs labelled images. Expected {FOLDER_LAYOUT}."
            )
        files = list(_images_under(root, root, None, None, ignored))
        folder = ImageFolder(root, files, [], "flat", ignored)
    elif {d.name for d in dirs} <= set(SPLITS) and "train" in {d.name for d in dirs}:
        files = []
        classes: set[str] = set()
        for split_dir in dirs:
            stray = [p.name for p in split_dir.iterdir() if p.is_file() and not p.name.startswith(".")]
            if stray:
                raise DataError(
                    f"{split_dir} holds files ({stray[0]}, ...) outside class sub-folders. Expected {FOLDER_LAYOUT}."
                )
            for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                classes.add(class_dir.name)
                files.extend(_images_under(class_dir, root, class_dir.name, split_dir.name, ignored))
        folder = ImageFolder(root, files, sorted(classes), "splits", ignored)
    else:
        files = []
        for class_dir in dirs:
            files.extend(_images_under(class_dir, root, class_dir.name, None, ignored))
        folder = ImageFolder(root, files, [d.name for d in dirs], "classes", ignored)
    if not folder.files:
        raise DataError(f"{root} holds no PNG or JPEG files. Expected {FOLDER_LAYOUT}.")
    if folder.layout != "flat" and len(folder.class_names) < 2:
        raise DataError(
            f"{root} has one class ({folder.class_names[0]!r}); a classifier needs two or more class sub-folders. "
            f"Expected {FOLDER_LAYOUT}."
        )
    return folder


class BadImage(Exception):
    """A file that cannot be used as an image; the message says why."""


def decode_image(data: bytes, size: int, channels: int) -> tuple[np.ndarray, str, tuple[int, int]]:
    """One PNG or JPEG file's bytes -> (uint8 array, the file's mode, its (width, height)).

    The array is (size, size) for ``channels`` 1 and (size, size, 3) for 3. Every mode is accepted:
    16-bit grey is scaled to 8 bits, palettes are expanded, transparency is composited on white.
    Resized with a box filter (area averaging) when shrinking, bicubic when enlarging, without
    keeping the aspect ratio (like the built-in datasets, which are square).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadImage("empty file: zero bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in ("PNG", "JPEG"):
                raise BadImage(f"not a PNG or JPEG image: it is {image.format}")
            image.load()
            mode, original = image.mode, image.size
            image = _to_rgb_or_grey(image, channels)
            if image.size != (size, size):
                shrinking = image.size[0] >= size and image.size[1] >= size
                image = image.resize((size, size), Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC)
            return np.asarray(image, dtype=np.uint8), mode, original
    except UnidentifiedImageError:
        raise BadImage("not an image: the bytes are neither PNG nor JPEG") from None
    except Image.DecompressionBombError as exc:  # a header claiming billions of pixels
        raise BadImage(f"too large to decode: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise BadImage(f"corrupt image: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _to_rgb_or_grey(image, channels: int):
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16- or 32-bit grey: scale to 8 bits
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("L" if channels == 1 else "RGB")


@dataclass
class ReadImages:
    """The images of ``files`` that decoded: ``pixels[i]`` is ``files[kept[i]]``, ``digests[i]`` its sha256."""

    pixels: np.ndarray
    kept: np.ndarray
    digests: list[str]
    modes: Counter
    sizes: Counter


def read_images(
    files: Sequence[ImageFile], size: int, channels: int, problems: Problems, desc: str = "reading images"
) -> ReadImages:
    """Decode every file into one preallocated (N, size, size[, 3]) uint8 array, one file in memory at a time.

    A file that cannot be read or decoded is added to ``problems`` and left out (the caller settles them
    with ``on_bad``).
    """
    shape = (len(files), size, size) if channels == 1 else (len(files), size, size, 3)
    pixels = np.empty(shape, dtype=np.uint8)
    kept, digests, modes, sizes = [], [], Counter(), Counter()
    for i, file in enumerate(progress(files, len(files), desc)):
        try:
            data = file.path.read_bytes()
            pixels[len(kept)], mode, original = decode_image(data, size, channels)
        except OSError as exc:
            problems.add(file.path, f"unreadable: {exc.strerror or exc}")
            continue
        except BadImage as exc:
            problems.add(file.path, str(exc))
            continue
        kept.append(i)
        digests.append(hashlib.sha256(data).hexdigest())
        modes[mode] += 1
        sizes[f"{original[0]}x{original[1]}"] += 1
    return ReadImages(pixels[: len(kept)], np.array(kept, dtype=np.int64), digests, modes, sizes)


def image_folder_report(
    source: str,
    folder: ImageFolder,
    labels: Sequence[str | None],
    splits: Sequence[str],
    read: ReadImages,
    size: int,
    channels: int,
    dropped: dict[str, int],
    problems: Problems,
) -> dict[str, Any]:
    """The data report of an image folder as read: layout, counts per class and split (of the images kept),
    modes and sizes seen, what they were converted to, copies dropped, ignored files and every problem."""
    layouts = {"splits": "your train/val/test folders", "classes": "hash split of each file's path"}
    return {
        "source": source,
        "path": str(folder.root),
        "layout": layouts.get(folder.layout, "flat folder, hash split of each file's path"),
        "counts": split_counts(labels, splits),
        "image_modes": dict(read.modes),
        "image_sizes": dict(read.sizes),
        "converted_to": f"{size}x{size}, {'grey' if channels == 1 else 'RGB'}",
        "duplicates_dropped": dropped,
        "ignored_files": len(folder.ignored),
        **({"ignored_examples": folder.ignored[:5]} if folder.ignored else {}),
        "problems": problems.as_report(),
        "skipped": problems.skipped,
    }


# --- splits -----------------------------------------------------------------------------------------
def drop_duplicates_across_splits(digests: Sequence[str], splits: Sequence[str]) -> tuple[np.ndarray, dict[str, int]]:
    """A keep-mask that removes every example whose content (digest) also appears in a later-ranked split.

    Test keeps its copies, val loses those also in test, train loses those also in val or test: a held-out
    example must never also be trained on. Returns (keep mask, dropped count per split).
    """
    rank = {"test": 0, "val": 1, "train": 2}
    best: dict[str, int] = {}
    for digest, split in zip(digests, splits):
        best[digest] = min(best.get(digest, 3), rank[split])
    keep = np.array([rank[s] == best[d] for d, s in zip(digests, splits)], dtype=bool)
    dropped = Counter(s for s, k in zip(splits, keep) if not k)
    return keep, {s: dropped.get(s, 0) for s in SPLITS}


def check_class_counts(labels: Sequence[str], splits: Sequence[str], class_names: Sequence[str], source: str) -> None:
    """Every class must have at least one example in every split; the error names each short class and its counts."""
    counts = Counter(zip(labels, splits))
    short = []
    for name in class_names:
        per_split = {s: counts.get((name, s), 0) for s in SPLITS}
        if min(per_split.values()) == 0:
            short.append(f"{name!r} has {sum(per_split.values())} example(s) ({per_split})")
    if short:
        raise DataError(
            f"{source}: class(es) too small for the split, each needs at least one example in train, val and test: "
            + "; ".join(short)
            + ". Add examples, raise val_fraction/test_fraction, or give your own split as train/val/test folders."
        )


def split_counts(labels: Sequence[str | None], splits: Sequence[str]) -> dict[str, dict[str, int]]:
    """{class: {split: count}}; unlabelled examples count under the class ``"all"``."""
    counts = Counter(("all" if label is None else label, split) for label, split in zip(labels, splits))
    names = sorted({name for name, _ in counts})
    return {name: {s: counts.get((name, s), 0) for s in SPLITS} for name in names}


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """min, p5, p50, p95, max of ``values`` (empty dict when there are none)."""
    if not len(values):
        return {}
    q = np.percentile(np.asarray(values, dtype=np.float64), [0, 5, 50, 95, 100])
    return dict(zip(("min", "p5", "p50", "p95", "max"), (round(float(v), 2) for v in q)))


def example_grid(pixels: np.ndarray, labels: np.ndarray | None, per_class: int = 8) -> np.ndarray:
    """A grid image: one row per class (or one row when unlabelled), ``per_class`` examples each."""
    from triad.predict import image_grid

    rows = [np.arange(len(pixels))] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    blank = np.zeros_like(pixels[0])
    tiles = [pixels[idx[k]] if k < len(idx) else blank for idx in rows for k in range(per_class)]
    return image_grid(tiles, columns=per_class)


# --- the report -------------------------------------------------------------------------------------
def write_report(out_dir: Path, report: dict[str, Any], grid: np.ndarray | None = None) -> dict[str, Any]:
    """Write ``data_report.json`` and ``data_report.md`` (and ``examples.png``) into ``out_dir``; -> report.

    ``report`` holds ``source`` and ``path``; optionally ``counts`` ({class: {split: n}}), ``problems``
    (``Problems.as_report()``), ``skipped``, ``duplicates_dropped``, ``image_modes``, ``image_sizes``,
    ``text_lengths`` ({field: percentiles}) and any head-specific keys (shown as a list).
    """
    from triad.jsonio import write_json

    write_json(out_dir / REPORT_JSON, report)
    if grid is not None:
        from PIL import Image

        Image.fromarray(grid).save(out_dir / REPORT_GRID, optimize=False)
    (out_dir / REPORT_MD).write_text(report_markdown(report, grid is not None))
    return report


def report_markdown(report: dict[str, Any], has_grid: bool = False) -> str:
    lines = [f"# Data report: {report.get('source', '?')}", "", f"Source: `{report.get('path', '?')}`", ""]
    counts = report.get("counts")
    if counts:
        lines += ["| class | train | val | test | total |", "|---|---:|---:|---:|---:|"]
        for name, per_split in counts.items():
            row = [per_split.get(s, 0) for s in SPLITS]
            lines.append(f"| {name} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
        totals = [sum(c.get(s, 0) for c in counts.values()) for s in SPLITS]
        lines += ["| **all** | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |", ""]
    for key, title in (("image_modes", "Image modes"), ("image_sizes", "Image sizes (width x height)")):
        if report.get(key):
            seen = ", ".join(f"{k}: {v}" for k, v in sorted(report[key].items(), key=lambda kv: -kv[1])[:12])
            lines += [f"{title}: {seen}", ""]
    for name, stats in (report.get("text_lengths") or {}).items():
        lines += [f"Length of {name} (min/p5/p50/p95/max): " + " / ".join(str(stats[k]) for k in stats), ""]
    other = {
        k: v
        for k, v in report.items()
        if k not in {"source", "path", "counts", "image_modes", "image_sizes", "text_lengths", "problems", "skipped"}
    }
    lines += [f"- {k}: {v}" for k, v in other.items()]
    if other:
        lines.append("")
    problems = report.get("problems") or []
    skipped = f" ({report['skipped']} file(s) skipped)" if report.get("skipped") else ""
    lines.append(f"Problems: {len(problems)}{skipped}")
    for p in problems:
        where = p["path"] + (f":{p['line']}" if p.get("line") is not None else "")
        lines.append(f"- `{where}`: {p['reason']}")
    if has_grid:
        lines += ["", f"![examples]({REPORT_GRID})"]
    return "\n".join(lines) + "\n"


def report_line(report: dict[str, Any]) -> str:
    """One line for a run's summary: the source, examples per split, and the problems found."""
    counts = report.get("counts") or {}
    totals = {split: sum(c.get(split, 0) for c in counts.values()) for split in SPLITS}
    sizes = " / ".join(f"{totals[s]} {s}" for s in SPLITS)
    problems = len(report.get("problems") or [])
    skipped = f", {report['skipped']} skipped" if report.get("skipped") else ""
    classes = f", {len(counts)} classes" if len(counts) > 1 else ""
    where = f"`{report.get('path', '?')}` ({report.get('source', '?')})"
    return f"{where}: {sizes}{classes}; {problems} problem(s){skipped}"
