"""Validation of prepared datasets. Each check raises ``DataError`` naming the split and the fault."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from triad.errors import DataError


def check_nonempty(splits: Mapping[str, int]) -> None:
    """``splits`` maps split name -> number of examples."""
    empty = [name for name, n in splits.items() if n == 0]
    if empty:
        raise DataError(f"empty split(s) {empty}; sizes were {dict(splits)}. Lower the split fractions or add data.")


def check_array(name: str, array: np.ndarray, shape_tail: tuple[int, ...] | None, dtype) -> None:
    """``shape_tail`` is the expected shape after the first (example) axis."""
    if array.dtype != np.dtype(dtype):
        raise DataError(f"{name}: dtype {array.dtype}, expected {np.dtype(dtype)}")
    if shape_tail is not None and tuple(array.shape[1:]) != tuple(shape_tail):
        raise DataError(f"{name}: shape {array.shape}, expected (N, {', '.join(map(str, shape_tail))})")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{name}: contains NaN or infinite values")


def check_labels(name: str, labels: np.ndarray, n_classes: int) -> None:
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{name}: labels range over [{labels.min()}, {labels.max()}], expected [0, {n_classes - 1}]")


def check_no_overlap(train: Iterable, test: Iterable, what: str) -> None:
    """No example of the test split may also appear in training (compared by a hashable key)."""
    overlap = set(train) & set(test)
    if overlap:
        example = next(iter(overlap))
        raise DataError(f"{len(overlap)} {what} appear in both train and test (e.g. {str(example)[:80]!r})")


def array_keys(images: np.ndarray) -> list[bytes]:
    """Hashable keys of the rows of an array, for ``check_no_overlap`` on images."""
    return [row.tobytes() for row in np.ascontiguousarray(images)]
