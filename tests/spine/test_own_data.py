"""triad.data.own on real files: layouts, decoding every image mode, problems, the stable split, the report."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from triad.data import own
from triad.errors import DataError


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def _grey(value=128, size=(6, 4)):
    return np.full(size[::-1], value, dtype=np.uint8)


def test_the_split_depends_on_the_name_alone():
    names = [f"cls/{i}.png" for i in range(2000)]
    first = {n: own.split_of(n, 0.1, 0.2) for n in names}
    shares = {s: sum(v == s for v in first.values()) / len(names) for s in own.SPLITS}
    assert abs(shares["test"] - 0.2) < 0.03 and abs(shares["val"] - 0.1) < 0.03
    # more files and another order: every existing name keeps its split
    more = names[::-1] + [f"cls/new{i}.png" for i in range(500)]
    assert all(own.split_of(n, 0.1, 0.2) == first[n] for n in more if n in first)


def test_layouts(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(2):
            _png(tmp_path / "classes" / cls / f"{i}.png", _grey(i))
    (tmp_path / "classes" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "classes" / "dog" / ".hidden.png").write_bytes(b"")
    folder = own.scan_image_folder(tmp_path / "classes", "data.x.path", allow_flat=False)
    assert folder.layout == "classes" and folder.class_names == ["cat", "dog"]
    assert [f.rel for f in folder.files] == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png"]
    assert folder.ignored == ["cat/notes.txt"] and all(f.split is None for f in folder.files)

    for split in ("train", "val", "test"):
        for cls in ("a", "b"):
            _png(tmp_path / "splits" / split / cls / "x.png", _grey())
    folder = own.scan_image_folder(tmp_path / "splits", "data.x.path", allow_flat=False)
    assert folder.layout == "splits" and folder.class_names == ["a", "b"]
    assert {(f.split, f.label) for f in folder.files} == {(s, c) for s in own.SPLITS for c in "ab"}

    _png(tmp_path / "flat" / "1.jpg", _grey())
    assert own.scan_image_folder(tmp_path / "flat", "data.x.path", allow_flat=True).layout == "flat"
    with pytest.raises(DataError, match="no class sub-folders.*Expected DIR/<class>"):
        own.scan_image_folder(tmp_path / "flat", "data.x.path", allow_flat=False)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: _png(root / "only" / "1.png", _grey()), r"one class \('only'\).*two or more"),
        (lambda root: (_png(root / "a" / "1.png", _grey()), _png(root / "2.png", _grey())), "mixes image files"),
        (lambda root: (root / "a").mkdir(parents=True), "holds no PNG or JPEG files"),
    ],
)
def test_bad_layouts_say_the_expected_layout(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError, match=message):
        own.scan_image_folder(root, "data.x.path", allow_flat=False)


def test_every_image_mode_becomes_the_configured_size_and_channels(tmp_path):
    rgb = np.zeros((10, 20, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # red
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # fully transparent: white after compositing
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    files = {
        "grey.png": _png(tmp_path / "grey.png", _grey(200)),
        "rgb.jpg": tmp_path / "rgb.jpg",
        "rgba.png": _png(tmp_path / "rgba.png", rgba, "RGBA"),
        "deep.png": tmp_path / "deep.png",
        "palette.png": tmp_path / "palette.png",
    }
    Image.fromarray(rgb).save(files["rgb.jpg"], quality=95)
    Image.fromarray(deep).save(files["deep.png"])  # a 16-bit grey PNG
    Image.fromarray(rgb).convert("P").save(files["palette.png"])
    assert Image.open(files["deep.png"]).mode.startswith("I")

    for channels, shape in ((1, (4, 4)), (3, (4, 4, 3))):
        for name, path in files.items():
            pixels, mode, size = own.decode_image(path.read_bytes(), 4, channels)
            assert pixels.shape == shape and pixels.dtype == np.uint8, name
    red, _, size = own.decode_image(files["rgb.jpg"].read_bytes(), 4, 3)
    assert size == (20, 10) and red[..., 0].min() > 240 and red[..., 1].max() < 15
    white, mode, _ = own.decode_image(files["rgba.png"].read_bytes(), 4, 1)
    assert mode == "RGBA" and white.min() == 255
    deep8, _, _ = own.decode_image(files["deep.png"].read_bytes(), 8, 1)
    assert deep8[0, 0] == 0 and deep8[-1, -1] == round(63000 * 255 / 65535)


def test_bad_files_are_listed_with_their_paths_and_reasons(tmp_path):
    good = _png(tmp_path / "a" / "good.png", _grey())
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(jpeg, "JPEG")
    (tmp_path / "a" / "cut.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (tmp_path / "a" / "text.png").write_text("hello, I am not a picture\n")
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    gif = tmp_path / "a" / "anim.png"
    Image.fromarray(_grey()).save(gif, format="GIF")
    files = [
        own.ImageFile(p, p.name, "a", None)
        for p in (good, *(tmp_path / "a" / n for n in ("cut.jpg", "text.png", "empty.png", "anim.png")))
    ]
    problems = own.Problems()
    read = own.read_images(files, 4, 1, problems)
    assert read.kept.tolist() == [0] and read.pixels.shape == (1, 4, 4) and len(read.digests) == 1
    reasons = {p.path.rsplit("/", 1)[-1]: p.reason for p in problems.items}
    assert reasons["cut.jpg"].startswith("corrupt image")
    assert reasons["text.png"].startswith("not an image")
    assert reasons["empty.png"] == "empty file: zero bytes"
    assert reasons["anim.png"] == "not a PNG or JPEG image: it is GIF"
    with pytest.raises(DataError) as failed:
        problems.settle("fail", "data.x.path")
    message = str(failed.value)
    assert message.startswith("4 problem(s) in data.x.path:") and "on_bad: skip" in message
    assert all(str(tmp_path / "a" / n) in message for n in ("cut.jpg", "text.png", "empty.png", "anim.png"))
    problems.settle("skip", "data.x.path")  # skip: no error


def test_copies_across_splits_leave_train_and_val():
    digests = ["x", "x", "x", "y", "z", "z"]
    splits = ["train", "val", "test", "train", "train", "val"]
    keep, dropped = own.drop_duplicates_across_splits(digests, splits)
    assert keep.tolist() == [False, False, True, True, False, True]
    assert dropped == {"train": 2, "val": 1, "test": 0}


def test_a_class_too_small_for_the_split_is_named_with_its_counts():
    labels = ["big"] * 6 + ["tiny"] * 2
    splits = ["train", "train", "val", "val", "test", "test", "train", "test"]
    with pytest.raises(DataError, match=r"'tiny' has 2 example\(s\) \(\{'train': 1, 'val': 0, 'test': 1\}\)"):
        own.check_class_counts(labels, splits, ["big", "tiny"], "data.x.path")
    own.check_class_counts(labels[:6], splits[:6], ["big"], "data.x.path")


def test_own_path_names_the_key_and_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"data.x.path is not set: point it at your data \(a folder\)"):
        own.own_path(None, "data.x.path", "a folder")
    with pytest.raises(DataError, match=r"data.x.path=.*nope: .* does not exist. Expected a folder."):
        own.own_path(str(tmp_path / "nope"), "data.x.path", "a folder")
    assert own.own_path(str(tmp_path), "data.x.path", "a folder") == tmp_path


def test_the_report(tmp_path):
    pixels = np.stack([_grey(v, (4, 4)) for v in (0, 50, 100, 150)])
    grid = own.example_grid(pixels, np.array([0, 0, 1, 1]), per_class=3)
    assert grid.shape == (8, 12)  # two class rows of three tiles, the missing third tile blank
    assert grid[:4, 8:].max() == 0 and grid[4:, 4:8].min() == 150
    problems = own.Problems()
    problems.add("/d/a/bad.png", "corrupt image: truncated")
    report = {
        "source": "image_folder",
        "path": "/d",
        "counts": own.split_counts(["a", "a", "b", None], ["train", "val", "test", "train"]),
        "image_modes": {"L": 3},
        "problems": problems.as_report(),
        "skipped": 1,
        "text_lengths": {"source": own.percentiles([1, 2, 3, 4, 100])},
    }
    own.write_report(tmp_path, report, grid)
    assert json.loads((tmp_path / own.REPORT_JSON).read_text())["counts"]["a"] == {"train": 1, "val": 1, "test": 0}
    markdown = (tmp_path / own.REPORT_MD).read_text()
    assert "| a | 1 | 1 | 0 | 2 |" in markdown and "| all | 1 | 0 | 0 | 1 |" in markdown
    assert "Problems: 1 (1 file(s) skipped)" in markdown and "`/d/a/bad.png`: corrupt image: truncated" in markdown
    assert "min/p5/p50/p95/max): 1.0 / 1.2 / 3.0 / 80.8 / 100.0" in markdown and "![examples](examples.png)" in markdown
    assert Image.open(tmp_path / own.REPORT_GRID).size == (12, 8)
    line = own.report_line(report)
    assert line == "`/d` (image_folder): 2 train / 1 val / 1 test, 3 classes; 1 problem(s), 1 skipped"
