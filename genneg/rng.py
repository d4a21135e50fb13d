"""Named random streams and device-correct draws.

Every random draw of a run comes from a stream named by ``(run seed, stage, purpose)``: the base's training loop,
round 2's samples, round 2's hold-out split, the evaluation's noise, ... ``stream_seed`` hashes the names with
``numpy.random.SeedSequence``, so streams of different names or run seeds are independent (no offsets such as
``seed * 1000 + k`` that collide between stages or seeds).

Draws go through ``randn`` / ``rand`` / ``randint`` / ``randperm``: each draws where its generator lives (the
training loops' generators are CPU generators, so results do not depend on the device) and moves the result to the
requested device. Passing a CUDA tensor's device to ``torch.randn(..., generator=cpu_gen)`` raises on a GPU; these
helpers never do.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["stream_seed", "generator", "numpy_rng", "randn", "rand", "randint", "randperm", "multinomial"]


_MASK64 = (1 << 64) - 1


def _word(name: str | int) -> int:
    if isinstance(name, np.integer):
        name = int(name)
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        raise TypeError(f"stream names are strings or integers, got {name!r}")
    if isinstance(name, int):
        return name & _MASK64  # negative integers as their 64-bit two's complement
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def stream_seed(run_seed: int, *names: str | int) -> int:
    """A 63-bit seed for the stream ``names`` of run ``run_seed``, e.g. ``stream_seed(0, "round2", "samples")``.

    Distinct names give independent streams; ``("round", 2)`` and ``("round2",)`` are different streams. Strings are
    hashed (SHA-256), integers enter as they are; the words then go through ``SeedSequence``.
    """
    if isinstance(run_seed, bool) or not isinstance(run_seed, (int, np.integer)):
        raise ValueError(f"run seed must be an integer, got {run_seed!r}")
    # the string/int tag keeps ("x", 1) apart from a string whose hash happens to equal 1
    words = [_word(int(run_seed))] + [w for n in names for w in (int(isinstance(n, str)), _word(n))]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) >> 1)


def generator(run_seed: int, *names: str | int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``stream_seed(run_seed, *names)``."""
    return torch.Generator(device="cpu").manual_seed(stream_seed(run_seed, *names))


def numpy_rng(run_seed: int, *names: str | int) -> np.random.Generator:
    """A numpy ``Generator`` on the stream ``names`` of run ``run_seed``."""
    return np.random.default_rng(stream_seed(run_seed, *names))


def _gen_device(gen: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if gen is None else gen.device


def randn(shape, generator: torch.Generator | None = None, *, device=None, dtype=None) -> torch.Tensor:
    """Standard normal of ``shape`` drawn on the generator's device, returned on ``device``."""
    x = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=_gen_device(generator))
    return x if device is None else x.to(device)


def rand(shape, generator: torch.Generator | None = None, *, device=None, dtype=None) -> torch.Tensor:
    """Uniform on [0, 1) of ``shape`` drawn on the generator's device, returned on ``device``."""
    x = torch.rand(tuple(shape), generator=generator, dtype=dtype, device=_gen_device(generator))
    return x if device is None else x.to(device)


def randint(low: int, high: int, shape, generator: torch.Generator | None = None, *, device=None) -> torch.Tensor:
    """Integers in [low, high) of ``shape`` drawn on the generator's device, returned on ``device``."""
    x = torch.randint(low, high, tuple(shape), generator=generator, device=_gen_device(generator))
    return x if device is None else x.to(device)


def randperm(n: int, generator: torch.Generator | None = None, *, device=None) -> torch.Tensor:
    """A random permutation of ``range(n)`` drawn on the generator's device, returned on ``device``."""
    x = torch.randperm(n, generator=generator, device=_gen_device(generator))
    return x if device is None else x.to(device)


def multinomial(probs: torch.Tensor, n: int, generator: torch.Generator | None = None, *,
                replacement: bool = True, device=None) -> torch.Tensor:
    """``n`` category indices drawn from ``probs`` on the generator's device, returned on ``device``."""
    x = torch.multinomial(probs.to(_gen_device(generator)), n, replacement=replacement, generator=generator)
    return x if device is None else x.to(device)
