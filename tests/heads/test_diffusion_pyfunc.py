"""The pyfunc model round-trips through MLflow and generates what was asked for."""

import io

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import image as mpimg

from triad.heads.diffusion.config import DiffusionModel
from triad.heads.diffusion.module import DiffusionModule
from triad.heads.diffusion.pyfunc import DiffusionPyfunc, input_signature, write_artifacts

TINY = DiffusionModel(patch_size=1, channels=8, channel_mults=[1, 2], attention_resolutions=[4], attention_heads=2,
                      timesteps=20, sample_steps=5, eval_steps=[5])


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
        info = mlflow.pyfunc.log_model(name="model", python_model=DiffusionPyfunc(), artifacts=artifacts,
                                       input_example=example, signature=input_signature())
    served = mlflow.pyfunc.load_model(info.model_uri)

    request = pd.DataFrame([
        {"label": 2, "n": 3, "steps": 5, "guidance": 2.0, "seed": 7, "png": True},
        {"label": 0, "n": 1, "steps": 2, "guidance": 1.0, "seed": 1, "png": True},
    ])
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
