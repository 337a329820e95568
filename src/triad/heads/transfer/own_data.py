"""The user's own data for the transfer head: an image folder or a CSV of texts, checked, split and reported.

- ``image_folder`` (``data.transfer.path`` = a folder): ``DIR/<class>/*.png|jpg|jpeg``, or
  ``DIR/{train,val,test}/<class>/...`` to keep the user's split. Every image is decoded (any mode, 8 or
  16 bits, any size) to ``channels`` and ``image_size`` by ``triad.data.own.read_images``.
- ``text_csv`` (``data.transfer.path`` = a file): UTF-8 CSV (a BOM is fine) with the header
  ``text,label`` and optionally ``split`` (``train``, ``val`` or ``test``).

Both become the head's ``TaskData`` (a pool, val and test; the class names are the folder names or the
labels, sorted), so training, evaluation, the evidence step and serving read them like the built-in tasks.
Without a user split, an example's split follows from a hash of its name (the path relative to the
folder, or the text itself): adding examples never moves the others. An example whose content also lies
in a later-ranked split (test, then val) is dropped from the earlier one (train, then val) and counted.
Every problem (a corrupt, empty or non-image file; a row with an empty text or label) is listed with its
file and line; ``on_bad`` decides whether it stops prepare or is skipped and counted. The data report
(``data_report.json``/``.md`` and ``examples.png``) is written next to the prepared data.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from triad.data.own import (
    FOLDER_LAYOUT,
    SPLITS,
    Problems,
    check_class_counts,
    drop_duplicates_across_splits,
    example_grid,
    image_folder_report,
    own_path,
    percentiles,
    read_images,
    scan_image_folder,
    split_counts,
    split_of,
)
from triad.errors import DataError
from triad.heads.transfer.config import TransferData

log = logging.getLogger(__name__)

PATH_KEY = "data.transfer.path"
CSV_LAYOUT = (
    "a UTF-8 CSV file whose first row is the header `text,label` or `text,label,split` (split: train, val or "
    'test on every row), one example a row; quote a text that holds commas: "a text, with a comma",label'
)


@dataclass
class OwnData:
    """A user's examples after reading and checking, before the few-label subset.

    ``x`` is a uint8 (N, H, W) or (N, H, W, 3) array of images or a list of N texts, ``labels`` (N,)
    class indices into ``class_names``, ``splits`` each example's split and ``keys`` its name (the file's
    path relative to the folder, or the CSV line); ``report`` is the data report so far.
    """

    modality: str
    class_names: list[str]
    x: Any
    labels: np.ndarray
    splits: list[str]
    keys: list[str]
    report: dict[str, Any] = field(default_factory=dict)
    grid: np.ndarray | None = None

    def part(self, split: str) -> tuple[Any, np.ndarray]:
        """(x, labels) of one split, in the order read."""
        idx = np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)
        x = self.x[idx] if isinstance(self.x, np.ndarray) else [self.x[i] for i in idx]
        return x, self.labels[idx]


def _drop_duplicates(digests: list[str], splits: list[str], what: str) -> tuple[np.ndarray, dict[str, int]]:
    keep, dropped = drop_duplicates_across_splits(digests, splits)
    if not keep.all():
        log.warning(
            "dropped %d %s whose content is also in a held-out split (%s)",
            int((~keep).sum()),
            what,
            ", ".join(f"{n} from {s}" for s, n in dropped.items() if n),
        )
    return keep, dropped


# --- image folders ---------------------------------------------------------------------------------
def load_image_folder(cfg: TransferData) -> OwnData:
    """Read, check and split ``cfg.path`` (see the module docstring); raises DataError naming every fault."""
    root = own_path(cfg.path, PATH_KEY, FOLDER_LAYOUT)
    folder = scan_image_folder(root, PATH_KEY, allow_flat=False)
    problems = Problems()
    read = read_images(folder.files, cfg.image_size, cfg.channels, problems, desc="reading your images")
    problems.settle(cfg.on_bad, f"the image folder {root}")
    problems.skipped = len(problems)
    files = [folder.files[i] for i in read.kept]
    splits = [f.split or split_of(f.rel, cfg.val_fraction, cfg.test_fraction) for f in files]
    # the same pixels once converted (so also one file under two names): a held-out image must not be trained on
    digests = [hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() for image in read.pixels]
    keep, dropped = _drop_duplicates(digests, splits, "image(s)")
    kept = np.flatnonzero(keep)
    files, splits, pixels = [files[i] for i in kept], [splits[i] for i in kept], read.pixels[kept]
    names = [f.label for f in files]
    check_class_counts(names, splits, folder.class_names, f"the image folder {root}")
    index = {name: k for k, name in enumerate(folder.class_names)}
    labels = np.array([index[name] for name in names], dtype=np.int64)
    report = image_folder_report(
        "transfer image_folder", folder, names, splits, read, cfg.image_size, cfg.channels, dropped, problems
    )
    if folder.ignored:
        shown = ", ".join(folder.ignored[:5]) + (", ..." if len(folder.ignored) > 5 else "")
        log.warning(
            "ignored %d file(s) without a .png/.jpg/.jpeg suffix under %s: %s", len(folder.ignored), root, shown
        )
    keys = [f.rel for f in files]
    return OwnData("image", folder.class_names, pixels, labels, splits, keys, report, example_grid(pixels, labels))


# --- CSV of texts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextRow:
    line: int  # where the row starts in the file, from 1 (the header is line 1)
    text: str
    label: str
    split: str | None


def decode_utf8(path: Path) -> str:
    """The file's text (a leading BOM dropped); invalid UTF-8 is a DataError naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:offset].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: invalid UTF-8 (byte {data[offset]:#04x}); save the file as UTF-8 "
            "(in a spreadsheet: CSV UTF-8)"
        ) from None


def read_text_csv(path: Path, problems: Problems) -> tuple[list[TextRow], bool]:
    """The rows of a ``text,label[,split]`` CSV, and whether it has a split column.

    A missing column is a DataError that shows the expected layout; a row with an empty text or label, the
    wrong number of fields or an unknown split is added to ``problems`` (with its line) and left out.
    Texts are stripped and their runs of whitespace made single spaces.
    """
    text = decode_utf8(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataError(f"{path}:1: not a CSV header ({exc}). Expected {CSV_LAYOUT}.") from None
    columns = [name.strip().lower() for name in header or []]
    missing = [name for name in ("text", "label") if name not in columns]
    if missing:
        found = ",".join(header) if header else "an empty file"
        raise DataError(
            f"{path}: no {' or '.join(repr(m) for m in missing)} column in the header (found: {found}). "
            f"Expected {CSV_LAYOUT}."
        )
    at = {name: columns.index(name) for name in ("text", "label", "split") if name in columns}
    rows = []
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"{path}:{line}: {exc}. Expected {CSV_LAYOUT}.") from None
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # a blank line
        if len(values) != len(columns):
            problems.add(
                path,
                f"wrong number of fields: {len(values)} where the header has {len(columns)} "
                "(quote a text that holds commas)",
                line,
            )
            continue
        example = " ".join(values[at["text"]].split())
        label = values[at["label"]].strip()
        split = values[at["split"]].strip().lower() if "split" in at else None
        if not example:
            problems.add(path, "empty text", line)
        elif not label:
            problems.add(path, "empty label", line)
        elif split is not None and split not in SPLITS:
            problems.add(path, f"bad split: {values[at['split']]!r} is not train, val or test", line)
        else:
            rows.append(TextRow(line, example, label, split))
    return rows, "split" in at


def load_text_csv(cfg: TransferData) -> OwnData:
    """Read, check and split the CSV at ``cfg.path`` (see the module docstring)."""
    path = own_path(cfg.path, PATH_KEY, CSV_LAYOUT)
    if not path.is_file():
        raise DataError(f"{PATH_KEY}={cfg.path}: {path} is not a file. Expected {CSV_LAYOUT}.")
    problems = Problems()
    rows, has_split = read_text_csv(path, problems)
    problems.settle(cfg.on_bad, f"the CSV file {path}")
    problems.skipped = len(problems)
    class_names = sorted({row.label for row in rows})
    if len(class_names) < 2:
        found = f"one label ({class_names[0]!r})" if class_names else "no rows"
        raise DataError(f"{path} has {found}; a classifier needs two or more labels. Expected {CSV_LAYOUT}.")
    splits = [row.split or split_of(row.text, cfg.val_fraction, cfg.test_fraction) for row in rows]
    digests = [hashlib.sha256(row.text.encode("utf-8")).hexdigest() for row in rows]
    keep, dropped = _drop_duplicates(digests, splits, "text(s)")
    rows = [row for row, k in zip(rows, keep) if k]
    splits = [s for s, k in zip(splits, keep) if k]
    names = [row.label for row in rows]
    check_class_counts(names, splits, class_names, f"the CSV file {path}")
    labels_of = {}
    for row in rows:
        labels_of.setdefault(row.text, set()).add(row.label)
    conflicting = sum(len(labels) > 1 for labels in labels_of.values())
    if conflicting:
        log.warning("%d text(s) in %s appear with more than one label", conflicting, path)
    index = {name: k for k, name in enumerate(class_names)}
    report = {
        "source": "transfer text_csv",
        "path": str(path),
        "layout": "your split column" if has_split else "hash split of each text",
        "counts": split_counts(names, splits),
        "text_lengths": {"text (words)": percentiles([len(row.text.split()) for row in rows])},
        "duplicates_dropped": dropped,
        "texts_with_two_or_more_labels": conflicting,
        "problems": problems.as_report(),
        "skipped": problems.skipped,
    }
    labels = np.array([index[name] for name in names], dtype=np.int64)
    keys = [f"line {row.line}" for row in rows]
    return OwnData("text", class_names, [row.text for row in rows], labels, splits, keys, report)


def load_own(cfg: TransferData) -> OwnData:
    return load_image_folder(cfg) if cfg.task == "image_folder" else load_text_csv(cfg)
