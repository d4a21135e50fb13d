"""Checkpoints that lose nothing and execute nothing.

Weights are safetensors with the resolved config as JSON in the metadata; train state (optimizer, EMA, RNG) goes
through ``torch.save`` and comes back only through ``torch.load(..., weights_only=True)``; ``.npz`` files are read
only through ``read_npz`` (``allow_pickle=False``). Every write goes to a
temporary file in the same folder and is moved into place with ``os.replace``, so a killed process leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import distributed

__all__ = ["atomic_write", "write_json", "read_json", "read_npz", "save_weights", "load_weights", "save_state",
           "load_state", "state_step", "save_cache", "load_cache"]


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Calls ``write(tmp_path)`` then atomically renames the temporary file to ``path``.

    Under ``torchrun`` only rank 0 writes (the other ranks hold the same state and return at once), so every
    checkpoint, weights file and JSON record of the engine has one writer. A process killed mid-write leaves
    ``path`` as it was plus a stray temporary file, which the next write of ``path`` removes.
    """
    path = Path(path)
    if not distributed.is_main():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    for stray in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a process killed mid-write
        stray.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    def _write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
            f.write("\n")

    return atomic_write(path, _write)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); was it truncated?") from e


def read_npz(path: str | Path, what: str = "array", required: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` file, read with ``allow_pickle=False``: object arrays are refused, never unpickled.

    Args:
        what: names the file's kind in errors ("AMASS", "motion windows", ...).
        required: keys the file must hold.

    Raises:
        FileNotFoundError: no such file. ValueError: truncated, not an ``.npz``, holds pickled objects, or lacks a
            required key (the message names the file and the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path} is not a readable {what} .npz of plain arrays (truncated, not an .npz, or holding "
                         f"pickled objects?): {type(e).__name__}: {e}") from e
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path}: {what} file lacks {missing}; found {sorted(data)}")
    return data


def save_weights(path: str | Path, state: dict[str, torch.Tensor] | torch.nn.Module,
                 config: dict | None = None) -> Path:
    """Writes tensors (or a module's state_dict) as safetensors, with ``config`` as JSON metadata."""
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"config": json.dumps(config or {}, sort_keys=True, default=_json_default), "format": "pt"}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Reads a safetensors file written by ``save_weights``; returns (state_dict, config)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); "
                         "was it truncated or not written by genneg?") from e
    return state, json.loads(meta.get("config", "{}"))


def save_state(path: str | Path, state: dict) -> Path:
    """Writes a train state (tensors, numbers, strings, nested dicts/lists only) atomically."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path, *, mmap: bool = False) -> dict:
    """Loads a train state with ``weights_only=True``: a file holding code objects is refused, never run. With
    ``mmap`` its tensors stay in the file, mapped into memory, and are read only where they are used."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such train state: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - torch raises several types for corrupt or unsafe files
        raise ValueError(f"refusing or unable to load train state {path}: {type(e).__name__}: {e}") from e


def state_step(path: str | Path) -> int:
    """The step a train state has reached, read without loading its weights, EMA and optimizer moments (the file is
    memory-mapped and none of its tensors is touched). Raises as ``load_state`` does."""
    return int(load_state(path, mmap=True)["step"])


def save_cache(path: str | Path | None, tensors: dict[str, torch.Tensor], extra: dict, key: dict) -> None:
    """Writes an intermediate result (samples, labels) atomically with the ``key`` that says what it holds."""
    if path is not None:
        save_weights(path, tensors, {"cache_key": key, **extra})


def load_cache(path: str | Path | None, key: dict) -> tuple[dict[str, torch.Tensor], dict] | None:
    """What ``save_cache`` wrote under the same ``key``, or None (no file, another key, or an unreadable file)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        tensors, meta = load_weights(path)
    except ValueError:  # a file that is not whole is redone, never trusted
        return None
    return (tensors, meta) if meta.get("cache_key") == key else None
