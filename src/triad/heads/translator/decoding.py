"""Turning a trained model into text: greedy and beam search for translation, sampling for the
decoder-only model, and ``Translator``, which wraps model + tokenizer into ``translate(sentences)``.

All algorithms are batched and decode incrementally with a key/value cache (``DecoderCache``):
each step feeds only the newest token through the decoder.

Greedy and beam search take repetition guards (``Guards``), applied to every step's logits before
the next token is chosen, for every row of the batch at once:

- ``no_repeat_ngram_size`` n: a token that would complete an n-gram already in the hypothesis is
  banned (its logit set to -inf), as Hugging Face ``generate`` does;
- ``repetition_penalty`` p (Keskar et al., 2019, CTRL): the logit of every token already generated
  is divided by p where positive and multiplied by p where negative, so it loses probability.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
from torch import Tensor

from triad.errors import ConfigError
from triad.heads.translator.config import DecodingConfig
from triad.heads.translator.model import DecoderOnlyTransformer, Seq2SeqTransformer


def _strip(tokens: list[int], eos_id: int) -> list[int]:
    """Hypothesis ids without the leading BOS, cut before the first EOS (callers first cut a row to
    BOS + its budget, dropping the padding a sentence gets once its budget is spent)."""
    tokens = tokens[1:]
    return tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens


@dataclass(frozen=True)
class Guards:
    """Repetition guards for greedy and beam search; the defaults switch both off.

    ``no_repeat_ngram_size``: 0 (off) or n >= 1, no n-gram occurs twice in a hypothesis.
    ``repetition_penalty``: 1.0 (off) or p > 1, the CTRL penalty on tokens already generated.
    """

    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(f"no_repeat_ngram_size must be 0 (off) or more, got {self.no_repeat_ngram_size}")
        if not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0):
            raise ConfigError(f"repetition_penalty must be a positive number (1.0: off), got {self.repetition_penalty}")

    @classmethod
    def of(cls, decoding: DecodingConfig) -> Guards:
        """The guards a ``model.translator.decoding`` section sets."""
        return cls(decoding.no_repeat_ngram_size, decoding.repetition_penalty)

    @property
    def off(self) -> bool:
        return self.no_repeat_ngram_size == 0 and self.repetition_penalty == 1.0


def apply_repetition_penalty(logits: Tensor, generated: Tensor, penalty: float) -> Tensor:
    """CTRL's repetition penalty: logits (N, V) of the tokens that occur in ``generated`` (N, T) of the
    same row are divided by ``penalty`` where positive and multiplied by it where negative. Returns (N, V)."""
    if penalty == 1.0 or generated.size(1) == 0:
        return logits
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, generated, True)
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def banned_ngram_tokens(tokens: Tensor, n: int, vocab_size: int) -> Tensor:
    """(N, V) True where the next token would complete an n-gram that ``tokens`` (N, T) already holds.

    Every n-gram of a row is a window of n tokens; those whose first n - 1 tokens equal the row's last
    n - 1 tokens ban their last token. All rows and windows at once: no Python loop over the batch.
    """
    banned = torch.zeros(tokens.size(0), vocab_size + 1, dtype=torch.bool, device=tokens.device)
    if n < 1 or tokens.size(1) < n:
        return banned[:, :vocab_size]
    windows = tokens.unfold(1, n, 1)  # (N, W, n): every n-gram of every row
    prefix = tokens[:, tokens.size(1) - (n - 1) :]  # (N, n - 1): what the next token would extend
    matches = (windows[:, :, : n - 1] == prefix.unsqueeze(1)).all(-1)  # (N, W)
    # Each matching window bans its last token; the others write to a spare column dropped below.
    targets = torch.where(matches, windows[:, :, -1], vocab_size)
    return banned.scatter_(1, targets, True)[:, :vocab_size]


def guard_logits(logits: Tensor, tokens: Tensor, guards: Guards | None) -> Tensor:
    """Apply ``guards`` to one step's logits (N, V), given each row's tokens so far (N, T), BOS first.

    The penalty counts the generated tokens (BOS excluded); the n-gram ban reads the whole row. An EOS
    is never banned (a hypothesis that holds one has ended), so every row keeps a finite logit.
    """
    if guards is None or guards.off:
        return logits
    logits = apply_repetition_penalty(logits, tokens[:, 1:], guards.repetition_penalty)
    if guards.no_repeat_ngram_size:
        banned = banned_ngram_tokens(tokens, guards.no_repeat_ngram_size, logits.size(-1))
        logits = logits.masked_fill(banned, float("-inf"))
    return logits


def _budgets(model: Seq2SeqTransformer, src: Tensor, max_len_a: float, max_len_b: int) -> Tensor:
    """Each sentence's target length budget (B,): a * (its source length) + b, within the model's
    positional table. Per sentence, so that a translation never depends on what else is in the batch."""
    src_len = (src != model.pad_id).sum(1)
    return (max_len_a * src_len + max_len_b).long().clamp(max=model.tgt_position.max_len - 1)


@torch.no_grad()
def greedy_decode(
    model: Seq2SeqTransformer,
    src: Tensor,
    bos_id: int,
    eos_id: int,
    max_len_a: float,
    max_len_b: int,
    guards: Guards | None = None,
) -> list[list[int]]:
    """The most likely next token at every step (after ``guards``). src (B, S) -> B lists of target ids
    (no BOS/EOS)."""
    memory, src_mask, _ = model.encode(src)
    cache = model.new_cache()
    tokens = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    budgets = _budgets(model, src, max_len_a, max_len_b)
    for step in range(int(budgets.max())):
        finished |= budgets <= step  # this sentence's budget is spent
        logits = model.decode(tokens[:, -1:], memory, src_mask, cache)[:, -1]
        logits = guard_logits(logits.float(), tokens, guards)
        next_token = logits.argmax(-1).masked_fill(finished, model.pad_id)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished |= next_token == eos_id
        if finished.all():
            break
    return [_strip(row[: 1 + budget], eos_id) for row, budget in zip(tokens.tolist(), budgets.tolist())]


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty lp(Y) = ((5 + |Y|) / 6) ^ alpha (Wu et al., 2016); scores are log P / lp."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    model: Seq2SeqTransformer,
    src: Tensor,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    alpha: float,
    max_len_a: float,
    max_len_b: int,
    guards: Guards | None = None,
) -> list[list[int]]:
    """Keep the ``beam_size`` best partial translations of every sentence. src (B, S) -> B id lists.

    Hypotheses are ranked by log P(Y | X) / lp(|Y|), where each step's P is the softmax of the logits
    after ``guards`` (a banned token has probability 0; a penalised one less). A finished hypothesis
    (it emitted EOS) stays in its beam with a frozen score and competes with the unfinished ones until
    every beam of every sentence has finished or its length budget is spent; the best-ranked beam is
    returned.
    With ``beam_size=1`` this is exactly ``greedy_decode`` with the same guards.
    """
    batch, k = src.size(0), beam_size
    memory, src_mask, _ = model.encode(src)
    memory = memory.repeat_interleave(k, dim=0)  # (B*K, S, D): beam j of sentence b is row b*K + j
    src_mask = src_mask.repeat_interleave(k, dim=0)
    cache = model.new_cache()
    device = src.device

    tokens = torch.full((batch * k, 1), bos_id, dtype=torch.long, device=device)
    log_probs = torch.zeros(batch, k, device=device)
    log_probs[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    lengths = torch.zeros(batch, k, device=device)
    finished = torch.zeros(batch, k, dtype=torch.bool, device=device)
    budgets = _budgets(model, src, max_len_a, max_len_b)
    for t in range(int(budgets.max())):
        finished |= (budgets <= t).unsqueeze(1)  # a sentence whose budget is spent keeps its beams as they are
        logits = model.decode(tokens[:, -1:], memory, src_mask, cache)[:, -1]  # (B*K, V)
        step = guard_logits(logits.float(), tokens, guards).log_softmax(-1).view(batch, k, -1)
        vocab = step.size(-1)
        # A finished beam may only continue with padding, at no cost.
        step[finished] = float("-inf")
        step[..., model.pad_id] = torch.where(finished, 0.0, step[..., model.pad_id])

        candidates = (log_probs.unsqueeze(-1) + step).view(batch, k * vocab)
        candidate_lengths = (lengths + (~finished).float()).unsqueeze(-1).expand(-1, -1, vocab).reshape(batch, -1)
        ranking = candidates / length_penalty(candidate_lengths, alpha)
        _, best = ranking.topk(k, dim=-1)  # (B, K) indices into K * V
        beam, next_token = best // vocab, best % vocab

        rows = (beam + torch.arange(batch, device=device).unsqueeze(1) * k).view(-1)
        log_probs = candidates.gather(1, best)
        lengths = candidate_lengths.gather(1, best)
        finished = finished.gather(1, beam) | (next_token == eos_id)
        tokens = torch.cat([tokens[rows], next_token.view(-1, 1)], dim=1)
        cache.reorder(rows)
        if finished.all():
            break
    final = (log_probs / length_penalty(lengths, alpha)).argmax(-1)  # (B,)
    chosen = tokens.view(batch, k, -1)[torch.arange(batch, device=device), final]
    return [_strip(row[: 1 + budget], eos_id) for row, budget in zip(chosen.tolist(), budgets.tolist())]


def _check_sampling(
    model: DecoderOnlyTransformer,
    prompt: Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
) -> None:
    """Raise ``ConfigError`` for settings that ``sample`` cannot honour, before any work is done."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature must be a positive number, got {temperature}; use top_k=1 for greedy decoding")
    if top_k is not None and top_k < 0:
        raise ConfigError(f"top_k must be None or 0 (both: off) or a positive number of tokens, got {top_k}")
    if top_p is not None and not top_p >= 0:  # also refuses NaN
        raise ConfigError(f"top_p must be None or a probability in [0, 1] (1 or more: off), got {top_p}")
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be 0 or more, got {max_new_tokens}")
    # The last new token is never fed back, so the model sees prompt + max_new_tokens - 1 positions.
    positions = prompt.size(1) + max_new_tokens - 1
    if max_new_tokens > 0 and positions > model.max_len:
        raise ConfigError(
            f"a prompt of {prompt.size(1)} tokens continued by {max_new_tokens} new tokens needs {positions} "
            f"positions, more than the model's max_len ({model.max_len}): lower max_new_tokens to "
            f"{model.max_len - prompt.size(1) + 1} or less, or shorten the prompt"
        )


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to -inf the logits (B, V) of tokens outside the top-k and outside the nucleus.

    The nucleus is the smallest set of likeliest tokens whose probability reaches ``top_p``
    (Holtzman et al., 2020). ``top_k`` None or 0 and ``top_p`` None or >= 1 switch a filter off;
    the likeliest token is always kept, so ``top_p=0`` is greedy. Returns (B, V).
    """
    if top_k:
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        mass_before = probs.cumsum(-1) - probs  # probability of the likelier tokens
        drop_sorted = mass_before >= top_p
        drop_sorted[:, 0] = False  # the likeliest token stays whatever top_p is
        logits = logits.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
    return logits


@torch.no_grad()
def sample(
    model: DecoderOnlyTransformer,
    prompt: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Continue ``prompt`` (B, T) by sampling from a decoder-only model; returns (B, T + max_new_tokens).

    ``temperature`` (> 0) divides the logits; small values approach greedy decoding. ``top_k`` and
    ``top_p`` restrict each draw as in ``filter_logits``. Raises ``ConfigError`` for invalid settings
    or when prompt + new tokens would not fit in the model's ``max_len``.
    """
    _check_sampling(model, prompt, max_new_tokens, temperature, top_k, top_p)
    cache = model.new_cache()
    tokens, new = prompt, prompt
    for _ in range(max_new_tokens):
        logits = model(new, cache)[:, -1].float()  # (B, V)
        # Shift so the largest logit is 0: a tiny temperature then sends the others to -inf, never NaN.
        logits = (logits - logits.max(-1, keepdim=True).values) / temperature
        logits = filter_logits(logits, top_k, top_p)
        new = torch.multinomial(logits.softmax(-1), 1, generator=generator)
        tokens = torch.cat([tokens, new], dim=1)
    return tokens


class Translator:
    """Sentences in, sentences out: tokenizer + ``Seq2SeqTransformer`` + a decoding algorithm
    (``decoding``: ``model.translator.decoding``).

    The tokenizer is a HF ``tokenizers.Tokenizer`` with ``[PAD]``, ``[BOS]``, ``[EOS]`` specials.
    A source is encoded as its subword ids followed by EOS, as in training.
    """

    def __init__(self, model: Seq2SeqTransformer, tokenizer, decoding: DecodingConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.decoding = decoding
        self.bos_id = tokenizer.token_to_id("[BOS]")
        self.eos_id = tokenizer.token_to_id("[EOS]")

    def encode_sources(self, sentences: list[str]) -> Tensor:
        """(B, S) padded source ids, each row ending in EOS, truncated to the model's max_len."""
        limit = self.model.src_position.max_len - 1
        rows = [enc.ids[:limit] + [self.eos_id] for enc in self.tokenizer.encode_batch(sentences)]
        width = max(len(row) for row in rows)
        batch = torch.full((len(rows), width), self.model.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            batch[i, : len(row)] = torch.tensor(row)
        return batch

    def translate(self, sentences: list[str], progress: bool = False) -> list[str]:
        from tqdm.auto import tqdm

        self.model.eval()
        device = next(self.model.parameters()).device
        cfg = self.decoding
        # Decode in order of length so that each batch pads little; return in the input order.
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        out: list[str] = [""] * len(sentences)
        starts = range(0, len(order), cfg.batch_size)
        for start in tqdm(starts, desc="translate", disable=not (progress and sys.stderr.isatty())):
            index = order[start : start + cfg.batch_size]
            src = self.encode_sources([sentences[i] for i in index]).to(device)
            guards = Guards.of(cfg)
            if cfg.method == "greedy":
                hyps = greedy_decode(self.model, src, self.bos_id, self.eos_id, cfg.max_len_a, cfg.max_len_b, guards)
            else:
                hyps = beam_search(
                    self.model,
                    src,
                    self.bos_id,
                    self.eos_id,
                    cfg.beam_size,
                    cfg.length_penalty,
                    cfg.max_len_a,
                    cfg.max_len_b,
                    guards,
                )
            for i, text in zip(index, self.tokenizer.decode_batch(hyps)):
                out[i] = text
        return out
