"""The named choices of the configs, as ``Literal`` types with one check each."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["SamplerKind", "DistilSigma", "PriorCorrection", "LrDecay", "Precision", "CalibrationSplit",
           "ClassifierInput", "check_choice"]

SamplerKind = Literal["heun", "stochastic"]
DistilSigma = Literal["lognormal", "loguniform"]
PriorCorrection = Literal["weights", "offset"]
LrDecay = Literal["constant", "cosine"]
Precision = Literal["fp32", "bf16"]
CalibrationSplit = Literal["train", "val"]
ClassifierInput = Literal["noisy", "denoised"]


def check_choice(what: str, value, choices) -> None:
    """Raises ``ValueError("<what> must be one of [...], got <value>")`` unless ``value`` is one of ``choices`` (a
    ``Literal`` type or a sequence)."""
    allowed = get_args(choices) or tuple(choices)
    if value not in allowed:
        raise ValueError(f"{what} must be one of {list(allowed)}, got {value!r}")
