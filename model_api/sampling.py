"""Choosing the next token from logits: penalties, temperature, nucleus, seeded RNG."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How one request wants its tokens chosen and when it ends."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


class Sampler:
    """Per-request sampling state: its RNG and the counts its penalties need."""

    def __init__(self, params: SamplingParams, vocab_size: int, device: torch.device) -> None:
        self.params = params
        self.generator = torch.Generator(device=device)
        # Without a seed each request still gets its own stream, independent of others.
        seed = params.seed if params.seed is not None else random.getrandbits(63)
        self.generator.manual_seed(seed % (2**63))
        needs_counts = params.presence_penalty or params.frequency_penalty
        self.counts = (
            torch.zeros(vocab_size, dtype=torch.float32, device=device) if needs_counts else None
        )

    def next_token(self, logits: torch.Tensor) -> int:
        """Pick a token from one row of float32 logits."""
        p = self.params
        if self.counts is not None:
            logits = logits - p.frequency_penalty * self.counts
            logits = logits - p.presence_penalty * (self.counts > 0).float()
        if p.temperature == 0:
            token = int(torch.argmax(logits))
        else:
            probs = torch.softmax(logits / p.temperature, dim=-1)
            if p.top_p < 1.0:
                probs = _nucleus(probs, p.top_p)
            token = int(torch.multinomial(probs, 1, generator=self.generator))
        if self.counts is not None:
            self.counts[token] += 1
        return token


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (at least one)."""
    sorted_probs, order = torch.sort(probs, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    sorted_probs = torch.where(mass_before < top_p, sorted_probs, torch.zeros_like(sorted_probs))
    sorted_probs[0] = sorted_probs[0].clamp_min(1e-12)
    kept = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return kept / kept.sum()
