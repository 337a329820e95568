"""Overrides that shrink each head to seconds: tiny data, tiny models, one short epoch."""

TINY = {
    "translator": [
        "data.translator.max_train_pairs=300",
        "data.translator.max_eval_pairs=16",
        "data.translator.vocab_size=300",
        "model.translator.max_epochs=1",
        "model.translator.batch_size=32",
        "model.translator.net.d_model=32",
        "model.translator.net.n_heads=2",
        "model.translator.net.d_ff=64",
        "model.translator.net.n_encoder_layers=1",
        "model.translator.net.n_decoder_layers=1",
        "model.translator.decoding.method=greedy",
        "model.translator.n_sample_translations=3",
        "model.translator.n_attention_examples=1",
        "model.translator.lm.d_model=32",
        "model.translator.lm.n_heads=2",
        "model.translator.lm.n_layers=1",
        "model.translator.lm.max_epochs=1",
        "model.translator.lm.n_samples=2",
        "model.translator.lm.max_new_tokens=5",
    ],
    "diffusion": [
        "model.diffusion.max_steps=20",
        "model.diffusion.eval_samples=20",
        "model.diffusion.eval_steps=[5]",
        "model.diffusion.sample_steps=5",
        "model.diffusion.judge.epochs=1",
        "model.diffusion.grid_every_n_epochs=0",
    ],
    "transfer": [
        "data.transfer.labels_per_class=2",
        "data.transfer.val_per_class=5",
        "data.transfer.test_per_class=10",
        "model.transfer.max_epochs=1",
        "model.transfer.evidence.fractions=[0.1]",
        "model.transfer.evidence.seeds=[0]",
        "model.transfer.evidence.pool_per_class=10",
        "model.transfer.evidence.max_epochs=1",
        "model.transfer.pretrain.steps=2",
        "model.transfer.pretrain.batch_size=8",
        "model.transfer.pretrain.hidden_dim=16",
        "model.transfer.pretrain.projection_dim=8",
    ],
    "spread": [
        "data.spread.train_graphs=6",
        "data.spread.val_graphs=2",
        "data.spread.test_graphs=1",
        "data.spread.real_graphs=[florentine_families]",
        "data.spread.test_nodes.low=30",
        "data.spread.test_nodes.high=40",
        "data.spread.examples_per_graph=3",
        "data.spread.train_samples=100",
        "data.spread.test_samples=200",
        "model.spread.hidden=8",
        "model.spread.iterations=2",
        "model.spread.max_epochs=1",
        "model.spread.influence.graph=florentine_families",
        "model.spread.influence.k=2",
        "model.spread.influence.greedy_samples=20",
        "model.spread.influence.score_samples=100",
    ],
}


def tiny(*heads: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Overrides for a pipeline of ``heads`` only, each shrunk, without progress bars."""
    overrides = [
        f"pipeline.heads=[{','.join(heads)}]",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=2",
    ]
    for head in heads:
        overrides += TINY[head]
    return overrides + list(extra)
