"""The benchmark's model-FLOP count for the translation model agrees with PyTorch's FLOP counter on a
real training step, so the MFU it prints is neither doubled nor halved."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tests.heads.test_translator_model import tiny_config
from triad.heads.translator import model as model_module
from triad.heads.translator.model import Seq2SeqTransformer

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from translator_throughput import seq2seq_training_flops  # noqa: E402


def counted_training_flops(model: Seq2SeqTransformer, src_len: int, tgt_len: int) -> int:
    """Matrix-multiply FLOPs of the forward and backward pass of one sentence pair, as torch counts them."""
    src = torch.randint(3, 100, (1, src_len))
    tgt = torch.randint(3, 100, (1, tgt_len + 1))
    with FlopCounterMode(display=False) as counter:
        logits = model(src, tgt[:, :-1])
        F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten()).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("src_len, tgt_len, tie", [(12, 12, True), (40, 6, True), (5, 48, False)])
def test_seq2seq_flop_count_matches_torch_flop_counter(src_len, tgt_len, tie, monkeypatch):
    # torch's counter does not see the fused CPU attention kernel: attend through the plain matmuls
    fused = model_module.scaled_dot_product_attention
    monkeypatch.setattr(
        model_module,
        "scaled_dot_product_attention",
        lambda q, k, v, mask=None, is_causal=False, dropout_p=0.0, need_weights=False: fused(
            q, k, v, mask, is_causal, dropout_p, need_weights=True
        ),
    )
    torch.manual_seed(0)
    model = Seq2SeqTransformer(tiny_config(vocab_size=100, n_encoder_layers=3, tie_embeddings=tie))
    # torch counts matrix multiplies only; the count charges every trainable parameter. Freezing the
    # vectors (biases, layer-norm gains) leaves the matrices on both sides, so the two must agree exactly.
    for parameter in model.parameters():
        parameter.requires_grad_(parameter.dim() > 1)
    assert seq2seq_training_flops(model, src_len, tgt_len) == counted_training_flops(model, src_len, tgt_len)
