"""The Transformer's parts: attention kernels, masking, caching and decoding agree with each other."""

import pytest
import torch

from triad.heads.translator.decoding import beam_search, greedy_decode, sample
from triad.heads.translator.model import (
    DecoderOnlyTransformer,
    EncoderOnlyTransformer,
    MultiHeadAttention,
    Seq2SeqTransformer,
    causal_mask,
    dropout,
    padding_mask,
    reference_attention,
    scaled_dot_product_attention,
)

PAD, BOS, EOS = 0, 1, 2


def tiny_seq2seq(**overrides) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    kwargs = dict(vocab_size=50, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0, max_len=64)
    return Seq2SeqTransformer(**(kwargs | overrides)).eval()


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
    attention = MultiHeadAttention(16, 4).eval()
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
    gpt = DecoderOnlyTransformer(vocab_size=50, d_model=32, n_heads=4, n_layers=2, max_len=32).eval()
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
    gpt = DecoderOnlyTransformer(vocab_size=50, d_model=32, n_heads=4, n_layers=2, max_len=32).eval()
    cache = gpt.new_cache()
    prefill = gpt(tgt[:, :4], cache)  # several tokens at once, then one at a time
    rest = [gpt(tgt[:, t : t + 1], cache) for t in range(4, 7)]
    torch.testing.assert_close(torch.cat([prefill, *rest], dim=1), gpt(tgt), rtol=1e-5, atol=1e-5)


def test_beam_search_of_width_one_is_greedy():
    model = tiny_seq2seq()
    src = padded_sources()
    greedy = greedy_decode(model, src, BOS, EOS, max_len_a=1.0, max_len_b=6)
    beam = beam_search(model, src, BOS, EOS, beam_size=1, max_len_a=1.0, max_len_b=6)
    assert beam == greedy
    assert all(len(h) <= 15 for h in greedy) and any(len(h) > 0 for h in greedy)


def test_wider_beam_finds_hypotheses_at_least_as_likely():
    """Without a length penalty, beam search maximises log P(Y|X), so width 4 never does worse than 1."""
    model = tiny_seq2seq(vocab_size=12)
    src = padded_sources() % 12
    src[1, 5:] = PAD

    def log_prob(source, hypothesis):
        tgt = torch.tensor([[BOS] + hypothesis + [EOS]])
        logp = model(source[None], tgt[:, :-1]).log_softmax(-1)
        return logp[0].gather(1, tgt[0, 1:, None]).sum().item()

    narrow = beam_search(model, src, BOS, EOS, beam_size=1, alpha=0.0, max_len_a=0.0, max_len_b=8)
    wide = beam_search(model, src, BOS, EOS, beam_size=4, alpha=0.0, max_len_a=0.0, max_len_b=8)
    for i in range(2):
        source = src[i][src[i] != PAD]
        if len(narrow[i]) < 8 and len(wide[i]) < 8:  # both finished with EOS within the budget
            assert log_prob(source, wide[i]) >= log_prob(source, narrow[i]) - 1e-4


def test_sampling_respects_top_k_and_is_reproducible():
    torch.manual_seed(0)
    gpt = DecoderOnlyTransformer(vocab_size=50, d_model=32, n_heads=4, n_layers=2, max_len=32).eval()
    prompt = torch.randint(0, 50, (3, 4))
    first = sample(gpt, prompt, 6, temperature=0.8, top_p=0.9, generator=torch.Generator().manual_seed(1))
    again = sample(gpt, prompt, 6, temperature=0.8, top_p=0.9, generator=torch.Generator().manual_seed(1))
    assert first.shape == (3, 10) and torch.equal(first, again) and torch.equal(first[:, :4], prompt)
    greedy = sample(gpt, prompt, 6, top_k=1, generator=torch.Generator().manual_seed(2))
    tokens = prompt
    for _ in range(6):  # top_k=1 is greedy decoding without a cache
        tokens = torch.cat([tokens, gpt(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(greedy, tokens)


def test_encoder_only_backbone_gives_features_that_ignore_padding():
    torch.manual_seed(0)
    encoder = EncoderOnlyTransformer(vocab_size=50, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0).eval()
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
