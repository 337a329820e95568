"""The pyfunc model round-trips through MLflow and generates what was asked for."""

import io
import json
import types
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import image as mpimg

from tests.profile import section
from triad.errors import TriadError
from triad.heads.diffusion.module import DiffusionModule
from triad.heads.diffusion.pyfunc import MAX_IMAGES, DiffusionPyfunc, input_signature, write_artifacts

TINY = section(
    "model",
    "diffusion",
    timesteps=20,
    sample_steps=5,
    eval_steps=[5],
    unet={"patch_size": 1, "channels": 8, "channel_mults": [1, 2], "attention_resolutions": [4], "attention_heads": 2},
)


@pytest.mark.slow
def test_pyfunc_round_trips_through_mlflow(tmp_path, sqlite_uri):
    torch.manual_seed(0)
    module = DiffusionModule(TINY, image_channels=1, image_size=8, n_classes=3)
    for p in module.ema.parameters():  # non-trivial EMA weights, so the reload is checked for real
        torch.nn.init.normal_(p, std=0.1)
    artifacts = write_artifacts(module, ["a", "b", "c"], tmp_path / "work")
    example = pd.DataFrame([{"label": 1, "n": 2, "steps": 3, "guidance": 2.0, "seed": 0, "png": False}])
    mlflow.set_tracking_uri(sqlite_uri)
    mlflow.set_experiment("diffusion-pyfunc-test")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DiffusionPyfunc(),
            artifacts=artifacts,
            input_example=example,
            signature=input_signature(),
        )
    served = mlflow.pyfunc.load_model(info.model_uri)

    request = pd.DataFrame(
        [
            {"label": 2, "n": 3, "steps": 5, "guidance": 2.0, "seed": 7, "png": True},
            {"label": 0, "n": 1, "steps": 2, "guidance": 1.0, "seed": 1, "png": True},
        ]
    )
    out = served.predict(request)
    assert len(out) == 4 and out["label"].tolist() == [2, 2, 2, 0]
    for image in out["image"]:
        assert np.asarray(image).dtype == np.uint8 and np.asarray(image).shape == (8, 8)
    decoded = mpimg.imread(io.BytesIO(out["png"].iloc[0]), format="png")
    assert decoded.shape[:2] == (8, 8)

    # only the label is required: the rest take the model's defaults (one image, its sample_steps)
    minimal = served.predict(pd.DataFrame([{"label": 1}]))
    assert minimal["label"].tolist() == [1] and np.asarray(minimal["image"].iloc[0]).shape == (8, 8)
    with pytest.raises(Exception, match="label"):
        served.predict(pd.DataFrame([{"n": 2}]))

    # the served model is the logged EMA network: same seed, same images as sampling the module directly
    again = served.predict(request)
    assert all(np.array_equal(a, b) for a, b in zip(out["image"], again["image"]))
    direct = module.generate(torch.full((3,), 2), steps=5, guidance=2.0, seed=7)
    expected = ((direct.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy()
    assert all(np.array_equal(np.asarray(a), b) for a, b in zip(out["image"][:3], expected))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The pyfunc as MLflow would load it, without the MLflow round trip (3 classes, T = 20)."""
    torch.manual_seed(0)
    module = DiffusionModule(TINY, image_channels=1, image_size=8, n_classes=3)
    artifacts = write_artifacts(module, ["a", "b", "c"], tmp_path_factory.mktemp("work"))
    model = DiffusionPyfunc()
    model.load_context(types.SimpleNamespace(artifacts=artifacts))
    return model


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"label": 1, "guidance": -0.5}, "guidance"),
        ({"label": 1, "guidance": float("inf")}, "guidance"),
        ({"n": 2}, "label"),  # label missing
        ({"label": None}, "label"),
        ({"label": 2.7}, "label"),  # a fraction is not truncated to 2
        ({"label": 3}, "label"),  # 3 classes: 0 .. 2 (3 is the null label, not a class)
        ({"label": -1}, "label"),
        ({"label": "1"}, "label"),
        ({"label": 1, "steps": 2.9}, "steps"),
        ({"label": 1, "steps": 0}, "steps"),
        ({"label": 1, "steps": 21}, "steps"),  # T = 20
        ({"label": 1, "n": 0}, "n"),
        ({"label": 1, "n": MAX_IMAGES + 1}, "n"),
        ({"label": 1, "png": "false"}, "png"),  # bool("false") is True
        ({"label": 1, "seed": -1}, "seed"),
        ({"label": 1, "gudiance": 2.0}, "unknown field"),
    ],
)
def test_bad_request_fields_are_named_with_their_row(loaded, bad, field):
    rows = [{"label": 0, "n": 1, "steps": 1}, bad]  # row 0 is fine: the error must name row 1
    with pytest.raises(TriadError, match=f"request row 1.*{field}"):
        loaded.predict(None, rows)


def test_missing_values_take_the_defaults_and_whole_floats_are_counts(loaded):
    # pandas stores an int column with a gap as float (3.0, NaN): both must still work
    frame = pd.DataFrame([{"label": 2, "n": 2, "steps": 3, "png": True}, {"label": 0}])
    assert frame["steps"].dtype == float
    out = loaded.predict(None, frame)
    assert out["request"].tolist() == [0, 0, 1] and out["label"].tolist() == [2, 2, 0]
    assert isinstance(out["png"].iloc[0], bytes) and pd.isna(out["png"].iloc[2])
    assert not any("png" in column for column in loaded.predict(None, [{"label": 1, "png": False}]).columns)


def test_an_empty_request_gives_an_empty_frame_with_the_output_columns(loaded):
    out = loaded.predict(None, pd.DataFrame({"label": pd.Series([], dtype="int64")}))
    assert len(out) == 0 and list(out.columns) == ["request", "label", "index", "image"]


def test_guidance_is_refused_for_a_model_trained_without_label_dropout(loaded, monkeypatch):
    """Such a model never trained its null label, so guidance != 1 would mix in an untrained output."""
    monkeypatch.setattr(loaded, "cfg", TINY.model_copy(update={"label_drop_prob": 0.0, "guidance": 1.0}))
    with pytest.raises(TriadError, match=r"request row 0: guidance=2.0 .*label_drop_prob=0"):
        loaded.predict(None, [{"label": 1, "guidance": 2.0}])
    assert len(loaded.predict(None, [{"label": 1, "steps": 1}])) == 1  # the default guidance 1 is fine


def test_a_version_saved_with_the_flat_config_layout_still_loads(tmp_path):
    """Versions registered before ``model.diffusion.unet`` and ``model.diffusion.judge`` became sections
    saved those keys flat (``channels``, ``judge_epochs``, ...); they load into the same network."""
    torch.manual_seed(0)
    module = DiffusionModule(TINY, image_channels=1, image_size=8, n_classes=3)
    artifacts = write_artifacts(module, ["a", "b", "c"], tmp_path)
    saved = json.loads(Path(artifacts["diffusion_config"]).read_text())
    model = saved["model"]
    flat = {
        **{k: v for k, v in model.items() if k not in ("unet", "judge")},
        **model["unet"],
        **{f"judge_{k}": v for k, v in model["judge"].items()},
    }
    Path(artifacts["diffusion_config"]).write_text(json.dumps({**saved, "model": flat}))
    old = DiffusionPyfunc()
    old.load_context(types.SimpleNamespace(artifacts=artifacts))
    assert old.cfg == TINY
    assert all(torch.equal(a, b) for a, b in zip(old.net.state_dict().values(), module.ema.state_dict().values()))

    # saved in today's layout before the judge had its min_skill bar: loads, with no bar (0) recorded
    before_bar = {**model, "judge": {k: v for k, v in model["judge"].items() if k != "min_skill"}}
    Path(artifacts["diffusion_config"]).write_text(json.dumps({**saved, "model": before_bar}))
    older = DiffusionPyfunc()
    older.load_context(types.SimpleNamespace(artifacts=artifacts))
    assert older.cfg.judge.min_skill == 0.0 and older.cfg.unet == TINY.unet
