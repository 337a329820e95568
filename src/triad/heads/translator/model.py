"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017), built from small parts.

The same parts build three models:
- ``Seq2SeqTransformer``: encoder-decoder, for translation;
- ``DecoderOnlyTransformer``: GPT-style causal language model, for text generation;
- ``EncoderOnlyTransformer``: a bidirectional encoder whose token features feed other models.

Every model, and every block inside one, is built from one ``TransformerConfig`` (as nanoGPT's
from its ``GPTConfig``) and reads the fields it needs.

Shape letters: B batch, T query (target) length, S key (source) length, D d_model, H heads,
Dh = D / H per-head width, V vocabulary. Masks are boolean, broadcast to (B, H, T, S), and True
means "may attend". Token id ``pad_id`` is padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class TransformerConfig:
    """The shape of a Transformer. ``dataclasses.asdict`` of it is what a saved model's JSON holds.

    ``Seq2SeqTransformer`` reads every field; ``EncoderOnlyTransformer`` all but ``n_decoder_layers`` and
    ``tie_embeddings``; ``DecoderOnlyTransformer`` all but ``n_encoder_layers``.
    """

    vocab_size: int
    d_model: int  # D
    n_heads: int  # H; divides D
    n_encoder_layers: int
    n_decoder_layers: int
    d_ff: int  # hidden width of the feed-forward sublayers
    dropout: float  # one rate for attention weights, feed-forward activations, residual branches, embeddings
    norm_first: bool  # pre-norm (True) or post-norm (False), see ``ResidualConnection``
    positional: Literal["sinusoidal", "learned"]
    max_len: int  # positions in the positional table: the longest sequence the model accepts
    tie_embeddings: bool  # input embeddings and output projection share one matrix
    pad_id: int | None  # the padding token id (its embedding row starts at zero); None: no padding row
    activation: Literal["relu", "gelu"]  # of the feed-forward sublayers


# --- dropout --------------------------------------------------------------------------------------


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout: each element is zeroed with probability p, the rest scaled by 1 / (1 - p).

    The same function as ``F.dropout``, which it calls except on CPU. There ``F.dropout`` draws its
    mask with ``bernoulli_``, one random-generator call per element, and those calls were a fifth
    of a CPU training step (``bench/translator_throughput.py``). Here one 64-bit draw is cut into
    four uniform 16-bit integers, and an element is kept when its integer is at or above the
    p-quantile of [-2^15, 2^15): a quarter of the draws, with p honoured to within 2^-16.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    uniform16 = words.view(torch.int16)[:n].view(x.shape)
    keep = uniform16 >= round(p * 2**16) - 2**15
    return torch.where(keep, x * (1.0 / (1.0 - p)), 0.0)


class Dropout(nn.Dropout):
    """``nn.Dropout`` through ``dropout`` above (identity in eval mode). Shape preserved."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


# --- attention ------------------------------------------------------------------------------------


def causal_mask(t_query: int, t_key: int, device: torch.device | None = None) -> Tensor:
    """(T, S) boolean mask letting query i see keys 0 .. i + (S - T).

    The queries are the last T positions of the S keys, which covers both training (T == S) and
    incremental decoding with a key/value cache (T new queries after S - T cached positions).
    """
    offset = t_key - t_query
    return torch.ones(t_query, t_key, dtype=torch.bool, device=device).tril(diagonal=offset)


def reference_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(Dh)) v, written out.

    q: (B, H, T, Dh), k and v: (B, H, S, Dh), mask: bool, broadcastable to (B, H, T, S).
    Returns the output (B, H, T, Dh) and the attention weights (B, H, T, S).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return dropout(weights, dropout_p) @ v, weights


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Attention through PyTorch's fused kernel, or through ``reference_attention`` when the
    weights are wanted (the fused kernels never materialise them) or when attention dropout runs on
    CPU (PyTorch then falls back to the same unfused computation, with the slower mask of ``F.dropout``).

    Shapes as in ``reference_attention``; ``is_causal`` adds ``causal_mask`` to ``mask``.
    Returns (output, weights or None).
    """
    t_query, t_key = q.size(-2), k.size(-2)
    unfused = need_weights or (dropout_p > 0.0 and q.device.type == "cpu")
    if is_causal and (mask is not None or unfused or t_query != t_key):
        causal = causal_mask(t_query, t_key, q.device)
        mask = causal if mask is None else mask & causal
        is_causal = False
    if unfused:
        out, weights = reference_attention(q, k, v, mask, dropout_p)
        return out, weights if need_weights else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
    return out, None


@dataclass
class KVCache:
    """Keys and values of one attention module kept between decoding steps, each (B, H, S, Dh)."""

    k: Tensor | None = None
    v: Tensor | None = None

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search moves hypotheses between beams)."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


class MultiHeadAttention(nn.Module):
    """H attention heads in parallel over learned projections, then one output projection.

    Self-attention: ``forward(x)``. Encoder-decoder (cross) attention: ``forward(x, memory)``,
    where the queries come from ``x`` (B, T, D) and keys and values from ``memory`` (B, S, D).
    Returns the output (B, T, D) and, if ``need_weights``, the weights (B, H, T, S), else None.

    With a ``cache``, self-attention appends this step's keys and values to it and attends over
    all of them; cross-attention projects ``memory`` once, on the first step, and reuses it.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        d_model, n_heads = config.d_model, config.n_heads
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = n_heads
        self.dropout = config.dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, Dh)"""
        batch, length, width = x.shape
        return x.view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        q = self.split_heads(self.q_proj(x))
        if memory is None:  # self-attention
            k, v = self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))
            if cache is not None:
                if cache.k is not None:
                    k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
                cache.k, cache.v = k, v
        elif cache is not None and cache.k is not None:  # cross-attention, memory already projected
            k, v = cache.k, cache.v
        else:
            k, v = self.split_heads(self.k_proj(memory)), self.split_heads(self.v_proj(memory))
            if cache is not None:
                cache.k, cache.v = k, v
        dropout_p = self.dropout if self.training else 0.0
        out, weights = scaled_dot_product_attention(q, k, v, mask, is_causal, dropout_p, need_weights)
        batch, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, length, -1)  # (B, T, D)
        return self.out_proj(out), weights


# --- the other sublayers --------------------------------------------------------------------------


class PositionwiseFeedForward(nn.Module):
    """Linear(D -> d_ff), activation, dropout, Linear(d_ff -> D), applied at every position alike.

    (B, T, D) -> (B, T, D).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.w_1 = nn.Linear(config.d_model, config.d_ff)
        self.w_2 = nn.Linear(config.d_ff, config.d_model)
        self.activation = nn.ReLU() if config.activation == "relu" else nn.GELU()
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


class ResidualConnection(nn.Module):
    """A residual connection with layer normalisation around a sublayer f.

    pre-norm (Xiong et al., 2020):           x + Dropout(f(LayerNorm(x)))
    post-norm (Vaswani et al., 2017):        LayerNorm(x + Dropout(f(x)))

    Used in two halves, ``y = f(res.normalize(x)); x = res.add(x, y)``, so that f may also hand
    back attention weights. Shapes are (B, T, D) throughout.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.dropout = Dropout(config.dropout)
        self.norm_first = config.norm_first

    def normalize(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.norm_first else x

    def add(self, x: Tensor, y: Tensor) -> Tensor:
        x = x + self.dropout(y)
        return x if self.norm_first else self.norm(x)


class TokenEmbedding(nn.Module):
    """Token ids (B, T) -> vectors (B, T, D) scaled by sqrt(D), as in the paper.

    The matrix is initialised with standard deviation D^-1/2 so that the scaled vectors have unit
    scale and the same matrix can serve as the (tied) output projection.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        d_model, pad_id = config.d_model, config.pad_id
        self.embedding = nn.Embedding(config.vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        if pad_id is not None:
            with torch.no_grad():
                self.embedding.weight[pad_id].zero_()
        self.scale = math.sqrt(d_model)

    @property
    def weight(self) -> nn.Parameter:
        return self.embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        return self.embedding(tokens) * self.scale


class PositionalEncoding(nn.Module):
    """Adds position information to (B, T, D) embeddings, then dropout.

    ``config.positional``: ``sinusoidal``, PE[pos, 2i] = sin(pos / 10000^(2i/D)) and
    PE[pos, 2i+1] = cos(pos / 10000^(2i/D)); ``learned``, a trained vector per position. ``offset`` is
    the position of the first of the T vectors (non-zero when decoding with a cache).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        d_model, max_len = config.d_model, config.max_len
        self.dropout = Dropout(config.dropout)
        self.max_len = max_len
        if config.positional == "learned":
            self.table = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        else:
            position = torch.arange(max_len).unsqueeze(1)
            frequency = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
            table = torch.zeros(max_len, d_model)
            table[:, 0::2] = torch.sin(position * frequency)
            table[:, 1::2] = torch.cos(position * frequency)
            self.register_buffer("table", table, persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        length = x.size(1)
        if offset + length > self.max_len:
            raise ValueError(f"sequence of {offset + length} tokens is longer than max_len={self.max_len}")
        return self.dropout(x + self.table[offset : offset + length])


# --- layers and stacks ----------------------------------------------------------------------------


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each inside a ``ResidualConnection``. (B, S, D) -> (B, S, D)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(config)
        self.feed_forward = PositionwiseFeedForward(config)
        self.residual_attn = ResidualConnection(config)
        self.residual_ff = ResidualConnection(config)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Returns the output and the self-attention weights (B, H, S, S) if asked."""
        y, weights = self.self_attn(self.residual_attn.normalize(x), mask=mask, need_weights=need_weights)
        x = self.residual_attn.add(x, y)
        x = self.residual_ff.add(x, self.feed_forward(self.residual_ff.normalize(x)))
        return x, weights


class Encoder(nn.Module):
    """``config.n_encoder_layers`` ``EncoderLayer``s, with a final LayerNorm when pre-norm. (B, S, D) -> (B, S, D)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_encoder_layers))
        self.norm = nn.LayerNorm(config.d_model) if config.norm_first else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """Returns the output and, if asked, each layer's self-attention weights (else [])."""
        attentions = []
        for layer in self.layers:
            x, weights = layer(x, mask, need_weights)
            if need_weights:
                attentions.append(weights)
        return self.norm(x), attentions


class DecoderLayer(nn.Module):
    """Masked (causal) self-attention, cross-attention over the encoder memory, feed-forward.

    ``cross_attention=False`` drops the middle sublayer: that is a GPT block. (B, T, D) -> (B, T, D).
    """

    def __init__(self, config: TransformerConfig, cross_attention: bool):
        super().__init__()
        self.self_attn = MultiHeadAttention(config)
        self.residual_self = ResidualConnection(config)
        if cross_attention:
            self.cross_attn = MultiHeadAttention(config)
            self.residual_cross = ResidualConnection(config)
        else:
            self.cross_attn = None
        self.feed_forward = PositionwiseFeedForward(config)
        self.residual_ff = ResidualConnection(config)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: LayerCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Returns the output and, if asked, the self- (B, H, T, T) and cross-attention (B, H, T, S) weights."""
        y, self_weights = self.self_attn(
            self.residual_self.normalize(x),
            is_causal=True,
            cache=cache.self_attn if cache is not None else None,
            need_weights=need_weights,
        )
        x = self.residual_self.add(x, y)
        cross_weights = None
        if self.cross_attn is not None:
            y, cross_weights = self.cross_attn(
                self.residual_cross.normalize(x),
                memory,
                mask=memory_mask,
                cache=cache.cross_attn if cache is not None else None,
                need_weights=need_weights,
            )
            x = self.residual_cross.add(x, y)
        x = self.residual_ff.add(x, self.feed_forward(self.residual_ff.normalize(x)))
        return x, self_weights, cross_weights


@dataclass
class LayerCache:
    """The key/value caches of one ``DecoderLayer``."""

    self_attn: KVCache
    cross_attn: KVCache


class DecoderCache:
    """Key/value caches of every decoder layer for incremental (token by token) decoding."""

    def __init__(self, n_layers: int):
        self.layers = [LayerCache(KVCache(), KVCache()) for _ in range(n_layers)]

    def __len__(self) -> int:
        """Number of positions already decoded."""
        keys = self.layers[0].self_attn.k
        return 0 if keys is None else keys.size(2)

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index``. Only self-attention caches move: beam search reorders
        hypotheses of the same sentence, whose cross-attention keys and values are identical."""
        for layer in self.layers:
            layer.self_attn.reorder(index)


class Decoder(nn.Module):
    """``config.n_decoder_layers`` ``DecoderLayer``s, with a final LayerNorm when pre-norm. (B, T, D) -> (B, T, D).

    ``cross_attention=False`` makes them GPT blocks."""

    def __init__(self, config: TransformerConfig, cross_attention: bool):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config, cross_attention) for _ in range(config.n_decoder_layers))
        self.norm = nn.LayerNorm(config.d_model) if config.norm_first else nn.Identity()

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Returns the output and, if asked, each layer's self- and cross-attention weights."""
        self_attentions, cross_attentions = [], []
        for i, layer in enumerate(self.layers):
            x, self_weights, cross_weights = layer(
                x, memory, memory_mask, cache.layers[i] if cache is not None else None, need_weights
            )
            if need_weights:
                self_attentions.append(self_weights)
                cross_attentions.append(cross_weights)
        return self.norm(x), self_attentions, cross_attentions


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """(B, S) token ids -> (B, 1, 1, S) mask that hides padding keys from every query and head."""
    return (tokens != pad_id)[:, None, None, :]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, each shared (tied) tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- the three models ----------------------------------------------------------------------------


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer for translation over one (joint) source/target vocabulary.

    ``forward(src (B, S), tgt_in (B, T)) -> logits (B, T, V)``; ``tgt_in`` starts with BOS and is
    the target shifted right (teacher forcing). ``encode`` and ``decode`` are the two halves used
    by the decoding algorithms; ``attention_maps`` returns every attention weight for plotting.
    With ``config.tie_embeddings`` the source embedding, target embedding and output projection are
    one matrix (Press & Wolf, 2017). ``config.pad_id`` is required: it masks padded source positions.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.pad_id is None:
            raise ValueError("a Seq2SeqTransformer needs a pad_id: it masks padded source positions")
        self.config = config
        self.pad_id = config.pad_id
        self.n_decoder_layers = config.n_decoder_layers
        self.src_embed = TokenEmbedding(config)
        self.tgt_embed = self.src_embed if config.tie_embeddings else TokenEmbedding(config)
        self.src_position = PositionalEncoding(config)
        self.tgt_position = PositionalEncoding(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config, cross_attention=True)
        self.generator = nn.Linear(config.d_model, config.vocab_size, bias=False)  # to logits
        if config.tie_embeddings:
            self.generator.weight = self.tgt_embed.weight

    def encode(self, src: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor, list[Tensor]]:
        """src (B, S) -> memory (B, S, D), its padding mask (B, 1, 1, S), self-attention weights."""
        src_mask = padding_mask(src, self.pad_id)
        memory, attentions = self.encoder(self.src_position(self.src_embed(src)), src_mask, need_weights)
        return memory, src_mask, attentions

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor, cache: DecoderCache | None = None) -> Tensor:
        """tgt (B, T) -> logits (B, T, V). With a cache, ``tgt`` holds only the new tokens."""
        offset = len(cache) if cache is not None else 0
        x = self.tgt_position(self.tgt_embed(tgt), offset)
        x, _, _ = self.decoder(x, memory, src_mask, cache)
        return self.generator(x)

    def new_cache(self) -> DecoderCache:
        return DecoderCache(self.n_decoder_layers)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, src_mask, _ = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)

    @torch.no_grad()
    def attention_maps(self, src: Tensor, tgt_in: Tensor) -> dict[str, list[Tensor]]:
        """Per-layer weights (B, H, ., .) of ``encoder_self`` (S x S), ``decoder_self`` (T x T)
        and ``decoder_cross`` (T x S) attention."""
        memory, src_mask, encoder_self = self.encode(src, need_weights=True)
        x = self.tgt_position(self.tgt_embed(tgt_in))
        _, decoder_self, decoder_cross = self.decoder(x, memory, src_mask, need_weights=True)
        return {"encoder_self": encoder_self, "decoder_self": decoder_self, "decoder_cross": decoder_cross}


class DecoderOnlyTransformer(nn.Module):
    """GPT-style causal language model: tokens (B, T) -> next-token logits (B, T, V).

    The blocks are ``config.n_decoder_layers`` ``DecoderLayer``s without cross-attention; with
    ``config.tie_embeddings`` the output projection is the token embedding. ``forward(tokens, cache)``
    with a ``DecoderCache`` processes only the new tokens (see ``triad.heads.translator.decoding.sample``).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.n_layers = config.n_decoder_layers
        self.max_len = config.max_len
        self.embed = TokenEmbedding(config)
        self.position = PositionalEncoding(config)
        self.decoder = Decoder(config, cross_attention=False)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def new_cache(self) -> DecoderCache:
        return DecoderCache(self.n_layers)

    def forward(self, tokens: Tensor, cache: DecoderCache | None = None) -> Tensor:
        offset = len(cache) if cache is not None else 0
        x, _, _ = self.decoder(self.position(self.embed(tokens), offset), cache=cache)
        return self.lm_head(x)


class EncoderOnlyTransformer(nn.Module):
    """Bidirectional Transformer encoder used as a feature extractor (a backbone).

    ``forward(tokens (B, S)) -> features (B, S, D)``; ``pooled(tokens) -> (B, D)``, the mean of
    the features over non-padding positions. ``feature_dim`` is D. Built from a translator's config it
    is that ``Seq2SeqTransformer``'s encoder half: ``translator_encoder_state`` copies a translator's
    weights in. ``config.pad_id`` is required (padding is masked and left out of the mean).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.pad_id is None:
            raise ValueError("an EncoderOnlyTransformer needs a pad_id: it masks padded positions")
        self.config = config
        self.pad_id = config.pad_id
        self.feature_dim = config.d_model
        self.embed = TokenEmbedding(config)
        self.position = PositionalEncoding(config)
        self.encoder = Encoder(config)

    def forward(self, tokens: Tensor) -> Tensor:
        features, _ = self.encoder(self.position(self.embed(tokens)), padding_mask(tokens, self.pad_id))
        return features

    def pooled(self, tokens: Tensor) -> Tensor:
        keep = (tokens != self.pad_id).unsqueeze(-1).to(torch.float32)
        return (self(tokens) * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def translator_encoder_state(model: Seq2SeqTransformer) -> dict[str, Tensor]:
    """The encoder half of a translator as an ``EncoderOnlyTransformer`` state_dict: source embedding,
    source positions and encoder stack, under that model's names."""
    parts = {"embed": model.src_embed, "position": model.src_position, "encoder": model.encoder}
    return {f"{prefix}.{name}": tensor for prefix, part in parts.items() for name, tensor in part.state_dict().items()}
