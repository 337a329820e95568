"""Throughput of triad's translator against Hugging Face MarianMT of identical size, same run.

Measures, for both models on the same device and precision:
- training tokens/s (source + target tokens through forward, backward and an AdamW step);
- greedy decoding sentences/s (both with a key/value cache, both forced to generate exactly
  ``--tgt-len`` tokens, so they do the same work).
The two take turns round after round (``bench/timing.py``); figures are medians over the rounds.
The Marian model is built from a ``MarianConfig`` (no download) with the same vocabulary, width,
heads, layers, feed-forward size and tied embeddings; triad's model is run post-norm like Marian.

MFU (GPU only): model FLOPs of a training step divided by its time and by the device's peak dense
bf16 FLOP/s (the PaLM paper's appendix-B count: 6 FLOPs per weight per token it processes, 2 forward
and 4 backward, and 12 d per query-key pair per attention layer; embedding lookups are free).
- Translation model, per sentence pair of S source and T target tokens (``seq2seq_training_flops``):
  6 (N_enc S + N_dec T + N_out T) + 12 d (L_enc S^2 + L_dec T^2 + L_dec T S), where N_enc are the
  encoder's parameters, N_dec the decoder's (its cross-attention key/value projections act on the S
  source tokens and are charged S instead of T), N_out = d V the (tied) output projection, d the
  width and L_enc, L_dec the layer counts. Each weight is charged only for the tokens that pass
  through it; charging all N weights for every source and target token would double the count.
- Decoder-only model, per token: 6 N + 12 L T d (N parameters, the tied output projection counted
  once, L layers, T context), as nanoGPT's ``estimate_mfu``. Reported with ``--gpt`` for a
  124M-parameter model at sequence 1024.

Run:  python bench/translator_throughput.py [--size small|base] [--rounds 5] [--device cuda] [--bf16] [--compile]
           [--gpt | --gpt-only] [--gpt-batch 8 32] [--compile-mode max-autotune] [--explain] [--profile 3]
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import statistics
import sys

import torch
import torch.nn.functional as F
from timing import compare, profile_calls, seconds_per_call, take_turns

from triad.heads.translator.decoding import greedy_decode
from triad.heads.translator.language_model import next_token_loss
from triad.heads.translator.model import DecoderOnlyTransformer, Seq2SeqTransformer, TransformerConfig, count_parameters

SIZES = {  # conf/model/translator/small.yaml and base.yaml
    "small": dict(vocab_size=2000, d_model=128, n_heads=4, layers=2, d_ff=256),
    "base": dict(vocab_size=8000, d_model=256, n_heads=8, layers=3, d_ff=1024),
}
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core peaks


def build_models(size: dict, max_len: int):
    from transformers import MarianConfig, MarianMTModel

    ours = Seq2SeqTransformer(
        TransformerConfig(
            vocab_size=size["vocab_size"],
            d_model=size["d_model"],
            n_heads=size["n_heads"],
            n_encoder_layers=size["layers"],
            n_decoder_layers=size["layers"],
            d_ff=size["d_ff"],
            dropout=0.1,
            norm_first=False,
            positional="sinusoidal",
            max_len=max_len,
            tie_embeddings=True,
            pad_id=0,
            activation="relu",
        )
    )
    config = MarianConfig(
        vocab_size=size["vocab_size"],
        decoder_vocab_size=size["vocab_size"],
        d_model=size["d_model"],
        encoder_layers=size["layers"],
        decoder_layers=size["layers"],
        encoder_attention_heads=size["n_heads"],
        decoder_attention_heads=size["n_heads"],
        encoder_ffn_dim=size["d_ff"],
        decoder_ffn_dim=size["d_ff"],
        max_position_embeddings=max_len,
        # triad drops out at the same three places (attention weights, feed-forward activation,
        # residual branch) with one rate; Marian's defaults would skip the first two and do less work
        activation_function="relu",
        dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.1,
        pad_token_id=0,
        decoder_start_token_id=1,
        eos_token_id=2,
        bos_token_id=1,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
    )
    return ours, MarianMTModel(config)


def train_step_fn(model, batch, marian: bool, autocast):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    src, tgt = batch

    def step():
        with autocast():
            if marian:
                logits = model(input_ids=src, attention_mask=src != 0, decoder_input_ids=tgt[:, :-1]).logits
            else:
                logits = model(src, tgt[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt[:, 1:].flatten(), ignore_index=0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def flops_per_token(n_params: int, n_layers: int, context: int, width: int) -> float:
    """Training FLOPs per token of a decoder-only model: 6 N for the weights + 12 L T d for attention."""
    return 6 * n_params + 12 * n_layers * context * width


def seq2seq_training_flops(model: Seq2SeqTransformer, src_len: int, tgt_len: int) -> float:
    """Training FLOPs (forward + backward) of one sentence pair of ``src_len`` S and ``tgt_len`` T tokens.

    Weights cost 6 FLOPs per token that passes through them: the encoder's and the decoder's
    cross-attention key/value projections see the S source tokens; the rest of the decoder and
    the output projection (d x V, tied or not) see the T target tokens. Attention costs 12 d per
    query-key pair per layer (q k^T and weights @ v, forward and backward), causal masks not
    discounted: S^2 (encoder self), T^2 (decoder self) and T S (cross) per layer.
    """
    width = model.generator.in_features
    layers = list(model.decoder.layers)
    cross_kv = sum(
        count_parameters(layer.cross_attn.k_proj) + count_parameters(layer.cross_attn.v_proj) for layer in layers
    )
    n_source = count_parameters(model.encoder) + cross_kv
    n_target = count_parameters(model.decoder) - cross_kv + model.generator.weight.numel()
    weights = 6 * (n_source * src_len + n_target * tgt_len)
    n_enc = len(model.encoder.layers)
    attention = 12 * width * (n_enc * src_len**2 + len(layers) * (tgt_len**2 + tgt_len * src_len))
    return weights + attention


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--src-len", type=int, default=24)
    parser.add_argument("--tgt-len", type=int, default=24)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, the models taking turns; medians are reported")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models (GPU)")
    parser.add_argument(
        "--compile-mode",
        default=None,
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="torch.compile mode for the GPT model (default: torch's default)",
    )
    parser.add_argument("--gpt", action="store_true", help="also time a 124M decoder-only model at seq 1024")
    parser.add_argument("--gpt-only", action="store_true", help="time only the GPT model (implies --gpt)")
    parser.add_argument(
        "--gpt-batch",
        type=int,
        nargs="+",
        default=[8],
        help="sequences of 1024 tokens per GPT step; several values time each (default 8)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="before timing, trace the GPT model and loss with torch._dynamo.explain: graphs, graph breaks, why",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="after timing each GPT batch, profile this many steps: time by kernel family and the top kernels",
    )
    args = parser.parse_args(argv)
    print("command: python bench/translator_throughput.py " + shlex.join(argv))

    torch.manual_seed(0)
    device = torch.device(args.device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    peak = peak_flops(device)
    if args.gpt_only:
        time_gpt(args, device, autocast, peak)
        return
    size = SIZES[args.size]
    ours, marian = (m.to(device) for m in build_models(size, max_len=max(args.src_len, args.tgt_len) + 2))
    src = torch.randint(3, size["vocab_size"], (args.batch_size, args.src_len), device=device)
    tgt = torch.randint(3, size["vocab_size"], (args.batch_size, args.tgt_len + 1), device=device)
    tokens = src.numel() + tgt[:, 1:].numel()
    print(
        f"device {device}, precision {'bf16' if args.bf16 else 'fp32'}, compile {args.compile}, "
        f"size {args.size}: triad {count_parameters(ours):,} / marian {count_parameters(marian):,} parameters"
    )

    train_steps, decoders = {}, {}
    for name, model, is_marian in (("triad", ours, False), ("marian", marian, True)):
        trainable = torch.compile(model) if args.compile else model
        train_steps[name] = train_step_fn(trainable, (src, tgt), is_marian, autocast)
        if is_marian:
            decoders[name] = lambda m=model: m.generate(
                input_ids=src,
                attention_mask=src != 0,
                max_new_tokens=args.tgt_len,
                min_new_tokens=args.tgt_len,
                num_beams=1,
                do_sample=False,
            )
        else:  # eos id -1 never appears: every sentence runs the full tgt_len steps
            decoders[name] = lambda m=model: greedy_decode(m, src, 1, -1, max_len_a=0.0, max_len_b=args.tgt_len)
    ours.train(), marian.train()
    train = take_turns(train_steps, args.rounds, args.steps, device)
    ours.eval(), marian.eval()
    with torch.no_grad(), autocast():
        decode = take_turns(decoders, args.rounds, max(1, args.steps // 2), device)
    names = ("triad", "marian")
    compare("training", tokens, "tokens", train["triad"], train["marian"], names)
    compare("greedy decoding", args.batch_size, "sentences", decode["triad"], decode["marian"], names)

    if peak is None:
        print("MFU: n/a (needs a GPU with a known peak)")
        return
    step_flops = args.batch_size * seq2seq_training_flops(ours, args.src_len, args.tgt_len)
    print(
        f"MFU triad translation model: {step_flops / statistics.median(train['triad']) / peak:.1%} of "
        f"{peak / 1e12:.0f} TFLOP/s ({step_flops / tokens / 1e6:.2f} MFLOP per source or target token)"
    )
    if args.gpt:
        time_gpt(args, device, autocast, peak)


def time_gpt(args, device: torch.device, autocast, peak: float | None) -> None:
    """Tokens/s and MFU of a GPT-2-small-sized (124M) decoder-only model at sequence 1024 (MFU only
    on a GPU with a known peak; elsewhere the tokens/s, which rehearses the compiled step on a CPU)."""
    gpt = DecoderOnlyTransformer(
        TransformerConfig(  # GPT-2 small's shape
            vocab_size=50304,
            d_model=768,
            n_heads=12,
            n_encoder_layers=0,
            n_decoder_layers=12,
            d_ff=4 * 768,
            dropout=0.0,
            norm_first=True,
            positional="learned",
            max_len=1024,
            tie_embeddings=True,
            pad_id=None,
            activation="gelu",
        )
    ).to(device)
    # fused AdamW: one kernel for all parameters' updates (CUDA only; nanoGPT does the same)
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-4, fused=device.type == "cuda")

    def lm_loss(batch):  # the loss triad's language model trains on
        return next_token_loss(gpt, batch)

    # the loss is compiled with the model, as nanoGPT's forward returns it: Inductor then fuses the fp32
    # cast and the softmax instead of writing (B*T, 50304) fp32 logits out and reading them back, eagerly
    loss_fn = torch.compile(lm_loss, dynamic=False, mode=args.compile_mode) if args.compile else lm_loss
    if args.explain:  # graph breaks would split the compiled step and put Python back between its pieces
        with autocast():
            explained = torch._dynamo.explain(lm_loss)(torch.randint(0, 50304, (1, 1025), device=device))
        print(
            f"dynamo: {explained.graph_count} graph(s), {explained.graph_break_count} graph break(s), "
            f"{explained.op_count} ops in the model and loss"
        )
        for reason in explained.break_reasons:
            print(f"  graph break: {str(reason.reason)[:200]}")
    per_token = flops_per_token(count_parameters(gpt), 12, 1024, 768)
    print(
        f"GPT on {device}, precision {'bf16' if args.bf16 else 'fp32'}, compile {args.compile} "
        f"(mode {args.compile_mode or 'default'}, loss inside the compiled function), "
        f"fused AdamW {device.type == 'cuda'}; {per_token / 1e9:.2f} GFLOP per token",
        flush=True,
    )
    for batch in args.gpt_batch:
        tokens_in = torch.randint(0, 50304, (batch, 1025), device=device)

        def gpt_step():
            with autocast():
                loss = loss_fn(tokens_in)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        seconds = seconds_per_call(gpt_step, args.steps, device, warmup=3)
        rate = batch * 1024 / seconds
        mfu = f"MFU {rate * per_token / peak:.1%} of {peak / 1e12:.0f} TFLOP/s" if peak else "MFU n/a (no known peak)"
        print(
            f"GPT {count_parameters(gpt) / 1e6:.0f}M, seq 1024, batch {batch}: {rate:,.0f} tokens/s, {mfu}", flush=True
        )
        if args.profile:
            profile_calls(gpt_step, args.profile, device)


if __name__ == "__main__":
    main(sys.argv[1:])
