"""UniLM-style prefix-LM Seq2Seq with rotary positions and a KV cache (spec 05 §2.3, §8.5).

Why a prefix LM rather than an encoder-decoder:

* it is the post's model (UniLM attention mask on a RoFormer: bidirectional over ``[CLS] Q
  [SEP]``, causal over the target, segment id 1 on the target; spec 05 §2.3), so the offline
  reproduction changes the size and the initialisation, not the architecture;
* **copy-friendliness** (spec 05 §5, the post's rare-character failure): one token embedding
  table serves the question, the decoder input and — tied — the output layer, and the same
  layers process question and target, so a subject character in the question and the same
  character as an output are represented identically; copying it means attending to it and
  reproducing its embedding. Together with the tokenizer's KB-complete vocabulary and rare
  buckets and the copy augmentation of training (:mod:`kexue.kbqa._train`), a subject whose
  characters never occur in a training question can still be generated;
* the same cost profile as an encoder-decoder with a KV cache: the question is encoded once
  (:meth:`PrefixLMSeq2Seq.prefill`), then each decoding step runs one token per row through the
  layers against the cached keys/values (:meth:`PrefixLMSeq2Seq.decode_step`), and beams are
  re-ordered by indexing the cache (:class:`KVCache.reorder`, the ``reorder`` hook of
  :mod:`kexue.retrieval`).

Architecture: token + segment embeddings, ``num_layers`` pre-LayerNorm Transformer blocks
(multi-head self-attention via ``scaled_dot_product_attention`` with rotary position embeddings
on queries and keys, GELU feed-forward), a final LayerNorm and an output layer tied to the token
embeddings (plus a bias). Rotary positions make attention depend only on relative offsets, so
left-padded prompts at inference give the same results as the unpadded training layout, and
no maximum length is baked into the weights.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import Config

__all__ = ["KBQAModelConfig", "KVCache", "PrefixLMSeq2Seq", "prefix_lm_mask"]


@dataclasses.dataclass
class KBQAModelConfig(Config):
    """Size of :class:`PrefixLMSeq2Seq` (spec 05 §8.5: 4 layers, d=256, 4 heads, FFN 1024, dropout
    0.1; the CI tier of §8.8 uses d≈128 and 2 layers — the defaults here). ``vocab_size=0``
    means "not set yet" (:func:`~kexue.kbqa.train_kbqa` sets it from the tokenizer)."""

    vocab_size: int = 0
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 512
    dropout: float = 0.1
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_layers", "num_heads", "ffn_dim"):
            value = getattr(self, name)
            minimum = 0 if name == "vocab_size" else 1  # 0: "set from the tokenizer"
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if self.d_model % self.num_heads or (self.d_model // self.num_heads) % 2:
            raise ValueError(
                f"d_model ({self.d_model}) must be a multiple of num_heads ({self.num_heads}) "
                "with an even head size (rotary embeddings rotate pairs)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (math.isfinite(self.rope_base) and self.rope_base > 1.0):
            raise ValueError(f"rope_base must be > 1, got {self.rope_base}")


def prefix_lm_mask(segment_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """UniLM attention mask ``[B, 1, T, T]`` (True = may attend) for right-padded rows laid out as
    source (segment 0) then target (segment 1): query ``i`` sees key ``j`` iff ``j`` is valid and
    (``j`` is a source token or ``j <= i``). Source tokens therefore see the whole source and no
    target token; target tokens see the source and the target up to themselves."""
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    source = (segment_ids == 0)[:, None, :]
    allowed = (causal[None, :, :] | source) & valid[:, None, :]
    return allowed[:, None, :, :]


class _Rotary(nn.Module):
    """Rotary position embedding (RoFormer) on the last dimension, "rotate half" layout."""

    inv_freq: torch.Tensor

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        exponent = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
        self.register_buffer("inv_freq", (1.0 / base**exponent).float(), persistent=False)

    def angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin`` of shape ``[*positions.shape, head_dim]``."""
        freqs = positions.to(torch.float32)[..., None] * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin


class _Block(nn.Module):
    def __init__(self, config: KBQAModelConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.d_model // config.num_heads
        self.dropout = config.dropout
        self.norm1 = nn.LayerNorm(config.d_model)
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.ffn_in = nn.Linear(config.d_model, config.ffn_dim)
        self.ffn_out = nn.Linear(config.ffn_dim, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, _ = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, Dh]
        return q, k, v

    def _finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        batch, _, length, _ = attended.shape
        merged = attended.transpose(1, 2).reshape(batch, length, -1)
        x = x + self.drop(self.out(merged))
        out: torch.Tensor = x + self.drop(
            self.ffn_out(self.drop(F.gelu(self.ffn_in(self.norm2(x)))))
        )
        return out

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Full-sequence pass; returns the output and the rotated keys and values."""
        q, k, v = self._heads(x)
        q, k = _Rotary.rotate(q, cos, sin), _Rotary.rotate(k, cos, sin)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self._finish(x, attended), k, v


class KVCache:
    """Per-layer rotated keys and values ``[R, H, capacity, Dh]`` plus a key-validity mask
    ``[R, capacity]``; positions ``< length`` are filled. Rows can be repeated (one per beam) and
    re-ordered (beam search)."""

    def __init__(
        self, keys: list[torch.Tensor], values: list[torch.Tensor], valid: torch.Tensor, length: int
    ) -> None:
        self.keys = keys
        self.values = values
        self.valid = valid
        self.length = length

    @property
    def rows(self) -> int:
        return int(self.valid.shape[0])

    @property
    def capacity(self) -> int:
        return int(self.valid.shape[1])

    def repeat_interleave(self, repeats: int) -> None:
        """Repeat every row ``repeats`` times in place (input-major beam rows)."""
        if repeats == 1:
            return
        self.keys = [k.repeat_interleave(repeats, dim=0) for k in self.keys]
        self.values = [v.repeat_interleave(repeats, dim=0) for v in self.values]
        self.valid = self.valid.repeat_interleave(repeats, dim=0)

    def reorder(self, indices: torch.Tensor) -> None:
        """Row ``r`` becomes old row ``indices[r]`` (the ``reorder`` hook of spec 04's engine)."""
        index = indices.to(device=self.valid.device, dtype=torch.int64)
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]
        self.valid = self.valid.index_select(0, index)


class PrefixLMSeq2Seq(nn.Module):
    """The UniLM-style Seq2Seq of spec 05 §2.3/§8.5 (module docstring).

    * :meth:`forward` — training/teacher forcing on right-padded ``[CLS] Q [SEP] target`` rows;
    * :meth:`loss` — token cross-entropy over target positions, shifted by one (spec 05 §2.3);
    * :meth:`prefill` + :meth:`decode_step` — incremental decoding with a :class:`KVCache`.
    """

    def __init__(self, config: KBQAModelConfig) -> None:
        super().__init__()
        if not isinstance(config, KBQAModelConfig):
            raise TypeError(f"config must be a KBQAModelConfig, got {type(config).__name__}")
        if config.vocab_size < 1:
            raise ValueError("config.vocab_size must be set (>= 1): the tokenizer's vocab_size")
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.segment_embedding = nn.Embedding(2, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.rotary = _Rotary(config.d_model // config.num_heads, config.rope_base)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        for block in self.blocks:
            assert isinstance(block, _Block)
            std = 0.02 / math.sqrt(2 * self.config.num_layers)
            nn.init.normal_(block.out.weight, std=std)
            nn.init.normal_(block.ffn_out.weight, std=std)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = F.linear(
            self.norm(hidden), self.token_embedding.weight, self.output_bias
        )
        return logits

    def _embed(self, ids: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        embedded: torch.Tensor = self.drop(
            self.token_embedding(ids) + self.segment_embedding(segments)
        )
        return embedded

    def _check_ids(self, ids: torch.Tensor, name: str) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64:
            raise TypeError(f"{name} must be an int64 tensor")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"{name} holds ids outside [0, {self.config.vocab_size})")

    def _hidden(
        self, input_ids: torch.Tensor, segment_ids: torch.Tensor, valid: torch.Tensor | None
    ) -> torch.Tensor:
        self._check_ids(input_ids, "input_ids")
        if input_ids.ndim != 2 or segment_ids.shape != input_ids.shape:
            raise ValueError("input_ids and segment_ids must both have shape [B, T]")
        if valid is None:
            valid = input_ids != 0
        mask = prefix_lm_mask(segment_ids, valid)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        cos, sin = self.rotary.angles(positions)
        x = self._embed(input_ids, segment_ids)
        for block in self.blocks:
            x, _, _ = block(x, mask, cos, sin)
        return x

    def forward(
        self,
        input_ids: torch.Tensor,
        segment_ids: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, T, V]`` for right-padded rows ``[CLS] Q [SEP] target [PAD]...`` with
        ``segment_ids`` 0 on the source and 1 on the target; ``valid`` (bool ``[B, T]``, default:
        ``input_ids != [PAD]``, i.e. id 0) marks real tokens. The logits at position ``i``
        predict token ``i + 1``."""
        return self._logits(self._hidden(input_ids, segment_ids, valid))

    def loss(
        self,
        input_ids: torch.Tensor,
        segment_ids: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int]:
        """Mean token cross-entropy over target tokens (segment 1, shifted by one; spec 05 §2.3)
        and the number of target tokens. Logits are computed at the predicting positions only."""
        if valid is None:
            valid = input_ids != 0
        hidden = self._hidden(input_ids, segment_ids, valid)
        predicts = (segment_ids[:, 1:] == 1) & valid[:, 1:]
        count = int(predicts.sum())
        if count == 0:
            raise ValueError("the batch holds no target tokens (segment id 1)")
        logits = self._logits(hidden[:, :-1][predicts])
        loss: torch.Tensor = F.cross_entropy(logits, input_ids[:, 1:][predicts])
        return loss, count

    # ------------------------------------------------------------------ incremental decoding

    @torch.no_grad()
    def prefill(
        self, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor, max_new_tokens: int
    ) -> tuple[torch.Tensor, KVCache]:
        """Encode **left-padded** prompts ``[B, P]`` (``prompt_valid`` False on the padding).

        Returns the logits ``[B, V]`` at the last position (the prediction of the first target
        token) and a :class:`KVCache` with room for ``max_new_tokens`` decoded tokens.
        """
        self._check_ids(prompt_ids, "prompt_ids")
        if prompt_ids.ndim != 2 or prompt_valid.shape != prompt_ids.shape:
            raise ValueError("prompt_ids and prompt_valid must both have shape [B, P]")
        batch, length = prompt_ids.shape
        segments = torch.zeros_like(prompt_ids)
        mask = prompt_valid[:, None, None, :]
        positions = torch.arange(length, device=prompt_ids.device)
        cos, sin = self.rotary.angles(positions)
        x = self._embed(prompt_ids, segments)
        capacity = length + max_new_tokens
        keys, values = [], []
        for block in self.blocks:
            x, k, v = block(x, mask, cos, sin)
            key_buffer = k.new_zeros(batch, k.shape[1], capacity, k.shape[3])
            value_buffer = v.new_zeros(batch, v.shape[1], capacity, v.shape[3])
            key_buffer[:, :, :length] = k
            value_buffer[:, :, :length] = v
            keys.append(key_buffer)
            values.append(value_buffer)
        valid = torch.zeros(batch, capacity, dtype=torch.bool, device=prompt_ids.device)
        valid[:, :length] = prompt_valid
        return self._logits(x[:, -1]), KVCache(keys, values, valid, length)

    @torch.no_grad()
    def decode_step(self, token_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed one target token per row (segment 1) at position ``cache.length``; return the
        logits ``[R, V]`` of the next token and extend the cache in place."""
        self._check_ids(token_ids, "token_ids")
        if token_ids.shape != (cache.rows,):
            raise ValueError(
                f"token_ids must have shape [{cache.rows}], got {tuple(token_ids.shape)}"
            )
        position = cache.length
        if position >= cache.capacity:
            raise ValueError(f"the KV cache is full ({cache.capacity} positions)")
        cos, sin = self.rotary.angles(torch.tensor([position], device=token_ids.device))
        ids = token_ids[:, None]
        x = self._embed(ids, torch.ones_like(ids))
        cache.valid[:, position] = True
        mask = cache.valid[:, None, None, : position + 1]
        for index, block in enumerate(self.blocks):
            assert isinstance(block, _Block)
            q, k, v = block._heads(x)
            q, k = _Rotary.rotate(q, cos, sin), _Rotary.rotate(k, cos, sin)
            cache.keys[index][:, :, position] = k[:, :, 0]
            cache.values[index][:, :, position] = v[:, :, 0]
            attended = F.scaled_dot_product_attention(
                q,
                cache.keys[index][:, :, : position + 1],
                cache.values[index][:, :, : position + 1],
                attn_mask=mask,
            )
            x = block._finish(x, attended)
        cache.length = position + 1
        return self._logits(x[:, 0])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
