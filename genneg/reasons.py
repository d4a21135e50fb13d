"""One classifier per reason of the oracle, stacked as one guide (``GenNegConfig.classifier_per_reason``).

A round's sample-level classifier learns "valid" from the verdict alone, whatever made a sample invalid; with
several reasons (collision, off-road) one classifier may learn the easy one and not the other. Here each reason r
gets its own classifier C_r, trained on that reason's labels (per element when the oracle flags elements and the
domain builds a per-element network), calibrated and windowed on its own, and the round guides with

    log C(x, σ) = Σ_r 1[σ ≤ σ_r] log C_r(x, σ)

(σ_r: reason r's window). Summing treats the reasons as independent given x_σ: an approximation, measured against
the single classifier in docs/method.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .classifier import NoisyClassifier, logit_of_log_prob
from .oracle import OracleResult

__all__ = ["ReasonClassifiers", "member_slot", "reason_labels", "member_file", "skip_reason"]


class ReasonClassifiers(nn.Module):
    """A round's per-reason classifiers acting as one: ``log_prob`` sums the members' log C within each member's
    σ window; ``logit`` is the logit of the product of the members' C at every σ (for reports, judged on the
    sample's verdict)."""

    fixed_sigma = None

    def __init__(self, members: dict[str, NoisyClassifier]):
        super().__init__()
        if not members:
            raise ValueError("ReasonClassifiers needs at least one member classifier")
        self._reasons = tuple(members)
        self.members = nn.ModuleDict({member_slot(r): c for r, c in members.items()})

    @property
    def reasons(self) -> tuple[str, ...]:
        return self._reasons

    def member(self, reason: str) -> NoisyClassifier:
        """The classifier of ``reason``."""
        if reason not in self._reasons:
            raise KeyError(f"no classifier for reason {reason!r}; this round has {list(self._reasons)}")
        return self.members[member_slot(reason)]

    @property
    def sigma_max_guidance(self) -> Tensor:
        """The widest member window: guidance calls the round up to it, each member stops at its own."""
        return torch.stack([c.sigma_max_guidance for c in self.members.values()]).max()

    def _read(self, x: Tensor, sigma: Tensor, cond: Any) -> Tensor | None:
        """What every member reads, computed once (one evaluation of their shared base under
        ``classifier_input = "denoised"``), or None when the members read different things."""
        first, *rest = self.members.values()
        return first.read(x, sigma, cond) if all(c.denoiser is first.denoiser for c in rest) else None

    def log_prob(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        total, read = 0.0, self._read(x, sigma, cond)
        for c in self.members.values():
            lp = c.log_prob(x, sigma, cond, read=read)
            total = total + torch.where(sigma <= c.sigma_max_guidance, lp, torch.zeros_like(lp))
        return total

    def logit(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        read = self._read(x, sigma, cond)
        return logit_of_log_prob(sum(nn.functional.logsigmoid(c.logit(x, sigma, cond, read=read))
                                     for c in self.members.values()))

    def forward(self, x, sigma, cond=None):
        return self.logit(x, sigma, cond)


def member_slot(reason: str) -> str:
    """The key of a reason's member in ``ReasonClassifiers.members`` (and its weights' names): the reason itself,
    unless it cannot be a module name (it contains a dot, or names an ``nn.Module`` attribute: a reason called
    ``float`` would shadow ``Module.float``), then ``reason_<name>`` with dots as underscores."""
    if "." in reason or hasattr(nn.Module, reason) or reason.startswith("reason_"):
        return "reason_" + reason.replace(".", "_")
    return reason


def reason_labels(result: OracleResult, reason: str, elementwise: bool) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """Reason ``reason``'s labels of labelled samples: valid-for-this-reason ``[B]`` and, for a per-element
    classifier, ``(valid [B, E], exists [B, E])`` per element."""
    y = torch.as_tensor(~result.reasons[reason])
    if not elementwise:
        return y, None
    return y, (torch.as_tensor(~result.elements[reason]), torch.as_tensor(result.element_defined))


def member_file(stem: str, reason: str) -> str:
    """File stem of a member's training files (kept apart from the ``classifier<k>`` names of finished rounds)."""
    return f"reason-{reason}.{stem}"


def skip_reason(y: np.ndarray | Tensor) -> str:
    """Why a reason gets no classifier this round (its labels hold one class only), or ""."""
    n, valid = len(y), int(torch.as_tensor(y).sum())
    if valid == n:
        return "no sample commits it"
    if valid == 0:
        return "every sample commits it"
    return ""
