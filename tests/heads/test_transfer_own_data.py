"""The transfer head on a user's own files: an image folder or a CSV of texts, and batch prediction on files.

Every test writes real files (PNG and JPEG in every mode, broken ones, CSVs with a BOM or quoted commas) and
reads them through the head's own code; every error path is checked by its message.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from triad.errors import DataError, TriadError
from triad.heads.transfer.config import TransferData
from triad.heads.transfer.data import prepare
from triad.heads.transfer.own_data import load_image_folder, load_text_csv

CONF = Path(__file__).resolve().parents[2] / "conf" / "data" / "transfer"
RNG = np.random.default_rng(0)


def data_cfg(option: str, path: Path, **overrides) -> TransferData:
    """The section ``conf/data/transfer/<option>.yaml`` sets, on ``path``, with ``overrides``."""
    raw = yaml.safe_load((CONF / f"{option}.yaml").read_text()) | {"path": str(path), "raw": str(path)}
    return TransferData.model_validate(raw | overrides)


def image(path: Path, mode: str = "L", size: tuple[int, int] = (20, 16), value: int | None = None, **save) -> Path:
    """Write a real image file of ``mode`` (L, RGB, RGBA, I;16) and ``size`` (width, height)."""
    shape = (size[1], size[0], {"L": 1, "I;16": 1, "RGB": 3, "RGBA": 4}[mode])
    top = 65535 if mode == "I;16" else 255
    pixels = RNG.integers(0, top + 1, shape) if value is None else np.full(shape, value)
    pixels = pixels[..., 0] if shape[2] == 1 else pixels
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint16 if mode == "I;16" else np.uint8)).save(path, **save)
    return path


def class_folder(root: Path, name: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        image(root / name / f"{name}_{i:03d}.png")  # random pixels: no two files alike


def truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (32, 32), dtype=np.uint8)).save(buffer, format="JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[:200])
    return path


SPLIT = {"val_fraction": 0.3, "test_fraction": 0.3, "image_size": 16}


# --- image folders ---------------------------------------------------------------------------------
def test_every_mode_and_size_is_converted_and_reported(tmp_path):
    root = tmp_path / "xrays"
    for name in ("normal", "pneumonia"):
        for i, (mode, suffix) in enumerate(
            [("L", "png"), ("RGB", "png"), ("RGBA", "png"), ("I;16", "png"), ("L", "jpg"), ("RGB", "jpeg")] * 2
        ):
            image(root / name / f"{i:02d}.{suffix}", mode, size=(16 + 7 * i, 40 - i))
    white = image(root / "normal" / "white16.png", "I;16", value=65535)

    out = tmp_path / "prepared"
    out.mkdir()
    summary = prepare(data_cfg("image_folder", root, **SPLIT), out)
    assert summary["class_names"] == ["normal", "pneumonia"]
    pool = np.load(out / "pool_x.npy")
    assert pool.dtype == np.uint8 and pool.shape[1:] == (16, 16)
    report = json.loads((out / "data_report.json").read_text())
    assert set(report["image_modes"]) == {"L", "RGB", "RGBA", "I;16"}
    assert len(report["image_sizes"]) == 13 and report["image_sizes"]["16x40"] == 2  # 12 sizes + white16's
    assert sum(sum(c.values()) for c in report["counts"].values()) == 25
    markdown = (out / "data_report.md").read_text()
    assert "| normal |" in markdown and "Image modes" in markdown and "![examples](examples.png)" in markdown
    grid = np.asarray(Image.open(out / "examples.png"))
    assert grid.shape == (2 * 16, 8 * 16)  # one row per class, eight examples each
    assert json.loads((out / "meta.json").read_text())["image_size"] == 16

    white_read = load_image_folder(data_cfg("image_folder", root, **SPLIT))
    k = white_read.keys.index(white.relative_to(root).as_posix())
    assert (white_read.x[k] == 255).all()  # 16 bits scaled by their depth, not clipped

    rgb = load_image_folder(data_cfg("image_folder", root, **SPLIT, channels=3))
    assert rgb.x.shape[1:] == (16, 16, 3) and rgb.x.dtype == np.uint8


def test_bad_files_are_all_listed_with_their_paths_or_skipped_and_counted(tmp_path):
    root = tmp_path / "images"
    class_folder(root, "cats", 10)
    class_folder(root, "dogs", 10)
    bad = [
        truncated_jpeg(root / "cats" / "cut.jpg"),
        root / "dogs" / "notes.png",
        root / "dogs" / "empty.png",
    ]
    bad[1].write_text("this is a text file, not a PNG")
    bad[2].write_bytes(b"")

    with pytest.raises(DataError) as failed:
        load_image_folder(data_cfg("image_folder", root, **SPLIT))
    message = str(failed.value)
    assert message.startswith(f"3 problem(s) in the image folder {root}")
    assert f"{bad[0]}: corrupt image" in message
    assert f"{bad[1]}: not an image" in message
    assert f"{bad[2]}: empty file: zero bytes" in message
    assert "on_bad: skip" in message

    own = load_image_folder(data_cfg("image_folder", root, **SPLIT, on_bad="skip"))
    assert len(own.labels) == 20
    assert own.report["skipped"] == 3 and {p["path"] for p in own.report["problems"]} == {str(p) for p in bad}


def test_a_class_with_too_few_images_is_named_with_its_count(tmp_path):
    root = tmp_path / "images"
    class_folder(root, "common", 12)
    class_folder(root, "rare", 1)
    with pytest.raises(DataError, match=r"'rare' has 1 example\(s\)") as failed:
        load_image_folder(data_cfg("image_folder", root, **SPLIT))
    assert "common" not in str(failed.value)


def test_a_folder_with_one_class_or_no_class_folders_says_the_layout(tmp_path):
    class_folder(tmp_path / "one", "only", 5)
    with pytest.raises(DataError, match=r"one class \('only'\).*Expected DIR/<class>/"):
        load_image_folder(data_cfg("image_folder", tmp_path / "one"))
    image(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="no class sub-folders; this head needs labelled images"):
        load_image_folder(data_cfg("image_folder", tmp_path / "flat"))


def test_the_users_train_val_test_folders_are_kept_and_copies_across_them_leave_train(tmp_path):
    root = tmp_path / "images"
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for name in ("a", "b"):
            class_folder(root / split, name, n, start={"train": 0, "val": 100, "test": 200}[split])
    copy = root / "train" / "a" / "copy_of_test.png"
    copy.write_bytes((root / "test" / "a" / "a_200.png").read_bytes())

    out = tmp_path / "prepared"
    out.mkdir()
    summary = prepare(data_cfg("image_folder", root, **SPLIT), out)
    assert summary["sizes"] == {"train": 12, "pool": 12, "val": 4, "test": 6}  # the copy left train
    assert summary["duplicates_dropped"] == {"train": 1, "val": 0, "test": 0}
    report = json.loads((out / "data_report.json").read_text())
    assert report["layout"] == "your train/val/test folders"
    assert report["counts"]["a"] == {"train": 6, "val": 2, "test": 3}
    with (out / "files.csv").open(newline="") as handle:  # which file went where
        listed = {row["file"]: (row["split"], row["class"]) for row in csv.DictReader(handle)}
    assert len(listed) == 22 and listed["test/a/a_200.png"] == ("test", "a")
    assert "train/a/copy_of_test.png" not in listed


def test_adding_files_keeps_every_existing_file_in_its_split(tmp_path):
    root = tmp_path / "images"
    class_folder(root, "a", 20)
    class_folder(root, "b", 20)
    cfg = data_cfg("image_folder", root, **SPLIT)
    before = dict(zip(load_image_folder(cfg).keys, load_image_folder(cfg).splits))
    class_folder(root, "a", 15, start=20)
    class_folder(root, "c", 15)
    after = load_image_folder(cfg)
    moved = {key: (split, after.splits[after.keys.index(key)]) for key, split in before.items()}
    assert all(old == new for old, new in moved.values())
    assert len(after.keys) == 70 and set(after.splits) == {"train", "val", "test"}


# --- CSV of texts ----------------------------------------------------------------------------------
def write_csv(path: Path, rows: list[list[str]], bom: bool = False) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def texts(n: int, label: str) -> list[list[str]]:
    return [[f"a {label} text number {i}, with a comma", label] for i in range(n)]


def test_a_csv_with_a_bom_and_quoted_commas_reads_every_text_whole(tmp_path):
    path = write_csv(tmp_path / "t.csv", [["text", "label"], *texts(15, "spam"), *texts(15, "ham")], bom=True)
    own = load_text_csv(data_cfg("text_csv", path, **SPLIT))
    assert own.class_names == ["ham", "spam"] and len(own.x) == 30
    assert "a spam text number 3, with a comma" in own.x
    assert own.report["text_lengths"]["text (words)"]["p50"] == 8.0
    assert own.report["layout"] == "hash split of each text"


def test_a_csv_without_the_expected_columns_says_the_layout(tmp_path):
    path = write_csv(tmp_path / "t.csv", [["sentence", "label"], ["hello", "a"]])
    with pytest.raises(DataError, match=r"no 'text' column in the header \(found: sentence,label\).*`text,label`"):
        load_text_csv(data_cfg("text_csv", path))
    path.write_text("")
    with pytest.raises(DataError, match=r"no 'text' or 'label' column in the header \(found: an empty file\)"):
        load_text_csv(data_cfg("text_csv", path))


def test_empty_fields_bad_splits_and_unquoted_commas_are_problems_with_their_lines(tmp_path):
    rows = [["text", "label", "split"], ["fine", "a", "train"], ["", "a", "train"], ["no label", " ", "val"]]
    rows += [["odd split", "b", "later"], ["one, two", "b", "test", "extra"]]
    path = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(DataError) as failed:
        load_text_csv(data_cfg("text_csv", path))
    message = str(failed.value)
    assert message.startswith(f"4 problem(s) in the CSV file {path}")
    assert f"{path}:3: empty text" in message and f"{path}:4: empty label" in message
    assert f"{path}:5: bad split: 'later' is not train, val or test" in message
    assert f"{path}:6: wrong number of fields: 4 where the header has 3" in message


def test_invalid_utf8_names_its_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"text,label\nfine,a\nalso fine,b\ncaf\xe9,a\n")
    with pytest.raises(DataError, match=rf"{path}:4: invalid UTF-8 \(byte 0xe9\)"):
        load_text_csv(data_cfg("text_csv", path))


def test_a_split_column_is_kept_and_a_text_in_two_splits_leaves_train(tmp_path):
    rows = [["text", "label", "split"]]
    for split, n in (("train", 5), ("val", 2), ("test", 2)):
        rows += [[f"{label} {split} {i}", label, split] for label in ("x", "y") for i in range(n)]
    rows += [["x test 0", "x", "Train"]]  # the same text as a test row, given to train
    path = write_csv(tmp_path / "t.csv", rows)
    out = tmp_path / "prepared"
    out.mkdir()
    summary = prepare(data_cfg("text_csv", path), out)
    assert summary["modality"] == "text"
    assert summary["sizes"] == {"train": 10, "pool": 10, "val": 4, "test": 4}
    assert summary["duplicates_dropped"] == {"train": 1, "val": 0, "test": 0}
    assert "x test 0" not in json.loads((out / "pool_x.json").read_text())
    assert json.loads((out / "data_report.json").read_text())["layout"] == "your split column"


def test_a_csv_with_one_label_says_the_layout(tmp_path):
    path = write_csv(tmp_path / "t.csv", [["text", "label"], *texts(10, "only")])
    with pytest.raises(DataError, match=r"one label \('only'\); a classifier needs two or more labels"):
        load_text_csv(data_cfg("text_csv", path))


# --- evidence on small pools -----------------------------------------------------------------------
def test_a_last_batch_of_one_joins_the_batch_before_it():
    from triad.heads.transfer.evidence import batches

    assert [len(b) for b in batches(torch.arange(33), 16)] == [16, 17]
    assert [len(b) for b in batches(torch.arange(32), 16)] == [16, 16]
    assert [len(b) for b in batches(torch.arange(1), 16)] == [1]


def test_fractions_a_small_pool_cannot_honour_are_caveats():
    from triad.heads.transfer.evidence import fraction_caveats

    notes = fraction_caveats(np.repeat([0, 1, 2], [12, 15, 30]), [0.01, 0.03, 1.0])
    assert notes[0].startswith("fraction 0.01 of a pool with 12 to 30 examples per class leaves 3 class(es)")
    assert "fractions 0.01 and 0.03 both draw 3 labels" in notes[-1]
    assert fraction_caveats(np.repeat([0, 1], 100), [0.1, 1.0]) == []


def test_rgb_images_are_shifted_channel_by_channel():
    from triad.heads.transfer.module import random_shift

    grey = torch.randint(0, 256, (3, 8, 9), dtype=torch.uint8)
    rgb = torch.stack([grey, 255 - grey, grey // 2], -1)
    shifted = random_shift(rgb, 2, torch.Generator().manual_seed(0))
    expected = random_shift(grey, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == rgb.shape
    assert torch.equal(shifted[..., 0], expected) and torch.equal(shifted[..., 1], 255 - expected)


# --- batch prediction on files ---------------------------------------------------------------------
class Brightness(torch.nn.Module):
    """A stand-in network: ``bright`` for bright images, ``dark`` for dark ones."""

    def forward(self, x):
        score = x.float().flatten(1).mean(1) / 255.0 - 0.5
        return torch.stack([-score, score], -1) * 10


class Served:
    """What ``mlflow.pyfunc.load_model`` gives: ``predict(frame)``, the signature, the python model."""

    def __init__(self, channels: int = 1):
        from types import SimpleNamespace

        from mlflow.types import ColSpec, Schema

        from triad.heads.transfer.pyfunc import TransferPyfunc

        self.python_model = TransferPyfunc()
        self.python_model.config = {
            "modality": "image",
            "image_mode": "L" if channels == 1 else "RGB",
            "input_size": 8,
            "class_names": ["dark", "bright"],
            "threshold": None,
        }
        self.python_model.classifier = Brightness()
        schema = Schema([ColSpec("binary", "image")])
        self.metadata = SimpleNamespace(get_input_schema=lambda: schema)

    def predict(self, frame):
        return self.python_model.predict(None, frame)

    def unwrap_python_model(self):
        return self.python_model


@pytest.fixture
def serve(monkeypatch):
    import importlib

    pyfunc = importlib.import_module("mlflow.pyfunc")
    model = Served()
    monkeypatch.setattr(pyfunc, "load_model", lambda uri: model)
    return model


def test_batch_prediction_writes_a_row_per_file_and_bad_files_as_rows_with_their_error(serve, tmp_path, capsys):
    from triad.cli import main

    folder = tmp_path / "scans"
    bright = image(folder / "b.png", "RGBA", value=250)  # transparency on white, as prepare reads it
    dark = image(folder / "deeper" / "d.jpg", "L", value=5)
    sixteen = image(folder / "s16.png", "I;16", value=60000)
    broken = truncated_jpeg(folder / "deeper" / "cut.jpg")
    (folder / "fake.png").write_text("not an image")
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "predictions.csv"

    assert main(["predict", "--model", "mine/1", "transfer", str(folder), "--out", str(out)]) == 0
    assert "wrote 6 prediction(s)" in capsys.readouterr().out
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["path", "class", "p_dark", "p_bright", "error"]
    rows = table.set_index("path")
    assert len(rows) == 6
    assert rows.loc[str(bright), "class"] == "bright" and rows.loc[str(dark), "class"] == "dark"
    assert rows.loc[str(sixteen), "class"] == "bright" and rows.loc[str(sixteen), "error"] == ""
    assert rows.loc[str(broken), "error"].startswith("corrupt image") and rows.loc[str(broken), "class"] == ""
    assert rows.loc[str(folder / "fake.png"), "error"].startswith("not a PNG or JPEG image")
    assert rows.loc[str(folder / "empty.jpeg"), "error"] == "empty file: zero bytes"


def test_printing_shows_the_error_rows_too(serve, tmp_path, capsys):
    from triad.cli import main

    good = image(tmp_path / "good.png", value=200)
    broken = truncated_jpeg(tmp_path / "cut.jpg")
    assert main(["predict", "transfer", str(good), str(broken)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["input", "label", "label_id", "p_dark", "p_bright", "error"]
    assert "bright" in printed[1] and "corrupt" in printed[2]


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["nowhere"], DataError, r"no such image file\(s\) or folder\(s\): \['nowhere'\]"),
        (["{empty}"], DataError, "holds no PNG or JPEG files"),
        (["{image}", "--out", "{missing}/p.csv"], DataError, "the folder .* does not exist; create it first"),
        (["{image}", "--out", "{empty}"], DataError, "is a folder; name the CSV file to write"),
        (["--file", "{image}"], TriadError, "--file holds texts, one a line: add --text"),
        (["--text", "--file", "{missing}"], DataError, "no such file; pass a UTF-8 text file"),
        ([], TriadError, "no images to classify"),
    ],
)
def test_a_wrong_request_is_refused_before_the_model_loads(tmp_path, argv, error, message):
    from triad.cli import build_parser
    from triad.heads.transfer.cli import check

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    paths = {"empty": tmp_path / "empty", "image": image(tmp_path / "a.png"), "missing": tmp_path / "missing"}
    args = build_parser().parse_args(["predict", "transfer", *(a.format(**paths) for a in argv)])
    with pytest.raises(error, match=message):
        check(args)


def test_texts_are_read_from_a_file_one_a_line(tmp_path):
    from triad.cli import build_parser
    from triad.heads.transfer.cli import check

    path = tmp_path / "texts.txt"
    path.write_bytes("\ufefffirst text\n\n  second, text  \r\nthird\n".encode())
    args = build_parser().parse_args(["predict", "transfer", "--text", "given", "--file", str(path)])
    check(args)
    assert args.texts == ["given", "first text", "second, text", "third"]
    path.write_bytes(b"fine\nbad \xff\n")
    with pytest.raises(DataError, match=r"texts.txt:2: invalid UTF-8"):
        check(args)
