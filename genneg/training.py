"""One training loop for every network in the project: base denoiser, classifiers, distilled students.

AdamW, EMA of the weights, gradient clipping, linear LR warm-up (then constant or cosine), optional bf16 autocast,
and resumable checkpoints. Every random draw of the loop (batch indices, σ, noise) comes from one ``torch.Generator``
whose state is checkpointed, so a run killed and resumed ends bit-for-bit equal to an uninterrupted one.

Under ``torchrun`` the model is wrapped in DistributedDataParallel: each rank draws its share of every batch from its
own shard of the data with its own generator, gradients are averaged over ranks, the reported loss is the mean over
the whole batch, and rank 0 alone writes checkpoints (holding every rank's generator state) and weights.
"""

from __future__ import annotations

import copy
import hashlib
import math
import numbers
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed, rng
from .choices import LrDecay, Precision, check_choice
from .batch import batch_size_of, take, to_device
from .checkpoint import load_state, save_state, save_weights

__all__ = ["TrainConfig", "train", "TrainResult", "seeded", "streamed"]

LossFn = Callable[[nn.Module, Any, torch.Generator], Tensor]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


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
        seed: seeds the loop's generator (batches, σ, noise) and nothing else. Inside a run every stage trains on
            ``streamed(cfg, run_seed, stage)``: this seed combined with the run seed and the stage's name.
        precision: "fp32", or "bf16" to run the forward pass and loss under ``torch.autocast`` in bfloat16 (weights,
            optimiser and EMA stay fp32). Meant for CUDA; on a CPU it works but is usually slower.
    """

    steps: int = 2000
    batch_size: int = 512
    lr: float = 2e-3
    warmup: int = 100
    lr_decay: LrDecay = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    seed: int = 0
    precision: Precision = "fp32"

    def __post_init__(self):
        for name in ("steps", "batch_size", "warmup", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise ValueError(f"TrainConfig.{name} must be an integer, got {value!r}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"TrainConfig.lr must be positive and finite, got {self.lr}")
        if not (0 <= self.weight_decay < math.inf and 0 <= self.grad_clip < math.inf):
            raise ValueError(f"TrainConfig.weight_decay and grad_clip must be finite and >= 0, got "
                             f"{self.weight_decay}, {self.grad_clip}")
        check_choice("TrainConfig.lr_decay", self.lr_decay, LrDecay)
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.warmup < 0 or self.checkpoint_every < 0 or self.grad_clip < 0:
            raise ValueError("warmup, checkpoint_every and grad_clip must be >= 0")
        check_choice("TrainConfig.precision", self.precision, Precision)

    def lr_at(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.lr_decay == "cosine":
            warm *= 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return self.lr * warm


def streamed(cfg: TrainConfig, run_seed: int, *names: str | int) -> TrainConfig:
    """``cfg`` whose loop draws from the named stream ``(run_seed, *names, cfg.seed)`` (``genneg.rng``)."""
    return replace(cfg, seed=rng.stream_seed(run_seed, *names, "train", cfg.seed))


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


def _check_finite_data(data, name: str, where: str = "data") -> None:
    """Refuses training data holding NaN or inf (it would surface later as a NaN loss far from its cause)."""
    if isinstance(data, Tensor):
        if data.is_floating_point() and not bool(torch.isfinite(data).all()):
            raise ValueError(f"cannot train {name!r}: {where} contains NaN or inf")
    elif isinstance(data, dict):
        for k, v in data.items():
            _check_finite_data(v, name, f"{where}[{k!r}]")
    elif isinstance(data, (tuple, list)):
        for i, v in enumerate(data):
            _check_finite_data(v, name, f"{where}[{i}]")


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
    on_step: Callable[[int, nn.Module], None] | None = None,
    dropout: bool = True,
) -> TrainResult:
    """Trains ``model`` in place on ``loss_fn(model, batch, generator) -> [B] or scalar``.

    Args:
        loss_fn: must run the network through its ``forward`` (``model(...)``): under ``torchrun`` the model it gets
            is a DDP wrapper, which syncs gradients only for what goes through ``forward`` (other attributes are
            passed through to the module, for parameter-free helpers such as ``loss_weight``).
        data: a batch-first structure (tensor, or dict/tuple of tensors) from which batches are drawn.
        run_dir: where ``{name}.state.pt`` (resumable) and ``{name}.safetensors`` (EMA weights) are written.
        resume: continue from ``{name}.state.pt`` in ``run_dir`` if it exists.
        config_to_save: JSON-able config stored in the safetensors metadata.
        callback: called every step with ``{"step", "loss", "lr", "grad_norm"}`` (the loss is the whole batch's mean,
            over every rank).
        on_step: called after every step as ``on_step(step, ema)`` on every rank, e.g. to evaluate the EMA weights
            every K steps; it runs with torch's global generator forked, so it cannot change the run's draws.
        dropout: train in ``train()`` mode (dropout layers and a network's condition dropout active); False runs the
            model as it samples (``eval()`` mode), for regressing a deterministic teacher (distillation).

    Returns:
        The EMA model (a copy; ``model`` holds the raw weights) and the final step.
    """
    n = batch_size_of(data)
    if n == 0:
        raise ValueError(f"cannot train {name!r} on an empty dataset")
    _check_finite_data(data, name)
    world = distributed.world_size()
    if n < world or cfg.batch_size < world:
        raise ValueError(f"cannot split {name!r} over {world} ranks: {n} rows and batches of {cfg.batch_size}")
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    gen = torch.Generator(device="cpu").manual_seed(distributed.rank_seed(cfg.seed))
    state_path = Path(run_dir) / f"{name}.state.pt" if run_dir else None
    loop = _Loop(model, ema, opt, gen, cfg, name)
    # layers that draw from the global generator (dropout) get a seeded, checkpointed stream
    with seeded(distributed.rank_seed(cfg.seed)):
        if resume and state_path is not None and state_path.exists():
            loop.restore(load_state(state_path))
        loop.run(loss_fn, data, n, device, state_path, callback, on_step, dropout)
        # inside the seeded block, so the global generator saved is the loop's; every rank takes part (it gathers
        # their generators), rank 0 writes
        snapshot = loop.snapshot() if run_dir is not None else None
    _check_ranks_agree(ema, name)
    if run_dir is not None:
        if distributed.is_main():
            save_weights(Path(run_dir) / f"{name}.safetensors", ema, {"train": asdict(cfg), **(config_to_save or {})})
            save_state(state_path, snapshot)
        distributed.barrier()  # nobody reads the weights before they are there
    return TrainResult(ema, loop.step, loop.loss)


def _check_ranks_agree(model: nn.Module, name: str) -> None:
    """Under torchrun, every rank must end with the same weights; a mismatch means gradients were not synced."""
    if not distributed.is_distributed():
        return
    digest = hashlib.sha256()
    for t in model.state_dict().values():
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    if len(set(distributed.all_gather_objects(digest.hexdigest()))) > 1:
        raise RuntimeError(f"{name}: the ranks ended with different weights; does the loss function call the model "
                           "through forward (model(...))?")


class _DDP(DistributedDataParallel):
    """DDP that passes unknown attributes through to the wrapped module (``loss_weight`` and the like)."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


class _Loop:
    """The optimisation loop's state: model, EMA, optimiser, generator, step; checkpointed as one snapshot."""

    def __init__(self, model, ema, opt, gen, cfg: TrainConfig, name: str):
        self.model, self.ema, self.opt, self.gen, self.cfg, self.name = model, ema, opt, gen, cfg, name
        self.step, self.loss = 0, float("nan")

    def run(self, loss_fn, data, n, device, state_path, callback, on_step=None, dropout: bool = True):
        cfg, world, rank = self.cfg, distributed.world_size(), distributed.rank()
        rows = torch.arange(rank, n, world)  # this rank's shard of the data
        local = cfg.batch_size // world + (rank < cfg.batch_size % world)  # this rank's share of each batch
        net = self.model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            net = _DDP(self.model, device_ids=ids, static_graph=True)
        dtype = PRECISIONS[cfg.precision]
        self.model.train(dropout)
        while self.step < cfg.steps:
            idx = rng.randint(0, len(rows), (local,), self.gen)
            batch = to_device(take(data, idx if world == 1 else rows[idx]), device)
            for g in self.opt.param_groups:
                g["lr"] = cfg.lr_at(self.step)
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                loss = loss_fn(net, batch, self.gen).float().mean()
            mean = loss if world == 1 else distributed.all_reduce_sum(loss.detach() * local) / cfg.batch_size
            if not torch.isfinite(mean):
                raise FloatingPointError(f"{self.name}: loss became {mean.item()} at step {self.step}; "
                                         "lower the learning rate")
            self.opt.zero_grad(set_to_none=True)
            # DDP averages gradients over ranks; scaling by the share of the batch makes that the whole batch's mean
            (loss if world == 1 else loss * (local * world / cfg.batch_size)).backward()
            gnorm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip if cfg.grad_clip else float("inf"))
            self.opt.step()
            _ema_update(self.ema, self.model, min(cfg.ema_decay, (1 + self.step) / (10 + self.step)))
            self.step, self.loss = self.step + 1, mean.item()
            if callback:
                callback({"step": self.step, "loss": self.loss, "lr": cfg.lr_at(self.step - 1),
                          "grad_norm": float(gnorm)})
            if on_step:
                with torch.random.fork_rng(devices=[]):
                    on_step(self.step, self.ema)
            if state_path is not None and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 \
                    and self.step < cfg.steps:
                snapshot = self.snapshot()
                if distributed.is_main():
                    save_state(state_path, snapshot)

    def snapshot(self) -> dict:
        rngs = distributed.all_gather_objects((self.gen.get_state(), torch.get_rng_state()))
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "rng": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout and other layers draw from the global generator
            "cfg": asdict(self.cfg),
        }
        if len(rngs) > 1:
            state.update(world_size=len(rngs), rank_rng=[g for g, _ in rngs], rank_torch_rng=[t for _, t in rngs])
        return state

    def restore(self, state: dict) -> None:
        saved, defaults = state.get("cfg", {}), asdict(TrainConfig())
        changed = {k for k, v in asdict(self.cfg).items()
                   if k not in ("steps", "checkpoint_every") and saved.get(k, defaults[k]) != v}
        if changed:
            raise ValueError("cannot resume: the train config changed since the checkpoint "
                             f"({', '.join(sorted(changed))})")
        world, saved_world = distributed.world_size(), int(state.get("world_size", 1))
        if saved_world != world:
            raise ValueError(f"cannot resume: the checkpoint was written by {saved_world} process(es), this run has "
                             f"{world}; resume with the same number of processes")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        rank = distributed.rank()
        self.gen.set_state(state["rng"] if world == 1 else state["rank_rng"][rank])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"] if world == 1 else state["rank_torch_rng"][rank])
        self.step = int(state["step"])
