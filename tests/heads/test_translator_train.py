"""End to end on a handful of sentence pairs: training memorises them, evaluation scores them, and
the MLflow pyfunc model translates them after a round trip through a real tracking store."""

from pathlib import Path

import lightning as L
import pandas as pd
import pytest

import triad
from tests.profile import section
from triad.heads.translator.data import PAD_ID, TranslationDataModule, train_tokenizer, write_jsonl
from triad.heads.translator.decoding import Translator
from triad.heads.translator.evaluate import evaluate
from triad.heads.translator.module import TranslatorModule
from triad.heads.translator.pyfunc import bundle

PAIRS = [
    ("In the beginning God created the heavens.", "Im Anfang schuf Gott die Himmel."),
    ("God said, let there be light.", "Und Gott sprach: Es werde Licht."),
    ("There was evening and morning.", "Und es ward Abend und Morgen."),
    ("The earth was empty.", "Die Erde war leer."),
    ("Jesus wept.", "Jesus weinte."),
    ("Rejoice always.", "Freuet euch allezeit."),
]
TINY = section(
    "model",
    "translator",
    max_epochs=25,
    batch_size=6,
    lr=3e-3,
    warmup_steps=10,
    label_smoothing=0.0,
    weight_decay=0.0,
    net=dict(d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64, dropout=0.0, max_len=32),
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    pairs = [{"ref": f"1:1:{i}", "src": s, "tgt": t} for i, (s, t) in enumerate(PAIRS)]
    write_jsonl(data_dir / "train.jsonl", pairs * 8)  # 8 steps an epoch
    for split in ("val", "test"):
        write_jsonl(data_dir / f"{split}.jsonl", pairs)
    train_tokenizer([text for pair in PAIRS for text in pair], 200, 1).save(str(data_dir / "tokenizer.json"))
    dm = TranslationDataModule(data_dir, TINY.batch_size, TINY.net.max_len)
    L.seed_everything(0)
    module = TranslatorModule(TINY, dm.vocab_size, PAD_ID)
    trainer = L.Trainer(
        max_epochs=TINY.max_epochs,
        accelerator="cpu",
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        check_val_every_n_epoch=25,
    )
    trainer.fit(module, dm)
    return module.eval(), dm


@pytest.mark.slow
def test_tiny_model_memorises_a_handful_of_pairs(trained, tmp_path):
    module, dm = trained
    sources, targets = [s for s, _ in PAIRS], [t for _, t in PAIRS]
    for method in ("greedy", "beam"):
        decoding = TINY.decoding.model_copy(update={"method": method, "beam_size": 3})
        translator = Translator(module.model, dm.tokenizer, decoding)
        assert translator.translate(sources) == targets

    result = evaluate(
        Translator(module.model, dm.tokenizer, TINY.decoding), dm.pairs["test"], tmp_path, n_samples=3, n_attention=1
    )
    assert result.metrics["test_bleu"] == pytest.approx(100.0)
    assert result.metrics["copy_baseline_bleu"] < 20
    assert list(result.tables["sample_translations"]["translation"]) == targets[:3]
    assert sorted(p.name for p in result.images) == ["attention_decoder_cross_0.png", "attention_encoder_self_0.png"]
    assert all(p.stat().st_size > 1000 for p in result.images)

    restored = TranslatorModule(TINY, dm.vocab_size, PAD_ID)  # the spine's evaluate stage: a fresh module
    restored.load_state_dict(module.state_dict())
    assert Translator(restored.eval().model, dm.tokenizer, TINY.decoding).translate(sources[:2]) == targets[:2]


@pytest.mark.slow
def test_pyfunc_round_trips_through_mlflow(trained, tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import mlflow

    module, dm = trained
    work = tmp_path / "work"
    work.mkdir()
    spec = bundle(module.model, TINY.decoding, dm.data_dir / "tokenizer.json", work, [PAIRS[0][0]])
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("translator-test", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=spec.python_model,
            artifacts=spec.artifacts,
            input_example=spec.input_example,
            code_paths=[str(Path(triad.__file__).parent)],
            pip_requirements=["torch", "tokenizers", "pandas"],  # skip the slow requirement inference
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    sources, targets = [s for s, _ in PAIRS], [t for _, t in PAIRS]
    assert list(loaded.predict(sources)) == targets
    assert list(loaded.predict(pd.DataFrame({"source": sources[:2]}))) == targets[:2]

    # concurrent requests, as the scoring server's threads make them, share a decoding batch
    # (triad.batching) and each gets its own translation; a long wait makes the sharing certain here
    monkeypatch.setenv("TRIAD_SERVE_BATCH_WAIT_MS", "2000")
    batched = mlflow.pyfunc.load_model(info.model_uri)
    with ThreadPoolExecutor(len(sources)) as pool:
        answers = list(pool.map(lambda source: list(batched.predict([source])), sources))
    assert answers == [[t] for t in targets]
    assert max(batched.unwrap_python_model().batcher.batches) > 1
    monkeypatch.delenv("TRIAD_SERVE_BATCH_WAIT_MS")

    # what the README promises: `mlflow models serve -m models:/triad-translator@champion` answers JSON
    client = mlflow.MlflowClient()
    version = mlflow.register_model(info.model_uri, "triad-translator")
    client.set_registered_model_alias("triad-translator", "champion", version.version)
    assert served_translations(f"sqlite:///{tmp_path / 'mlflow.db'}", sources[:2]) == targets[:2]


def served_translations(tracking_uri: str, sources: list[str], timeout: float = 180) -> list[str]:
    """Start `mlflow models serve` on a free loopback port, POST the sources, stop it, return its answer."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    venv_bin = Path(sys.executable).parent  # as with the venv activated: the server execs `uvicorn` from PATH
    server = subprocess.Popen(
        [
            str(venv_bin / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/triad-translator@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    raise AssertionError(
                        f"mlflow models serve did not come up:\n{server.stdout.read().decode()}"
                    ) from None
                time.sleep(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": sources}).encode(),
            headers={"Content-Type": "application/json"},
        )
        return json.loads(urllib.request.urlopen(request, timeout=60).read())["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_gate_requires_beating_the_copy_baseline():
    from triad.config import compose
    from triad.heads.translator.head import TranslatorHead

    head = TranslatorHead(compose([]))
    assert head.gate_passes({"test_bleu": 5.0, "copy_baseline_bleu": 2.0})[0]
    passes, reason = head.gate_passes({"test_bleu": 1.5, "copy_baseline_bleu": 2.0})
    assert not passes and "copy-the-source" in reason
    assert not head.gate_passes({"test_bleu": float("nan"), "copy_baseline_bleu": 2.0})[0]


def test_val_ppl_is_the_corpus_perplexity_of_the_validation_tokens():
    """exp(summed NLL / target tokens) over all batches, not the mean of per-batch perplexities, which
    differs whenever batches differ in loss or length."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    module = TranslatorModule(TINY, vocab_size=20, pad_id=PAD_ID)
    short = {"src": torch.randint(3, 20, (2, 4)), "tgt": torch.randint(3, 20, (2, 3))}
    long = {"src": torch.randint(3, 20, (3, 9)), "tgt": torch.randint(3, 20, (3, 12))}
    long["tgt"][0, 7:] = PAD_ID  # one padded target: its pads must not count as tokens
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, DataLoader([short, long], batch_size=None))

    module.eval()
    nll, tokens, per_batch = 0.0, 0, []
    with torch.no_grad():
        for batch in (short, long):
            logits = module(batch["src"], batch["tgt"][:, :-1]).flatten(0, 1)
            targets = batch["tgt"][:, 1:].flatten()
            batch_nll = F.cross_entropy(logits, targets, ignore_index=PAD_ID, reduction="sum").item()
            batch_tokens = int((targets != PAD_ID).sum())
            nll, tokens = nll + batch_nll, tokens + batch_tokens
            per_batch.append(torch.exp(torch.tensor(batch_nll / batch_tokens)).item())
    corpus = float(torch.exp(torch.tensor(nll / tokens)))
    assert trainer.callback_metrics["val_ppl"].item() == pytest.approx(corpus, rel=1e-5)
    assert corpus != pytest.approx(sum(per_batch) / 2, rel=1e-3)  # the old, per-batch mean would not pass
