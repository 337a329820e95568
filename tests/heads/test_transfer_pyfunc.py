"""The served model: logged to MLflow, loaded back, it answers as the trained network does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.heads.conftest import write_tiny_image_task
from triad.config import compose
from triad.heads.transfer.head import TransferHead
from triad.heads.transfer.pyfunc import png_bytes

SRC = Path(__file__).resolve().parents[2] / "src" / "triad"


@pytest.fixture
def tiny_digits(tmp_path) -> Path:
    return write_tiny_image_task(tmp_path / "data", {"pool": 6, "val": 6, "test": 4}, ["normal", "pneumonia"], seed=1)


@pytest.mark.slow
def test_pyfunc_round_trips_through_mlflow(tmp_path, tiny_digits, sqlite_uri):
    import mlflow

    head = TransferHead(compose(["model.transfer.image_size=32", "model.transfer.strategy=full"]))
    dm = head.datamodule(tiny_digits)
    module = head.module(dm).eval()
    torch.nn.init.normal_(module.model.classifier.weight, std=0.5)  # a head with opinions, not near-uniform
    bundle = head.pyfunc(module, dm, tmp_path / "work")

    mlflow.set_tracking_uri(sqlite_uri)
    mlflow.set_experiment("transfer-pyfunc-test")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=bundle.python_model,
            artifacts=bundle.artifacts,
            input_example=bundle.input_example,
            signature=bundle.signature,
            code_paths=[str(SRC)],
            pip_requirements=["torch", "pillow"],
        )  # skip the slow inference of requirements
    served = mlflow.pyfunc.load_model(info.model_uri)
    schema = served.metadata.get_output_schema()  # explicit, not inferred from two rows
    assert [(c.name, c.type.name) for c in schema.inputs] == [
        ("label", "string"),
        ("label_id", "long"),
        ("p_normal", "double"),
        ("p_pneumonia", "double"),
    ]
    assert [(c.name, c.type.name) for c in served.metadata.get_input_schema().inputs] == [("image", "binary")]

    images = dm.test.x
    with torch.no_grad():
        expected = torch.softmax(module.model(torch.from_numpy(images)), -1).numpy()
    out = served.predict(pd.DataFrame({"image": [png_bytes(im) for im in images]}))
    assert list(out.columns) == ["label", "label_id", "p_normal", "p_pneumonia"]
    np.testing.assert_allclose(out[["p_normal", "p_pneumonia"]].to_numpy(), expected, rtol=1e-4, atol=1e-5)
    threshold = json.loads(Path(bundle.artifacts["config"]).read_text())["threshold"]
    assert out.label_id.tolist() == (expected[:, 1] >= threshold).astype(int).tolist()  # the val-chosen threshold


def test_a_config_saved_before_the_lora_section_was_nested_still_reads():
    """Registered versions saved flat ``lora_r`` .. ``lora_targets``; loading one rebuilds the same config."""
    from tests.profile import section
    from triad.heads.transfer.pyfunc import saved_model_config

    cfg = section("model", "transfer", strategy="lora", lora={"r": 4})
    flat = cfg.model_dump(mode="json")
    flat |= {f"lora_{key}": value for key, value in flat.pop("lora").items()}
    assert saved_model_config(flat) == cfg
    assert saved_model_config(cfg.model_dump(mode="json")) == cfg
