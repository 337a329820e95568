"""Text generation: a decoder-only (GPT-style) Transformer trained on the English side of the corpus
(of the user's own text: its English side, else its target side).

Built from the same blocks as the translator (``DecoderOnlyTransformer``: decoder layers without
cross-attention) and the same BPE tokenizer. The pipeline runs ``train_language_model`` as the DVC
stage ``lm_translator`` into ``artifacts/translator/lm``: it reports the test perplexity next to a
unigram model's (the perplexity of knowing only how often each subword occurs, for scale) and writes
sampled continuations of test-sentence prompts (temperature, top-k and nucleus sampling).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from triad.errors import DataError
from triad.heads.translator.config import LanguageModelConfig
from triad.heads.translator.data import BOS_ID, EOS_ID, PAD_ID, load_tokenizer, pad_batch, read_jsonl
from triad.heads.translator.decoding import sample
from triad.heads.translator.model import DecoderOnlyTransformer, TransformerConfig
from triad.nn.schedule import warmup_cosine

WEIGHTS = "lm.pt"
SAMPLES = "samples.md"


def english_side(data_dir: Path) -> str:
    """Which field of the prepared pairs ("src" or "tgt") the language model learns, from the data summary:
    the English side of a built-in corpus; for the user's own data, the side its prepare step chose
    (``lm_side``: English where one side is English, else the target side)."""
    summary_file = data_dir / "summary.json"
    if not summary_file.is_file():
        raise DataError(f"{summary_file} is missing: run `triad stage prepare translator` first")
    summary = json.loads(summary_file.read_text())
    if summary.get("lm_side") in ("src", "tgt"):
        return summary["lm_side"]
    src_lang, tgt_lang = summary["direction"].split("-")
    if "en" not in (src_lang, tgt_lang):
        raise DataError(f"the prepared corpus ({src_lang}-{tgt_lang}) has no English side to model")
    return "src" if src_lang == "en" else "tgt"


def encode(texts: list[str], tokenizer, max_len: int) -> list[list[int]]:
    """Sentences -> [BOS] subwords [EOS], cut to ``max_len`` ids."""
    return [[BOS_ID] + e.ids[: max_len - 2] + [EOS_ID] for e in tokenizer.encode_batch(texts)]


def next_token_loss(model: DecoderOnlyTransformer, batch: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of predicting ids (B, T) from their prefixes, padding ignored."""
    logits = model(batch[:, :-1])
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), batch[:, 1:].reshape(-1), ignore_index=PAD_ID, reduction=reduction
    )


@torch.no_grad()
def perplexity(model: DecoderOnlyTransformer, rows: list[list[int]], batch_size: int = 64) -> float:
    """exp(mean negative log-likelihood per predicted token), EOS included."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = pad_batch(rows[start : start + batch_size]).to(next(model.parameters()).device)
        total += next_token_loss(model, batch, reduction="sum").item()
        count += int((batch[:, 1:] != PAD_ID).sum())
    return math.exp(total / count)


def unigram_perplexity(train_rows: list[list[int]], test_rows: list[list[int]], vocab_size: int) -> float:
    """Perplexity of add-one-smoothed subword frequencies from the training rows (the baseline)."""
    counts = torch.ones(vocab_size)
    for row in train_rows:
        counts += torch.bincount(torch.tensor(row[1:]), minlength=vocab_size)[:vocab_size]
    log_probs = (counts / counts.sum()).log()
    targets = torch.tensor([token for row in test_rows for token in row[1:]])
    return math.exp(-log_probs[targets].mean().item())


def lm_config(cfg: LanguageModelConfig, vocab_size: int) -> TransformerConfig:
    """The language model's network: a GPT (pre-norm, GELU feed-forward 4 * d_model wide, learned
    positions, output projection tied to the embedding, no padding row) of ``cfg``'s sizes."""
    return TransformerConfig(
        vocab_size=vocab_size,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        n_encoder_layers=0,
        n_decoder_layers=cfg.n_layers,
        d_ff=4 * cfg.d_model,
        dropout=cfg.dropout,
        norm_first=True,
        positional="learned",
        max_len=cfg.max_len,
        tie_embeddings=True,
        pad_id=None,
        activation="gelu",
    )


def train_language_model(
    cfg: LanguageModelConfig, data_dir: Path, out_dir: Path, seed: int, device: str | torch.device = "cpu"
) -> dict:
    """Train on the English training sentences; report perplexities; save weights, config and samples.

    Training and the perplexities run on ``device``; sampling and the saved weights are on the CPU.
    """
    side = english_side(data_dir)
    tokenizer = load_tokenizer(data_dir / "tokenizer.json")
    rows = {
        split: encode([p[side] for p in read_jsonl(data_dir / f"{split}.jsonl")], tokenizer, cfg.max_len)
        for split in ("train", "val", "test")
    }
    torch.manual_seed(seed)
    config = lm_config(cfg, tokenizer.get_vocab_size())
    model = DecoderOnlyTransformer(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    total_steps = cfg.max_epochs * math.ceil(len(rows["train"]) / cfg.batch_size)
    # linear warm-up over the first tenth of the steps (at least one), then cosine decay to zero
    schedule = warmup_cosine(optimizer, total_steps, warmup_steps=max(1, total_steps // 10))
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for epoch in range(cfg.max_epochs):
        model.train()
        order = torch.randperm(len(rows["train"]), generator=generator).tolist()
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        for batch_ids in tqdm(
            batches,
            desc=f"language model epoch {epoch + 1}/{cfg.max_epochs}",
            leave=False,
            disable=not sys.stderr.isatty(),
        ):
            loss = next_token_loss(model, pad_batch([rows["train"][i] for i in batch_ids]).to(device))
            if not torch.isfinite(loss):
                raise DataError(
                    f"the language model's loss became {loss.item()} in epoch {epoch + 1}; "
                    f"lower model.translator.lm.lr (now {cfg.lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
    train_seconds = time.perf_counter() - started
    perplexities = {f"lm_{split}_perplexity": perplexity(model, rows[split]) for split in ("val", "test")}

    model.cpu()  # the weights are saved for any machine; sampling draws from a CPU generator
    # Save before sampling, so that a failure while sampling never loses the trained model.
    architecture = asdict(config)  # DecoderOnlyTransformer(TransformerConfig(**architecture)) rebuilds the network
    torch.save({"state_dict": model.state_dict(), "architecture": architecture}, out_dir / WEIGHTS)
    (out_dir / "lm.json").write_text(json.dumps({"english_side": side, **architecture}, indent=2) + "\n")
    samples = write_samples(model, tokenizer, rows["test"], cfg, out_dir / SAMPLES, seed)
    return {
        "lm_parameters": sum(p.numel() for p in model.parameters()),
        "lm_train_sentences": len(rows["train"]),
        **perplexities,
        "lm_unigram_test_perplexity": unigram_perplexity(rows["train"], rows["test"], config.vocab_size),
        "lm_train_seconds": round(train_seconds, 2),
        "lm_device": str(torch.device(device)),
        "lm_samples": len(samples),
    }


def write_samples(
    model: DecoderOnlyTransformer,
    tokenizer,
    test_rows: list[list[int]],
    cfg: LanguageModelConfig,
    path: Path,
    seed: int,
) -> list[tuple[str, str]]:
    """Continue the first ``cfg.prompt_tokens`` subwords of test sentences; a markdown table to ``path``."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for row in test_rows[: cfg.n_samples]:
        prompt = torch.tensor([row[: cfg.prompt_tokens + 1]])  # BOS + the first subwords
        tokens = sample(
            model,
            prompt,
            cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_k=cfg.top_k,
            top_p=cfg.top_p,
            generator=generator,
        )[0].tolist()
        continuation = tokens[prompt.size(1) :]
        if EOS_ID in continuation:
            continuation = continuation[: continuation.index(EOS_ID)]
        pairs.append((tokenizer.decode(prompt[0, 1:].tolist()), tokenizer.decode(continuation)))
    lines = [
        f"Samples (temperature {cfg.temperature}, top-k {cfg.top_k}, top-p {cfg.top_p})",
        "",
        "| prompt | continuation |",
        "|---|---|",
    ]
    lines += [f"| {p.replace('|', '/')} | {c.replace('|', '/')} |" for p, c in pairs]
    path.write_text("\n".join(lines) + "\n")
    return pairs
