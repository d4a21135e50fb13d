"""One training loop for every network in the project: base denoiser, classifiers, distilled students.

AdamW, EMA of the weights, gradient clipping, linear LR warm-up (then constant or cosine), and resumable
checkpoints. Every random draw of the loop (batch indices, σ, noise) comes from one ``torch.Generator`` whose state
is checkpointed, so a run killed and resumed ends bit-for-bit equal to an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .batch import batch_size_of, take, to_device
from .checkpoint import load_state, save_state, save_weights

__all__ = ["TrainConfig", "train", "TrainResult", "seeded"]

LossFn = Callable[[nn.Module, Any, torch.Generator], Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every network.

    Attributes:
        steps: optimiser steps in total.
        batch_size: samples per step (drawn with replacement from the data).
        lr: peak learning rate after warm-up.
        warmup: steps of linear LR warm-up from 0.
        lr_decay: "constant" after warm-up, or "cosine" down to 0 at ``steps``.
        weight_decay: AdamW's decoupled weight decay.
        grad_clip: max global gradient norm (0 disables clipping).
        ema_decay: EMA of the weights; the EMA copy is what gets saved and used.
        checkpoint_every: steps between train-state checkpoints (0: only at the end).
        seed: seeds the loop's generator (batches, σ, noise) and nothing else.
    """

    steps: int = 2000
    batch_size: int = 512
    lr: float = 2e-3
    warmup: int = 100
    lr_decay: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be positive, got {self.lr}")
        if self.lr_decay not in ("constant", "cosine"):
            raise ValueError(f"TrainConfig.lr_decay must be 'constant' or 'cosine', got {self.lr_decay!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.warmup < 0 or self.checkpoint_every < 0 or self.grad_clip < 0:
            raise ValueError("warmup, checkpoint_every and grad_clip must be >= 0")

    def lr_at(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.lr_decay == "cosine":
            warm *= 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return self.lr * warm


@contextmanager
def seeded(seed: int):
    """Seeds torch's global generator inside the block (e.g. for weight initialisation), restoring it after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class TrainResult:
    model: nn.Module  # the EMA weights, in eval mode
    steps: int
    last_loss: float


def _ema_update(ema: nn.Module, model: nn.Module, decay: float):
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def train(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    cfg: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    name: str = "model",
    resume: bool = False,
    config_to_save: dict | None = None,
    callback: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Trains ``model`` in place on ``loss_fn(model, batch, generator) -> [B] or scalar``.

    Args:
        data: a batch-first structure (tensor, or dict/tuple of tensors) from which batches are drawn.
        run_dir: where ``{name}.state.pt`` (resumable) and ``{name}.safetensors`` (EMA weights) are written.
        resume: continue from ``{name}.state.pt`` in ``run_dir`` if it exists.
        config_to_save: JSON-able config stored in the safetensors metadata.
        callback: called every step with ``{"step", "loss", "lr", "grad_norm"}``.

    Returns:
        The EMA model (a copy; ``model`` holds the raw weights) and the final step.
    """
    n = batch_size_of(data)
    if n == 0:
        raise ValueError(f"cannot train {name!r} on an empty dataset")
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    state_path = Path(run_dir) / f"{name}.state.pt" if run_dir else None
    with seeded(cfg.seed):  # layers that draw from the global generator (dropout) get a seeded, checkpointed stream
        step, loss_val = _loop(model, ema, opt, gen, loss_fn, data, n, device, cfg, state_path, resume, callback, name)
    if run_dir is not None:
        save_weights(Path(run_dir) / f"{name}.safetensors", ema, {"train": asdict(cfg), **(config_to_save or {})})
        save_state(state_path, _snapshot(model, ema, opt, gen, step, cfg))
    return TrainResult(ema, step, loss_val)


def _loop(model, ema, opt, gen, loss_fn, data, n, device, cfg, state_path, resume, callback, name):
    step, loss_val = 0, float("nan")
    if resume and state_path is not None and state_path.exists():
        step = _restore(load_state(state_path), model, ema, opt, gen, cfg)
    model.train()
    while step < cfg.steps:
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        batch = to_device(take(data, idx), device)
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        loss = loss_fn(model, batch, gen).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{name}: loss became {loss.item()} at step {step}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip else float("inf"))
        opt.step()
        _ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        step, loss_val = step + 1, loss.item()
        if callback:
            callback({"step": step, "loss": loss_val, "lr": cfg.lr_at(step - 1), "grad_norm": float(gnorm)})
        if state_path is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
            save_state(state_path, _snapshot(model, ema, opt, gen, step, cfg))
    return step, loss_val


def _snapshot(model, ema, opt, gen, step, cfg) -> dict:
    return {
        "step": step,
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "rng": gen.get_state(),
        "torch_rng": torch.get_rng_state(),  # dropout and other layers draw from the global generator
        "cfg": asdict(cfg),
    }


def _restore(state: dict, model, ema, opt, gen, cfg) -> int:
    saved = state.get("cfg", {})
    changed = {k for k, v in asdict(cfg).items() if k not in ("steps", "checkpoint_every") and saved.get(k) != v}
    if changed:
        raise ValueError(f"cannot resume: the train config changed since the checkpoint ({', '.join(sorted(changed))})")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    gen.set_state(state["rng"])
    if "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"])
    return int(state["step"])
