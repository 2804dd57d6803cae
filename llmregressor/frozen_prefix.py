"""The frozen lower layers of a language model, computed once per prompt.

With LoRA adapters on the top ``L`` decoder layers only, the layers below them are the
frozen base model: what they compute for a prompt never changes during a fit. A
:class:`FrozenPrefix` runs them once per distinct prompt (without gradients) and keeps
their key/value cache and the hidden states they hand to the first adapted layer, so
that every later SFT step, RL rollout, gradient pass and validation decode of that
prompt runs only the top layers over its tokens. The number tokens that follow the
prompt still go through every layer, on top of the stored cache, as before.

The split is exact (the same computation, regrouped): a test compares it with the
plain forward pass. It relies on the decoder-layer contract that transformers'
Llama-family models share (``embed_tokens``, ``layers``, ``rotary_emb``, ``norm``, each
layer called with a causal mask, position embeddings and a cache), so it is used only
for the model types in :data:`SPLIT_MODEL_TYPES`; other models run the plain forward
pass, with the adapters still on the top layers only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.masking_utils import create_causal_mask

from ._cache_name import cache_argument

__all__ = ["PROMPT_CACHE_BYTES", "SPLIT_MODEL_TYPES", "FrozenPrefix", "supports_split"]

#: Model types whose decoder follows the Llama layer contract the split relies on.
SPLIT_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})

#: Most bytes of prompt results kept during a fit; prompts past it are recomputed on
#: every use (correct, only slower). About 1,500 prompts of 70 tokens of the default
#: model with its 22 frozen layers in bfloat16.
PROMPT_CACHE_BYTES = 2 * 1024**3


def supports_split(decoder: torch.nn.Module) -> bool:
    """Return whether a decoder (the inner model of a causal LM) can be split.

    Parameters
    ----------
    decoder : torch.nn.Module
        The decoder stack, e.g. ``LlamaModel``.
    """
    needed = ("embed_tokens", "layers", "rotary_emb", "norm")
    model_type = getattr(getattr(decoder, "config", None), "model_type", None)
    return model_type in SPLIT_MODEL_TYPES and all(hasattr(decoder, a) for a in needed)


@dataclass
class _PromptResult:
    """One prompt through the frozen layers: their cache and the hidden states they give."""

    keys: torch.Tensor  # (n_frozen, kv_heads, tokens, head_dim)
    values: torch.Tensor  # same shape
    hidden: torch.Tensor  # (tokens, hidden)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.keys, self.values, self.hidden))


class FrozenPrefix:
    """Run a decoder as frozen bottom layers (computed once per prompt) plus top layers.

    Parameters
    ----------
    decoder : torch.nn.Module
        The decoder stack (:func:`supports_split` must hold), with no adapters below
        ``n_frozen``.
    n_frozen : int
        How many bottom layers are frozen, from 1 to the number of layers - 1.
    max_bytes : int, default=PROMPT_CACHE_BYTES
        Budget of the store of prompt results.
    """

    def __init__(
        self, decoder: torch.nn.Module, n_frozen: int, max_bytes: int = PROMPT_CACHE_BYTES
    ) -> None:
        if not 0 < n_frozen < len(decoder.layers):
            raise ValueError(f"n_frozen must be in [1, {len(decoder.layers) - 1}], got {n_frozen}")
        self.decoder = decoder
        self.n_frozen = n_frozen
        self.max_bytes = max_bytes
        self._store: dict[tuple[int, ...], _PromptResult] | None = None
        self._depth = 0
        self._bytes = 0

    @contextmanager
    def caching(self) -> Iterator[None]:
        """Keep prompt results for reuse within the block (nested blocks share one store).

        Outside it nothing is kept: prediction of new rows computes the frozen layers
        once per batch and holds no memory afterwards.
        """
        if self._depth == 0:
            self._store, self._bytes = {}, 0
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._store, self._bytes = None, 0

    @property
    def n_cached(self) -> int:
        """How many prompts' results are kept now."""
        return 0 if self._store is None else len(self._store)

    def encode(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        position_ids: torch.Tensor,
        autocast: Callable[[], AbstractContextManager],
    ) -> tuple[DynamicCache, torch.Tensor]:
        """Encode left-padded prompts as the plain forward pass would.

        Parameters
        ----------
        input_ids, mask, position_ids : Tensor of shape (batch, width)
            Left-padded prompts, their attention mask and position ids.
        autocast : callable
            Returns the context of a pass (its compute precision, and the attention kernel
            for the grad mode it is entered in), entered around each run of layers.

        Returns
        -------
        cache : DynamicCache
            Every layer's keys and values of the prompts (the frozen layers' from the
            store, the top layers' computed now, with gradients if enabled).
        last_hidden_state : Tensor of shape (batch, width, hidden)
            The final (normed) hidden states.
        """
        rows = [tuple(ids[m.bool()].tolist()) for ids, m in zip(input_ids, mask, strict=True)]
        results = self._results(rows, input_ids, mask, position_ids, autocast)
        batch, width = input_ids.shape
        first = results[0]
        _, kv_heads, _, head_dim = first.keys.shape
        keys = first.keys.new_zeros((self.n_frozen, batch, kv_heads, width, head_dim))
        values = torch.zeros_like(keys)
        hidden = first.hidden.new_zeros((batch, width, first.hidden.shape[-1]))
        for row, result in enumerate(results):
            tokens = result.hidden.shape[0]
            keys[:, row, :, width - tokens :] = result.keys
            values[:, row, :, width - tokens :] = result.values
            hidden[row, width - tokens :] = result.hidden
        cache = DynamicCache(config=self.decoder.config)
        for layer in range(self.n_frozen):
            cache.layers[layer].update(keys[layer], values[layer])
        with autocast():
            hidden = self._run(
                self.decoder.layers[self.n_frozen :], hidden, mask, position_ids, cache
            )
            return cache, self.decoder.norm(hidden)

    def _results(
        self,
        rows: list[tuple[int, ...]],
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        position_ids: torch.Tensor,
        autocast: Callable[[], AbstractContextManager],
    ) -> list[_PromptResult]:
        """Each row's frozen-layer result: from the store, or computed for the missing rows."""
        store = self._store if self._store is not None else {}
        missing = [i for i, row in enumerate(rows) if row not in store]
        computed = (
            self._compute(input_ids[missing], mask[missing], position_ids[missing], autocast)
            if missing
            else []
        )
        fresh = dict(zip(missing, computed, strict=True))
        for i, result in fresh.items():
            if self._store is not None and self._bytes + result.nbytes <= self.max_bytes:
                self._store[rows[i]] = result
                self._bytes += result.nbytes
        return [fresh[i] if i in fresh else store[row] for i, row in enumerate(rows)]

    @torch.no_grad()
    def _compute(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        position_ids: torch.Tensor,
        autocast: Callable[[], AbstractContextManager],
    ) -> list[_PromptResult]:
        cache = DynamicCache(config=self.decoder.config)
        with autocast():
            hidden = self.decoder.embed_tokens(input_ids)
            hidden = self._run(
                self.decoder.layers[: self.n_frozen], hidden, mask, position_ids, cache
            )
        width = input_ids.shape[1]
        results = []
        for row in range(input_ids.shape[0]):
            start = width - int(mask[row].sum())
            # Copies (not views) so that a stored row does not pin its whole batch.
            results.append(
                _PromptResult(
                    torch.stack(
                        [cache.layers[i].keys[row, :, start:] for i in range(self.n_frozen)]
                    ).clone(),
                    torch.stack(
                        [cache.layers[i].values[row, :, start:] for i in range(self.n_frozen)]
                    ).clone(),
                    hidden[row, start:].clone(),
                )
            )
        return results

    def _run(
        self,
        layers: torch.nn.ModuleList,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache,
    ) -> torch.Tensor:
        """Run some decoder layers over whole prompts, as the decoder's own forward does."""
        # No cache for the mask: these layers have seen no earlier token of these rows.
        causal_mask = create_causal_mask(
            config=self.decoder.config,
            inputs_embeds=hidden,
            attention_mask=mask,
            position_ids=position_ids,
            **cache_argument(None),
        )
        position_embeddings = self.decoder.rotary_emb(hidden, position_ids=position_ids)
        for layer in layers:
            hidden = layer(
                hidden,
                attention_mask=causal_mask,
                position_embeddings=position_embeddings,
                position_ids=position_ids,
                use_cache=True,
                **cache_argument(cache),
            )
        return hidden
