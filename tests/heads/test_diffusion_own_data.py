"""The diffusion head on a user's own images (``data/diffusion=image_folder``), with real files on disk.

Class sub-folders give a class-conditional dataset, a flat folder an unconditional one; every bad file is
named with its path (on_bad fail) or counted (skip); the report says what was read; an unconditional
model trains, samples and is served without a class; its judge learns rotations; ``triad predict
diffusion`` takes class names and refuses malformed arguments before any model loads.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from tests.profile import section
from triad.cli import main
from triad.data.own import split_of
from triad.errors import DataError, TriadError
from triad.heads.diffusion.data import DiffusionDataModule, prepare
from triad.heads.diffusion.evaluate import check_judge_fits
from triad.heads.diffusion.judge import load_judge, rotated, train_judge
from triad.heads.diffusion.module import DiffusionModule
from triad.heads.diffusion.pyfunc import DiffusionPyfunc, write_artifacts
from triad.heads.diffusion.sampling import SamplingError, ddim_sample

TINY_MODEL = section(
    "model",
    "diffusion",
    timesteps=20,
    sample_steps=5,
    eval_steps=[5],
    guidance=1.0,
    unet={"patch_size": 1, "channels": 8, "channel_mults": [1, 2], "attention_resolutions": [4], "attention_heads": 2},
)


def folder_cfg(path: Path, **overrides):
    values = {"source": "image_folder", "path": str(path), "channels": 1, "val_fraction": 0.25, "test_fraction": 0.25}
    return section("data", "diffusion", **{**values, "name": "own-test", **overrides})


def picture(seed: int, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """A distinct uint8 picture (H, W, 3): a bright square on a dark background, its place drawn by ``seed``."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, (size[1], size[0], 3), dtype=np.uint8)
    x, y = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
    image[y : y + size[1] // 3, x : x + size[0] // 3] = rng.integers(150, 256, 3, dtype=np.uint8)
    return image


def write_image(path: Path, seed: int, kind: str) -> Path:
    """One real file: kind is png-grey, png-rgb, png-rgba, png-16bit or jpeg-rgb / jpeg-grey, of varied sizes."""
    size = [(28, 28), (40, 30), (64, 64), (20, 24)][seed % 4]
    rgb = picture(seed, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png-grey":
        Image.fromarray(rgb[..., 0]).save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if kind == "png-rgba":
        alpha = np.full(rgb.shape[:2], 200, np.uint8)
        Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if kind == "png-16bit":
        wide = rgb[..., 0].astype("<u2") * 257  # the full 16-bit range
        Image.frombytes("I;16", size, wide.tobytes()).save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if kind == "jpeg-grey":
        Image.fromarray(rgb[..., 1]).save(path.with_suffix(".jpg"), quality=95)
        return path.with_suffix(".jpg")
    if kind == "jpeg-rgb":
        Image.fromarray(rgb).save(path.with_suffix(".jpeg"), quality=95)
        return path.with_suffix(".jpeg")
    Image.fromarray(rgb).save(path.with_suffix(".png"))
    return path.with_suffix(".png")


KINDS = ["png-grey", "png-rgb", "png-rgba", "png-16bit", "jpeg-rgb", "jpeg-grey"]


def write_images(folder: Path, count: int, first_seed: int) -> list[Path]:
    return [write_image(folder / f"img{i:03d}", first_seed + i, KINDS[i % len(KINDS)]) for i in range(count)]


def write_bad_files(folder: Path) -> list[Path]:
    """A truncated JPEG, a text file named .png and an empty file."""
    good = write_image(folder / "whole", 999, "jpeg-rgb")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:300])
    good.unlink()
    text = folder / "notes.png"
    text.write_text("these are my notes, not a picture\n")
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    return [truncated, text, empty]


def prepared(cfg, out: Path) -> tuple[dict, dict]:
    out.mkdir(parents=True, exist_ok=True)
    summary = prepare(cfg, out, None)
    return summary, json.loads((out / "data_report.json").read_text())


# --- config -----------------------------------------------------------------------------------------
def test_the_source_yaml_needs_a_path_and_the_built_in_ones_refuse_one(tmp_path):
    from triad.config import compose

    cfg = compose(["data/diffusion=image_folder", f"data.diffusion.path={tmp_path}"])
    data = cfg.data.diffusion
    assert (data.source, data.raw, data.name, data.on_bad, data.channels) == (
        "image_folder",
        str(tmp_path),
        "own-images-diffusion",
        "fail",
        1,
    )
    with pytest.raises(Exception, match="path"):  # Hydra's mandatory value: no folder, no task
        compose(["data/diffusion=image_folder"])
    with pytest.raises(ValidationError, match="data/diffusion=image_folder"):
        section("data", "diffusion", path=str(tmp_path))  # mnist5k would silently ignore the user's folder
    with pytest.raises(ValidationError, match="channels"):
        folder_cfg(tmp_path, channels=None)


# --- class folders: class-conditional ---------------------------------------------------------------
def test_class_folders_of_mixed_files_become_a_conditional_dataset_with_a_report(tmp_path):
    for offset, name in enumerate(["cats", "dogs"]):
        write_images(tmp_path / "data" / name, 16, first_seed=100 * offset)
    summary, report = prepared(folder_cfg(tmp_path / "data"), tmp_path / "out")
    out = tmp_path / "out"

    meta = json.loads((out / "meta.json").read_text())
    assert meta == {
        "source": "image_folder",
        "class_names": ["cats", "dogs"],
        "conditional": True,
        "channels": 1,
        "image_size": 28,
    }
    total = 0
    for split in ("train", "val", "test"):
        images, labels = np.load(out / f"{split}_images.npy"), np.load(out / f"{split}_labels.npy")
        assert images.dtype == np.uint8 and images.shape[1:] == (1, 28, 28) and labels.dtype == np.int64
        assert sorted(set(labels.tolist())) == [0, 1], split  # every class in every split
        total += len(labels)
        assert summary["sizes"][split] == len(labels)
    assert total == 32
    assert set(report["counts"]) == {"cats", "dogs"}
    assert sum(sum(c.values()) for c in report["counts"].values()) == 32
    assert {"L", "RGB", "RGBA", "I;16"} <= set(report["image_modes"])
    assert {"28x28", "40x30", "64x64", "20x24"} == set(report["image_sizes"])
    markdown = (out / "data_report.md").read_text()
    assert "| cats |" in markdown and "| dogs |" in markdown and "I;16" in markdown and "Problems: 0" in markdown
    assert "class-conditional" in markdown
    assert Image.open(out / "examples.png").size[0] == 8 * 28

    again = tmp_path / "again"
    prepared(folder_cfg(tmp_path / "data"), again)
    for name in ("train_images.npy", "test_labels.npy", "meta.json", "data_report.json", "examples.png"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name

    datamodule = DiffusionDataModule(out, batch_size=4)
    assert (datamodule.n_classes, datamodule.conditional, datamodule.channels) == (2, True, 1)


def test_rgb_at_32_pixels(tmp_path):
    write_images(tmp_path / "data" / "a", 8, 0)
    write_images(tmp_path / "data" / "b", 8, 50)
    prepared(
        folder_cfg(tmp_path / "data", channels=3, image_size=32, val_fraction=0.3, test_fraction=0.3), tmp_path / "o"
    )
    images = np.load(tmp_path / "o" / "train_images.npy")
    assert images.shape[1:] == (3, 32, 32)
    assert (images[:, 0] != images[:, 2]).any()  # colour kept, not grey copied thrice


def test_a_class_too_small_for_the_split_is_named_with_its_count(tmp_path):
    write_images(tmp_path / "data" / "plenty", 20, 0)
    write_images(tmp_path / "data" / "rare", 1, 500)
    with pytest.raises(DataError, match=r"'rare' has 1 example\(s\)") as error:
        prepared(folder_cfg(tmp_path / "data"), tmp_path / "out")
    assert "plenty" not in str(error.value)


def test_a_folder_with_its_own_split_keeps_it(tmp_path):
    for split, count in (("train", 6), ("val", 2), ("test", 2)):
        for offset, name in enumerate(["x", "y"]):
            write_images(tmp_path / "data" / split / name, count, 1000 * offset + 100 * len(split))
    summary, report = prepared(folder_cfg(tmp_path / "data"), tmp_path / "out")
    assert summary["sizes"] == {"train": 12, "val": 4, "test": 4}
    assert report["layout"] == "your train/val/test folders"


def test_the_same_picture_in_two_splits_is_kept_in_the_held_out_one_only(tmp_path):
    names = [f"copy{i}.png" for i in range(200)]
    in_test = next(n for n in names if split_of(f"a/{n}", 0.25, 0.25) == "test")
    in_train = next(n for n in names if split_of(f"a/{n}", 0.25, 0.25) == "train")
    write_images(tmp_path / "data" / "a", 12, 0)
    write_images(tmp_path / "data" / "b", 12, 300)
    original = write_image(tmp_path / "data" / "a" / "original", 777, "png-rgb")
    for name in (in_test, in_train):
        (tmp_path / "data" / "a" / name).write_bytes(original.read_bytes())
    summary, report = prepared(folder_cfg(tmp_path / "data"), tmp_path / "out")
    assert report["duplicates_dropped"]["train"] >= 1 and report["duplicates_dropped"]["test"] == 0
    train = {row.tobytes() for row in np.load(tmp_path / "out" / "train_images.npy")}
    test = {row.tobytes() for row in np.load(tmp_path / "out" / "test_images.npy")}
    assert not train & test


def test_adding_files_moves_no_existing_file_to_another_split(tmp_path):
    write_images(tmp_path / "data", 30, 0)
    prepared(folder_cfg(tmp_path / "data"), tmp_path / "before")
    for i in range(30, 45):
        write_image(tmp_path / "data" / f"new{i:03d}", 40_000 + i, "png-grey")
    prepared(folder_cfg(tmp_path / "data"), tmp_path / "after")
    for split in ("train", "val", "test"):
        before = {row.tobytes() for row in np.load(tmp_path / "before" / f"{split}_images.npy")}
        after = {row.tobytes() for row in np.load(tmp_path / "after" / f"{split}_images.npy")}
        assert before <= after, split


# --- bad files ---------------------------------------------------------------------------------------
def test_bad_files_are_listed_with_their_paths_or_skipped_and_counted(tmp_path):
    write_images(tmp_path / "data", 24, 0)
    bad = write_bad_files(tmp_path / "data")
    with pytest.raises(DataError) as error:
        prepared(folder_cfg(tmp_path / "data"), tmp_path / "failed")
    message = str(error.value)
    assert "3 problem(s)" in message and "on_bad: skip" in message
    for path, reason in zip(bad, ("corrupt image", "not an image", "empty file")):
        assert f"{path}: {reason}" in message
    assert not (tmp_path / "failed" / "meta.json").exists()

    summary, report = prepared(folder_cfg(tmp_path / "data", on_bad="skip"), tmp_path / "out")
    assert report["skipped"] == 3 == summary["skipped"] and sum(summary["sizes"].values()) == 24
    assert {p["path"] for p in report["problems"]} == {str(p) for p in bad}
    markdown = (tmp_path / "out" / "data_report.md").read_text()
    assert "Problems: 3 (3 file(s) skipped)" in markdown and "notes.png" in markdown


# --- a flat folder: unconditional ---------------------------------------------------------------------
def test_a_flat_folder_becomes_an_unconditional_dataset(tmp_path):
    write_images(tmp_path / "data", 24, 0)
    (tmp_path / "data" / "README.txt").write_text("my pictures")
    summary, report = prepared(folder_cfg(tmp_path / "data"), tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["class_names"] == [] and meta["conditional"] is False
    for split in ("train", "val", "test"):
        assert set(np.load(tmp_path / "out" / f"{split}_labels.npy").tolist()) == {0}  # the null label
    assert list(report["counts"]) == ["all"] and report["ignored_files"] == 1
    assert report["model"].startswith("unconditional")
    datamodule = DiffusionDataModule(tmp_path / "out", batch_size=4)
    assert (datamodule.n_classes, datamodule.conditional) == (0, False)


def test_a_flat_folder_too_small_for_three_splits_says_so(tmp_path):
    write_images(tmp_path / "data", 2, 0)
    with pytest.raises(DataError, match="each of train, val and test needs at least one"):
        prepared(folder_cfg(tmp_path / "data"), tmp_path / "out")


def test_an_unconditional_model_trains_samples_and_refuses_class_labels():
    torch.manual_seed(0)
    module = DiffusionModule(TINY_MODEL, image_channels=1, image_size=8, n_classes=0)
    assert module.net.label_embedding.num_embeddings == 1  # the null row alone
    optimizer = torch.optim.Adam(module.net.parameters(), lr=1e-2)
    images, labels = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8), torch.zeros(8, dtype=torch.long)
    for step in range(2):
        loss = module.training_step((images, labels), step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module.update_ema(step + 1)
    assert torch.isfinite(loss)
    samples = module.generate(torch.zeros(3, dtype=torch.long), steps=2, guidance=4.0)  # guidance: not applied
    assert samples.shape == (3, 1, 8, 8) and torch.isfinite(samples).all()
    with pytest.raises(SamplingError, match="unconditional"):
        ddim_sample(module.ema, module.diffusion, torch.ones(2, dtype=torch.long), (1, 8, 8), steps=2)


def served(tmp_path: Path, class_names: list[str]) -> DiffusionPyfunc:
    torch.manual_seed(0)
    module = DiffusionModule(TINY_MODEL, image_channels=1, image_size=8, n_classes=len(class_names))
    artifacts = write_artifacts(module, class_names, tmp_path / "work")
    model = DiffusionPyfunc()
    model.load_context(types.SimpleNamespace(artifacts=artifacts))
    return model


def test_the_served_models_take_a_class_name_or_no_class(tmp_path):
    conditional = served(tmp_path / "c", ["circles", "squares"])
    out = conditional.predict(None, [{"class": "squares", "n": 2, "steps": 1}, {"label": 0, "steps": 1}])
    assert out["label"].tolist() == [1, 1, 0] and np.asarray(out["image"].iloc[0]).shape == (8, 8)
    for row, words in (
        ({"class": "triangles"}, "class='triangles' is not a class of this model; give one of circles, squares"),
        ({"class": "squares", "label": 1}, "not both"),
        ({"n": 1}, "give label (0 .. 1) or class (one of circles, squares)"),
    ):
        with pytest.raises(TriadError, match=words.replace("(", r"\(").replace(")", r"\)")):
            conditional.predict(None, [row])

    unconditional = served(tmp_path / "u", [])
    out = unconditional.predict(None, [{"n": 3, "steps": 1, "png": True}])
    assert len(out) == 3 and np.asarray(out["image"].iloc[2]).shape == (8, 8) and out["label"].isna().all()
    with pytest.raises(TriadError, match="unconditional"):
        unconditional.predict(None, [{"class": "cats"}])
    with pytest.raises(TriadError, match="guidance=3.0 does not apply"):
        unconditional.predict(None, [{"guidance": 3.0}])


def test_the_unconditional_judge_learns_rotations_and_the_gate_uses_fid_alone(tmp_path):
    write_images(tmp_path / "data", 24, 0)
    prepared(folder_cfg(tmp_path / "data"), tmp_path / "prepared")
    judge_cfg = section("model", "diffusion").judge.model_copy(update={"channels": 4, "stages": 1, "epochs": 1})
    (tmp_path / "judge").mkdir()
    summary = train_judge(judge_cfg, tmp_path / "prepared", tmp_path / "judge", seed=0)
    assert summary["task"] == "rotation" and 0 <= summary["test_accuracy"] <= 1
    judge, config = load_judge(tmp_path / "judge")
    assert config["task"] == "rotation" and judge.classifier.out_features == 4
    check_judge_fits(config, 0, tmp_path / "judge")
    with pytest.raises(DataError, match="trained on other data"):
        check_judge_fits(config, 3, tmp_path / "judge")

    image = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert torch.equal(rotated(image, torch.tensor([1]))[0, 0], torch.tensor([[1.0, 3.0], [0.0, 2.0]]))

    from triad.config import compose
    from triad.heads.diffusion.head import DiffusionHead

    head = DiffusionHead(compose([]))
    learned = {"judge_accuracy": 0.9, "judge_chance": 0.25}
    passed, reason = head.gate_passes({"fid": 3.0, "upright_rate": 0.1, **learned})
    assert passed and "unconditional" in reason
    assert not head.gate_passes({"fid": 3.0, "conditional_accuracy": 0.1, **learned})[0]
    assert not head.gate_passes({"fid": 3.0, **learned})[0]  # a conditional evaluation without its accuracy
    # a judge at chance: FID in its features says nothing, so nothing is promoted on it (skill 0.2 < 0.5)
    passed, reason = head.gate_passes({"fid": 0.0001, "upright_rate": 0.1, "judge_accuracy": 0.4, "judge_chance": 0.25})
    assert not passed and "the judge did not learn these images" in reason and "skill 0.20 < 0.50" in reason


# --- triad predict diffusion: arguments checked before any model loads -----------------------------
@pytest.mark.parametrize(
    "args,words",
    [
        (["--out", "grid.jpg"], "give a file name ending in .png"),
        (["--out", "no/such/folder/grid.png"], "does not exist"),
        (["--n", "0"], "--n 0"),
        (["--steps", "0"], "--steps 0"),
        (["--guidance", "-1"], "--guidance -1.0"),
        (["--label", "-2"], "--label -2"),
        (["--class", " "], "--class is empty"),
    ],
)
def test_predict_refuses_malformed_arguments_before_loading_a_model(args, words, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.chdir(tmp_path)
    loaded_before = "mlflow" in sys.modules
    assert main(["predict", "--model", "own-diffusion/1", "diffusion", *args]) == 2
    assert words in capsys.readouterr().err
    assert loaded_before or "mlflow" not in sys.modules


def test_predict_takes_a_class_by_name_or_by_index_not_both(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "diffusion", "--class", "cats", "--label", "1"])
    assert "not allowed with argument" in capsys.readouterr().err
