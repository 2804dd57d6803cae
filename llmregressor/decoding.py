"""The constrained number decoder: one engine for training, rollouts and prediction.

At position ``k`` the policy's distribution is a softmax over the codec symbols the grammar
allows there, computed from the backbone's hidden state projected onto those symbols'
output embeddings only. Greedy decoding, sampling, teacher-forced log-probs and entropy
all use that same masked, renormalized distribution, so what is sampled is exactly what
is trained. Any :class:`~llmregressor.backbone_protocol.Backbone` serves: the pretrained
LM with LoRA adapters or the from-scratch MLP encoder + Transformer decoder.

Sampling is inverse-CDF sampling from uniforms the caller supplies. The estimator draws
each row's uniforms as a Latin hypercube (its draws stratified at every position) from a
generator seeded by the row's key (a hash of its prompt or of its feature values), which
makes sampled predictions repeatable and independent of batch composition and row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .backbone_protocol import Backbone

__all__ = ["NumberPolicy", "Rollout", "TokenScores"]


@dataclass
class Rollout:
    """Decoded symbol sequences.

    Attributes
    ----------
    tokens : Tensor of shape (batch, columns, length)
        Symbol indices (into the codec's symbols).
    log_probs : Tensor of shape (batch, columns, length)
        Masked log-probability of each chosen symbol under the sampling distribution
        (at the decoding temperature).
    """

    tokens: torch.Tensor
    log_probs: torch.Tensor


@dataclass
class TokenScores:
    """Teacher-forced scores of given symbol sequences (with gradients).

    Attributes
    ----------
    log_probs : Tensor of shape (batch, columns, length)
        Masked log-probability of each given symbol.
    entropy : Tensor of shape (batch, columns, length)
        Entropy of the masked distribution at each position.
    table : Tensor of shape (batch, columns, length, n_symbols)
        Masked log-probabilities of every symbol at each position (``-inf`` where the
        grammar forbids), e.g. for cross-entropy toward other targets.
    """

    log_probs: torch.Tensor
    entropy: torch.Tensor
    table: torch.Tensor


class NumberPolicy:
    """A backbone plus a codec grammar: the distribution over number symbol sequences.

    Parameters
    ----------
    backbone : Backbone
        Gives hidden states and the symbols' output embeddings.
    allowed : ndarray of bool, shape (length, n_symbols)
        The codec grammar (:meth:`~llmregressor.codecs.NumberCodec.allowed_mask`).
    """

    def __init__(self, backbone: Backbone, allowed: np.ndarray) -> None:
        self.backbone = backbone
        self.allowed = torch.as_tensor(allowed, dtype=torch.bool, device=backbone.device)
        self.length = self.allowed.shape[0]
        # Index of the last allowed symbol per position: the fallback when float rounding
        # lets a uniform land past the end of the CDF.
        n_symbols = self.allowed.shape[1]
        positions = torch.arange(n_symbols, device=backbone.device).expand_as(self.allowed)
        self._last_allowed = torch.where(self.allowed, positions, -1).amax(dim=1)

    def log_softmax(
        self, hidden: torch.Tensor, positions: slice | int, temperature: float = 1.0
    ) -> torch.Tensor:
        """Masked log-probabilities over the symbols.

        Parameters
        ----------
        hidden : Tensor of shape (..., hidden) or (..., n_positions, hidden)
            Backbone hidden states.
        positions : int or slice
            Grammar position(s) the hidden states predict.
        temperature : float, default=1.0
            Divides the logits.

        Returns
        -------
        log_probs : Tensor of shape (..., n_symbols)
            ``-inf`` at symbols the grammar forbids.
        """
        logits = hidden @ self.backbone.number_embeddings.T
        if temperature != 1.0:
            logits = logits / temperature
        return torch.log_softmax(logits.masked_fill(~self.allowed[positions], -torch.inf), dim=-1)

    @torch.no_grad()
    def decode(
        self,
        batch: dict[str, torch.Tensor],
        uniforms: torch.Tensor | None = None,
        greedy_columns: int = 0,
        temperature: float = 1.0,
    ) -> Rollout:
        """Decode greedy and/or sampled sequences, encoding each row once.

        Parameters
        ----------
        batch : dict of Tensor
            Collated rows (:meth:`Backbone.collate`).
        uniforms : Tensor of shape (batch, n_sampled, length), optional
            Uniform [0, 1) draws that drive inverse-CDF sampling.
        greedy_columns : int, default=0
            Number of greedy decodes per row, placed before the sampled columns.
        temperature : float, default=1.0
            Sampling temperature; greedy columns are unaffected (the argmax is the same).

        Returns
        -------
        rollout : Rollout
            ``columns = greedy_columns + n_sampled`` sequences per row.
        """
        n_sampled = 0 if uniforms is None else uniforms.shape[1]
        columns = greedy_columns + n_sampled
        if columns < 1:
            raise ValueError("decode needs at least one greedy or sampled column")
        self.backbone.train(False)
        state, hidden = self.backbone.encode(batch)
        n_rows = hidden.shape[0]
        state = self.backbone.expand(state, columns)
        hidden = hidden.repeat_interleave(columns, dim=0)
        is_greedy = (torch.arange(columns, device=hidden.device) < greedy_columns).repeat(n_rows)
        flat_uniforms = None
        if uniforms is not None:
            padded = uniforms.new_zeros((n_rows, columns, self.length))
            padded[:, greedy_columns:] = uniforms
            flat_uniforms = padded.reshape(n_rows * columns, self.length)

        tokens, log_probs = [], []
        for position in range(self.length):
            step_log_probs = self.log_softmax(hidden, position, temperature)
            choice = step_log_probs.argmax(dim=-1)
            if flat_uniforms is not None:
                sampled = self._inverse_cdf(step_log_probs, flat_uniforms[:, position], position)
                choice = torch.where(is_greedy, choice, sampled)
            tokens.append(choice)
            log_probs.append(step_log_probs.gather(-1, choice[:, None])[:, 0])
            if position + 1 < self.length:
                hidden = self.backbone.advance(state, choice[:, None])
                hidden = hidden[:, -1]
        shape = (n_rows, columns, self.length)
        return Rollout(
            torch.stack(tokens, dim=-1).reshape(shape), torch.stack(log_probs, -1).reshape(shape)
        )

    def n_outcomes(self) -> int:
        """Return how many grammatical sequences there are (the support of the policy)."""
        return int(np.prod(self.allowed.sum(dim=1).cpu().numpy(), dtype=np.float64))

    def outcome_codes(self) -> torch.Tensor:
        """Every grammatical sequence, shape ``(n_outcomes, length)``.

        In lexicographic order of the allowed symbols (the last position varies fastest),
        the order of :meth:`exact_distribution`'s probabilities.
        """
        allowed = [torch.nonzero(row)[:, 0] for row in self.allowed]
        grids = torch.meshgrid(*allowed, indexing="ij")
        return torch.stack([grid.reshape(-1) for grid in grids], dim=1)

    @torch.no_grad()
    def exact_distribution(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the exact distribution over every grammatical sequence, row by row.

        The digit tree is expanded level by level: each row is encoded once, then every
        allowed prefix of each length is fed as one single-symbol step, sharing the row's
        encoding (for a normalized codec of ``d`` base-``b`` digits,
        ``(b**d - 1) / (b - 1)`` evaluations per row and ``b**d`` outcomes). No sampling
        noise: means and quantiles of the result are exact.

        Parameters
        ----------
        batch : dict of Tensor
            Collated rows (:meth:`Backbone.collate`).

        Returns
        -------
        codes : Tensor of shape (n_outcomes, length)
            Every grammatical sequence (:meth:`outcome_codes`).
        probs : Tensor of shape (batch, n_outcomes)
            Each row's probability of each sequence (float64; rows sum to 1 up to the
            rounding of the float32 log-probabilities).
        """
        self.backbone.train(False)
        state, hidden = self.backbone.encode(batch)
        n_rows = hidden.shape[0]
        device = hidden.device
        log_joint = torch.zeros((n_rows, 1), dtype=torch.float64, device=device)
        for position in range(self.length):
            symbols = torch.nonzero(self.allowed[position])[:, 0]
            k = len(symbols)
            step = self.log_softmax(hidden, position)[:, symbols].double()
            # Rows of ``hidden`` are (row, prefix): each prefix grows by each symbol in
            # turn, so the last position varies fastest, as in outcome_codes().
            n_prefixes = log_joint.shape[1]
            log_joint = (log_joint[..., None] + step.reshape(n_rows, -1, k)).reshape(n_rows, -1)
            if position + 1 < self.length:
                state = self.backbone.expand(state, k)
                hidden = self.backbone.advance(state, symbols.repeat(n_rows * n_prefixes)[:, None])
                hidden = hidden[:, -1]
        return self.outcome_codes(), log_joint.exp()

    def _inverse_cdf(
        self, log_probs: torch.Tensor, uniforms: torch.Tensor, position: int
    ) -> torch.Tensor:
        # float64 keeps the CDF monotone and exact for symbols of zero probability,
        # which can therefore never be chosen.
        probs = torch.softmax(log_probs.double(), dim=-1)
        cdf = probs.cumsum(dim=-1)
        targets = (uniforms.double() * cdf[:, -1]).unsqueeze(-1)
        index = torch.searchsorted(cdf, targets, right=True)[:, 0]
        return torch.minimum(index, self._last_allowed[position])

    def score(
        self, batch: dict[str, torch.Tensor], tokens: torch.Tensor, temperature: float = 1.0
    ) -> TokenScores:
        """Teacher-forced log-probs and entropies of given sequences, with gradients.

        Each row is encoded once; its state is expanded to that row's sequences, and
        all but the last symbol are fed in a single forward pass.

        Parameters
        ----------
        batch : dict of Tensor
            Collated rows, ``batch`` of them.
        tokens : Tensor of shape (batch, columns, length)
            Symbol indices to score.
        temperature : float, default=1.0
            Temperature of the scored distribution (that of the rollouts).

        Returns
        -------
        scores : TokenScores
        """
        n_rows, columns, length = tokens.shape
        flat = tokens.reshape(n_rows * columns, length)
        if self.backbone.checkpointing and torch.is_grad_enabled():
            # Checkpointed layers keep no cache: one pass over prompt and symbols instead.
            hidden_seq = self.backbone.encode_sequences(batch, columns, flat[:, :-1])
        else:
            state, hidden = self.backbone.encode(batch)
            state = self.backbone.expand(state, columns)
            first = hidden.repeat_interleave(columns, dim=0)[:, None]
            if length > 1:
                rest = self.backbone.advance(state, flat[:, :-1])
                hidden_seq = torch.cat([first, rest], dim=1)
            else:
                hidden_seq = first
        table = self.log_softmax(hidden_seq, slice(None), temperature)
        chosen = table.gather(-1, flat[..., None])[..., 0]
        probs = table.exp()
        entropy = -torch.where(probs > 0, probs * table, 0.0).sum(-1)
        return TokenScores(
            chosen.reshape(tokens.shape),
            entropy.reshape(tokens.shape),
            table.reshape(*tokens.shape, -1),
        )
