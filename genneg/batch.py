"""Batch utilities: slicing and repeating nested structures (arrays, tensors, dicts, tuples) along the batch axis."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

__all__ = ["batch_size_of", "take", "repeat_each", "concat", "to_device"]


def batch_size_of(samples) -> int:
    """Length of the batch axis of an array, tensor, or a dict/tuple of them."""
    if isinstance(samples, (np.ndarray, torch.Tensor)):
        return int(samples.shape[0])
    if isinstance(samples, Mapping):
        return batch_size_of(next(iter(samples.values())))
    if isinstance(samples, (tuple, list)):
        return batch_size_of(samples[0])
    raise TypeError(f"cannot find the batch size of samples of type {type(samples).__name__}")


def take(obj, idx):
    """Slices every array in ``obj`` (array, tensor, dict, tuple, None, or a scalar) along its batch axis."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, np.ndarray):
        return obj if obj.ndim == 0 else obj[idx]  # 0-d arrays are per-batch scalars (e.g. fps)
    if isinstance(obj, torch.Tensor):
        if obj.ndim == 0:
            return obj
        return obj[torch.as_tensor(idx, device=obj.device)] if not isinstance(idx, slice) else obj[idx]
    if isinstance(obj, Mapping):
        return {k: take(v, idx) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(take(v, idx) for v in obj)
    if isinstance(obj, list):
        return [take(v, idx) for v in obj]
    raise TypeError(f"cannot slice a batch of type {type(obj).__name__}")


def repeat_each(obj, k: int):
    """Repeats every sample of ``obj`` k times in place (``[a, b] -> [a, a, b, b]`` for k = 2)."""
    if obj is None:
        return None
    return take(obj, np.repeat(np.arange(batch_size_of(obj)), k))


def concat(parts: list):
    """Concatenates a list of same-structured batches along the batch axis."""
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, Mapping):
        return {k: concat([p[k] for p in parts]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(concat([p[i] for p in parts]) for i in range(len(first)))
    return first  # scalars shared by the whole batch


def to_device(obj, device):
    """Moves every tensor in a nested structure to ``device``; other leaves are returned as they are."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj
