"""A translator registered in MLflow is a transfer backbone: ``backbone: registry`` rebuilds its encoder
from the registry alone, and the rebuilt backbone computes the translator's own encoder features."""

from __future__ import annotations

import pytest
import torch

from tests.profile import section
from triad.heads.transfer.backbones import build_backbone
from triad.heads.translator.data import train_tokenizer
from triad.heads.translator.decoding import Translator
from triad.heads.translator.model import Seq2SeqTransformer, TransformerConfig
from triad.heads.translator.pyfunc import bundle

SENTENCES = ["In the beginning God created the heavens.", "Jesus wept.", "Rejoice always, and pray."]


def mean_encoder_memory(model: Seq2SeqTransformer, tokenizer, sentences: list[str]) -> torch.Tensor:
    """(B, D): the translator's encoder output averaged over each source's non-padding positions."""
    src = Translator(model, tokenizer, section("model", "translator").decoding).encode_sources(sentences)
    memory, src_mask, _ = model.encode(src)
    keep = src_mask[:, 0, 0, :, None].float()  # (B, S, 1)
    return (memory * keep).sum(1) / keep.sum(1)


@pytest.mark.slow
def test_a_registered_translator_serves_its_encoder_as_a_backbone(tmp_path):
    import mlflow

    tokenizer = train_tokenizer(SENTENCES, 200, 1)
    tokenizer_path = tmp_path / "tokenizer.json"
    tokenizer.save(str(tokenizer_path))
    architecture = TransformerConfig(
        vocab_size=tokenizer.get_vocab_size(),
        d_model=32,
        n_heads=2,
        n_encoder_layers=2,
        n_decoder_layers=1,
        d_ff=64,
        dropout=0.0,
        norm_first=True,
        positional="learned",
        max_len=32,
        tie_embeddings=True,
        pad_id=0,
        activation="relu",
    )
    torch.manual_seed(0)
    model = Seq2SeqTransformer(architecture).eval()  # random weights: a mix-up anywhere shows
    work = tmp_path / "work"
    work.mkdir()
    spec = bundle(model, section("model", "translator").decoding, tokenizer_path, work, SENTENCES[:1])

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("backbone-test", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=spec.python_model,
            artifacts=spec.artifacts,
            pip_requirements=["torch", "tokenizers"],
        )
    version = mlflow.register_model(info.model_uri, "triad-translator")
    mlflow.MlflowClient().set_registered_model_alias("triad-translator", "champion", version.version)
    for path in sorted(work.rglob("*"), reverse=True):  # the backbone must come from the registry, not from here
        path.unlink() if path.is_file() else path.rmdir()

    cfg = section("model", "transfer", backbone="registry", backbone_name="models:/triad-translator@champion")
    torch.manual_seed(1)  # the rebuilt encoder starts from other random weights than the translator's
    backbone = build_backbone(cfg).eval()
    assert backbone.modality == "text" and backbone.n_features == 32
    groups = backbone.layer_groups()
    assert list(groups) == ["embeddings", "layers.0", "layers.1"]
    grouped = [id(p) for group in groups.values() for p in group.parameters()]  # each parameter in one group
    assert sorted(grouped) == sorted(id(p) for p in backbone.parameters())
    with torch.no_grad():
        torch.testing.assert_close(backbone(SENTENCES), mean_encoder_memory(model, tokenizer, SENTENCES))
