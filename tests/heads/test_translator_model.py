"""The Transformer's parts: attention kernels, masking, caching and decoding agree with each other."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from triad.errors import ConfigError
from triad.heads.translator.decoding import beam_search, filter_logits, greedy_decode, sample
from triad.heads.translator.model import (
    DecoderOnlyTransformer,
    EncoderOnlyTransformer,
    MultiHeadAttention,
    Seq2SeqTransformer,
    TransformerConfig,
    causal_mask,
    dropout,
    padding_mask,
    reference_attention,
    scaled_dot_product_attention,
)

PAD, BOS, EOS = 0, 1, 2


def tiny_config(**overrides) -> TransformerConfig:
    """A small pre-norm encoder-decoder's shape; ``overrides`` replace fields."""
    config = TransformerConfig(
        vocab_size=50,
        d_model=32,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=64,
        dropout=0.0,
        norm_first=True,
        positional="sinusoidal",
        max_len=64,
        tie_embeddings=True,
        pad_id=PAD,
        activation="relu",
    )
    return replace(config, **overrides)


def tiny_seq2seq(**overrides) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    return Seq2SeqTransformer(tiny_config(**overrides)).eval()


def gpt_config() -> TransformerConfig:
    """A small GPT: no encoder, GELU feed-forward 4 * d_model wide, learned positions, no padding row."""
    return tiny_config(n_encoder_layers=0, d_ff=128, max_len=32, positional="learned", pad_id=None, activation="gelu")


def padded_sources() -> torch.Tensor:
    """Two source sentences of different lengths, the shorter right-padded."""
    torch.manual_seed(1)
    src = torch.randint(3, 50, (2, 9))
    src[1, 5:] = PAD
    return src


def test_fast_attention_equals_reference_with_padding_and_causal_masks():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 7, 8), torch.randn(3, 2, 7, 8), torch.randn(3, 2, 7, 8)
    keep = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    keep[1, ..., 4:] = False
    for mask, is_causal in [(None, False), (keep, False), (None, True), (keep, True)]:
        fast, _ = scaled_dot_product_attention(q, k, v, mask, is_causal)
        full_mask = keep if mask is not None else None
        if is_causal:
            full_mask = causal_mask(7, 7) if full_mask is None else full_mask & causal_mask(7, 7)
        slow, weights = reference_attention(q, k, v, full_mask)
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 7))
    assert weights[1, :, :, 4:].abs().max() == 0  # padded keys get no weight


def test_cross_attention_fast_path_equals_weights_path():
    torch.manual_seed(0)
    attention = MultiHeadAttention(tiny_config(d_model=16, n_heads=4)).eval()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 9, 16)  # T=5 queries over S=9 keys
    keep = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    keep[0, ..., 6:] = False
    fast, none = attention(x, memory, mask=keep)
    slow, weights = attention(x, memory, mask=keep, need_weights=True)
    assert none is None and weights.shape == (2, 4, 5, 9)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    assert weights[0, ..., 6:].abs().max() == 0


def test_dropout_zeroes_a_share_p_and_scales_the_rest_like_torch():
    torch.manual_seed(0)
    x = torch.rand(200_000) + 0.5  # no zeros of its own
    x.requires_grad_(True)
    y = dropout(x, 0.1)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - 0.1) < 0.005  # 0.1 +- 7 standard errors
    torch.testing.assert_close(y[~dropped], x[~dropped] / 0.9)
    y.sum().backward()
    assert x.grad[dropped].abs().max() == 0
    torch.testing.assert_close(x.grad[~dropped], torch.full_like(x.grad[~dropped], 1 / 0.9))
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0) is x
    assert dropout(x, 1.0).abs().max() == 0
    torch.manual_seed(3)
    first = dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.5))  # seeded like every torch draw


def test_attention_with_dropout_keeps_masks_and_its_mean_is_the_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8)
    exact, _ = scaled_dot_product_attention(q, k, v, is_causal=True)
    v_future = v.clone()
    v_future[:, :, 4:] += 10.0  # keys 4 and 5 are in the future of queries 0..3
    draws, draws_future = [], []
    for seed in range(2000):
        torch.manual_seed(seed)
        out, none = scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.2)
        torch.manual_seed(seed)
        draws_future.append(scaled_dot_product_attention(q, k, v_future, is_causal=True, dropout_p=0.2)[0])
        draws.append(out)
    assert none is None  # weights only when asked
    torch.testing.assert_close(torch.stack(draws_future)[:, :, :, :4], torch.stack(draws)[:, :, :, :4])
    torch.testing.assert_close(torch.stack(draws).mean(0), exact, atol=0.1, rtol=0)  # dropout is unbiased
    assert not torch.allclose(draws[0], exact, atol=0.01)


def test_causal_mask_aligns_queries_with_the_last_keys():
    assert causal_mask(3, 3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(1, 4).tolist() == [[True, True, True, True]]  # one new token sees the cache


def test_changing_a_future_token_never_changes_earlier_outputs():
    model = tiny_seq2seq()
    src = padded_sources()
    tgt = torch.randint(3, 50, (2, 8))
    changed = tgt.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 50
    before, after = model(src, tgt), model(src, changed)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])

    torch.manual_seed(0)
    gpt = DecoderOnlyTransformer(gpt_config()).eval()
    torch.testing.assert_close(gpt(tgt)[:, :5], gpt(changed)[:, :5])


def test_padding_in_the_source_does_not_change_the_translation_logits():
    model = tiny_seq2seq()
    src = padded_sources()
    tgt = torch.randint(3, 50, (1, 6))
    alone = model(src[1:, :5], tgt)
    padded = model(src[1:], tgt)
    torch.testing.assert_close(alone, padded, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_first, positional", [(True, "sinusoidal"), (False, "learned")])
def test_cached_decoder_equals_uncached(norm_first, positional):
    model = tiny_seq2seq(norm_first=norm_first, positional=positional, tie_embeddings=False)
    src = padded_sources()
    tgt = torch.randint(3, 50, (2, 7))
    full = model(src, tgt)
    memory, src_mask, _ = model.encode(src)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, t : t + 1], memory, src_mask, cache) for t in range(tgt.size(1))]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)

    torch.manual_seed(0)
    gpt = DecoderOnlyTransformer(gpt_config()).eval()
    cache = gpt.new_cache()
    prefill = gpt(tgt[:, :4], cache)  # several tokens at once, then one at a time
    rest = [gpt(tgt[:, t : t + 1], cache) for t in range(4, 7)]
    torch.testing.assert_close(torch.cat([prefill, *rest], dim=1), gpt(tgt), rtol=1e-5, atol=1e-5)


def eos_biased_seq2seq(eos_bias: float, sharpness: float = 1.0, vocab_size: int = 7) -> Seq2SeqTransformer:
    """A tiny untied model whose logits are scaled by ``sharpness`` and whose EOS logit gets ``eos_bias``.

    The bias sets how soon hypotheses end with EOS. Flat distributions (sharpness 1) make the best
    beam change lineage, which shows a cache that is not reordered; sharper ones make the length
    penalty change which hypothesis wins.
    """
    model = tiny_seq2seq(vocab_size=vocab_size, tie_embeddings=False)
    generator = nn.Linear(model.generator.in_features, vocab_size)
    with torch.no_grad():
        generator.weight.copy_(sharpness * model.generator.weight)
        generator.bias.zero_()
        generator.bias[EOS] = eos_bias
    model.generator = generator
    return model


def small_vocab_sources(vocab_size: int = 7) -> torch.Tensor:
    """Three sources (B=3, S=9) of ids 3 .. V-1, two of them right-padded to lengths 5 and 3."""
    torch.manual_seed(1)
    src = torch.randint(3, vocab_size, (3, 9))
    src[1, 5:] = PAD
    src[2, 3:] = PAD
    return src


def reference_beam_search(
    model, source: torch.Tensor, beam_size: int, alpha: float, steps: int, adjust=None
) -> list[int]:
    """Beam search for one unpadded source (S,), written plainly and without a cache.

    A hypothesis is (tokens, log P, finished). Each step every unfinished hypothesis is extended by
    every vocabulary entry (its prefix re-run through the whole model); finished ones are carried
    over unchanged. The ``beam_size`` best by log P / ((5 + n) / 6) ** alpha survive, where n counts
    the generated tokens, EOS included. The best survivor is returned without BOS and EOS.
    ``adjust(tokens, logits) -> logits``, if given, changes a hypothesis's next-token logits first.
    """

    def score(hypothesis):
        tokens, log_p, _ = hypothesis
        return log_p / ((5 + len(tokens) - 1) / 6) ** alpha

    beams = [([BOS], 0.0, False)]
    for _ in range(steps):
        candidates = [beam for beam in beams if beam[2]]
        for tokens, log_p, finished in beams:
            if not finished:
                logits = model(source[None], torch.tensor([tokens]))[0, -1].float()
                step = (adjust(tokens, logits.clone()) if adjust else logits).log_softmax(-1)
                candidates += [(tokens + [v], log_p + step[v].item(), v == EOS) for v in range(step.numel())]
        beams = sorted(candidates, key=score, reverse=True)[:beam_size]
        if all(finished for _, _, finished in beams):
            break
    tokens = max(beams, key=score)[0][1:]
    return tokens[: tokens.index(EOS)] if EOS in tokens else tokens


@pytest.mark.parametrize("sharpness, eos_bias", [(1.0, -1.0), (1.0, -0.5), (3.0, -1.0), (3.0, 0.0)])
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_batched_cached_beam_search_equals_a_plain_reference(alpha, sharpness, eos_bias):
    model = eos_biased_seq2seq(eos_bias, sharpness)
    src = small_vocab_sources()
    for beam_size in (2, 3):
        batched = beam_search(model, src, BOS, EOS, beam_size=beam_size, alpha=alpha, max_len_a=0.0, max_len_b=6)
        plain = [reference_beam_search(model, row[row != PAD], beam_size, alpha, steps=6) for row in src]
        assert batched == plain, f"beam_size={beam_size}"


def test_beam_search_of_width_one_is_greedy():
    model = eos_biased_seq2seq(eos_bias=-0.5)
    src = small_vocab_sources()
    greedy = greedy_decode(model, src, BOS, EOS, max_len_a=0.0, max_len_b=8)
    beam = beam_search(model, src, BOS, EOS, beam_size=1, alpha=0.6, max_len_a=0.0, max_len_b=8)
    assert beam == greedy
    assert len({len(h) for h in greedy}) > 1, "hypotheses should end at different lengths"
    assert min(len(h) for h in greedy) < 8, "some hypothesis should end with EOS within the budget"


@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_a_translation_does_not_depend_on_the_rest_of_the_batch(decode):
    """Each sentence has its own length budget (a * its length + b): decoded alone or beside a longer
    one, a short sentence gets the same hypothesis. EOS is made rare so that hypotheses run to the budget."""
    model = eos_biased_seq2seq(eos_bias=-20.0)
    src = small_vocab_sources()  # source lengths 9, 5, 3: budgets 1.0 * length + 2 = 11, 7, 5

    def run(rows):
        if decode == "greedy":
            return greedy_decode(model, rows, BOS, EOS, max_len_a=1.0, max_len_b=2)
        return beam_search(model, rows, BOS, EOS, beam_size=3, alpha=0.6, max_len_a=1.0, max_len_b=2)

    together = run(src)
    alone = [run(src[i : i + 1, : int((src[i] != PAD).sum())])[0] for i in range(3)]
    assert together == alone
    assert [len(h) for h in together] == [11, 7, 5]


def test_sampling_respects_top_k_and_is_reproducible():
    torch.manual_seed(0)
    gpt = DecoderOnlyTransformer(gpt_config()).eval()
    prompt = torch.randint(0, 50, (3, 4))
    first = sample(gpt, prompt, 6, temperature=0.8, top_p=0.9, generator=torch.Generator().manual_seed(1))
    again = sample(gpt, prompt, 6, temperature=0.8, top_p=0.9, generator=torch.Generator().manual_seed(1))
    assert first.shape == (3, 10) and torch.equal(first, again) and torch.equal(first[:, :4], prompt)
    greedy = sample(gpt, prompt, 6, top_k=1, generator=torch.Generator().manual_seed(2))
    tokens = prompt
    for _ in range(6):  # top_k=1 is greedy decoding without a cache
        tokens = torch.cat([tokens, gpt(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(greedy, tokens)


def tiny_gpt() -> DecoderOnlyTransformer:
    torch.manual_seed(0)
    return DecoderOnlyTransformer(gpt_config()).eval()


def uncached_greedy(gpt: DecoderOnlyTransformer, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    tokens = prompt
    for _ in range(steps):
        tokens = torch.cat([tokens, gpt(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


@pytest.mark.parametrize(
    "setting, match",
    [
        (dict(temperature=0.0), "temperature must be a positive number, got 0.0"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(top_k=-1), "top_k must be None or 0"),
        (dict(top_p=-0.1), "top_p must be None or a probability"),
        (dict(top_p=float("nan")), "top_p"),
        (dict(max_new_tokens=-1), "max_new_tokens must be 0 or more"),
        (
            dict(max_new_tokens=30),
            "needs 33 positions, more than the model's max_len \\(32\\): lower max_new_tokens to 29",
        ),
    ],
)
def test_sampling_settings_that_cannot_work_are_refused_up_front(setting, match):
    gpt, prompt = tiny_gpt(), torch.randint(0, 50, (2, 4))
    with pytest.raises(ConfigError, match=match):
        sample(gpt, prompt, **(dict(max_new_tokens=6) | setting))


def test_sampling_fills_the_context_exactly():
    gpt, prompt = tiny_gpt(), torch.randint(0, 50, (2, 4))
    assert sample(gpt, prompt, 29, generator=torch.Generator().manual_seed(0)).shape == (2, 33)
    assert torch.equal(sample(gpt, prompt, 0), prompt)


@pytest.mark.parametrize(
    "setting", [dict(temperature=1e-40), dict(top_p=0.0), dict(top_p=1e-9), dict(top_k=1, top_p=0.0)]
)
def test_settings_that_leave_one_token_sample_greedily(setting):
    gpt, prompt = tiny_gpt(), torch.randint(0, 50, (3, 4))
    tokens = sample(gpt, prompt, 6, generator=torch.Generator().manual_seed(2), **setting)
    assert torch.equal(tokens, uncached_greedy(gpt, prompt, 6))


@pytest.mark.parametrize(
    "off, none",
    [(dict(top_k=0), dict(top_k=None)), (dict(top_p=1.0), dict(top_p=None)), (dict(top_p=1.5), dict(top_p=None))],
)
def test_top_k_zero_and_top_p_of_one_switch_filtering_off(off, none):
    gpt, prompt = tiny_gpt(), torch.randint(0, 50, (3, 4))
    first = sample(gpt, prompt, 6, generator=torch.Generator().manual_seed(3), **off)
    second = sample(gpt, prompt, 6, generator=torch.Generator().manual_seed(3), **none)
    assert torch.equal(first, second)
    # One very likely token: float32 cumulative probabilities reach 1 long before the last token.
    peaked = torch.cat([torch.tensor([[40.0]]), torch.zeros(1, 999)], dim=1)
    assert torch.equal(filter_logits(peaked, **off), peaked)


def test_the_nucleus_is_the_smallest_set_reaching_top_p():
    logits = torch.tensor([[0.05, 0.5, 0.15, 0.3]]).log()
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p))[0].tolist()  # noqa: E731
    assert kept(0.4) == [False, True, False, False]
    assert kept(0.7) == [False, True, False, True]
    assert kept(0.9) == [False, True, True, True]
    assert kept(0.0) == [False, True, False, False]
    assert torch.isfinite(filter_logits(logits, top_k=2))[0].tolist() == [False, True, False, True]


def test_encoder_only_backbone_gives_features_that_ignore_padding():
    torch.manual_seed(0)
    encoder = EncoderOnlyTransformer(tiny_config(n_decoder_layers=0, max_len=512)).eval()
    src = padded_sources()
    assert encoder(src).shape == (2, 9, 32) and encoder.feature_dim == 32
    torch.testing.assert_close(encoder.pooled(src[1:])[0], encoder.pooled(src[1:, :5])[0], rtol=1e-5, atol=1e-5)
    assert padding_mask(src, PAD).shape == (2, 1, 1, 9)


def test_attention_maps_have_one_map_per_layer_and_rows_that_sum_to_one():
    model = tiny_seq2seq()
    src, tgt = padded_sources(), torch.randint(3, 50, (2, 6))
    maps = model.attention_maps(src, tgt)
    assert [w.shape for w in maps["encoder_self"]] == [(2, 4, 9, 9)] * 2
    assert [w.shape for w in maps["decoder_cross"]] == [(2, 4, 6, 9)] * 2
    torch.testing.assert_close(maps["decoder_cross"][0].sum(-1), torch.ones(2, 4, 6))
    assert maps["decoder_self"][0][0, :, 0, 1:].abs().max() == 0  # the first target sees only itself
