"""Building, training and loading a domain's base denoiser (the first stage of every run)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .checkpoint import load_weights
from .config import RunConfig
from .diffusion import EDMPrecond, LogNormalSigma, SigmaHandoff, edm_loss
from .domain import Domain
from .rng import stream_seed
from .training import seeded, streamed, train

__all__ = ["build_denoiser", "base_objective", "fit_base", "load_denoiser", "data_dict"]


def build_denoiser(domain: Domain, cfg: RunConfig) -> EDMPrecond:
    """A freshly initialised denoiser; the initial weights come from the stream ``(cfg.seed, "base", "init")``."""
    with seeded(stream_seed(cfg.seed, "base", "init")):
        net = domain.make_denoiser_net(dict(cfg.net))
    return EDMPrecond(net, sigma_data=domain.sigma_data).to(cfg.device)


def data_dict(x0, cond) -> dict:
    """The structure ``train`` draws batches from."""
    return {"x0": x0} if cond is None else {"x0": x0, "cond": cond}


def base_objective(domain: Domain, cfg: RunConfig) -> Callable:
    """``loss(model, batch, gen)`` of the base denoiser: EDM's loss with σ drawn from ``cfg.base_sigma``, plus the
    domain's ``denoised_loss(denoised, x0, sigma, cond)`` where it has one (a geometric term on the denoised sample)."""
    sigma_dist = LogNormalSigma(cfg.base_sigma.p_mean, cfg.base_sigma.p_std)
    extra = getattr(domain, "denoised_loss", None)

    def loss(model, batch, gen):
        return edm_loss(model, batch["x0"], batch.get("cond"), sigma_dist=sigma_dist, extra=extra, generator=gen)

    return loss


def fit_base(domain: Domain, cfg: RunConfig, run_dir: str | Path, *, resume: bool = False,
             callback: Callable[[dict], None] | None = None,
             on_step: Callable[[int, EDMPrecond], None] | None = None) -> EDMPrecond:
    """Trains the base denoiser on the domain's train split; writes ``base.safetensors`` to ``run_dir``.

    ``on_step(step, ema)`` is called after every step (``genneg train`` evaluates the EMA weights with it).
    """
    x0, cond = domain.dataset("train")
    model = build_denoiser(domain, cfg)
    res = train(model, base_objective(domain, cfg), data_dict(x0, cond), streamed(cfg.base, cfg.seed, "base"),
                run_dir=run_dir, name="base", resume=resume,
                config_to_save={"run": cfg.to_dict(), "sigma_data": domain.sigma_data}, callback=callback,
                on_step=on_step)
    return res.model


def load_denoiser(domain: Domain, cfg: RunConfig, path: str | Path) -> EDMPrecond | SigmaHandoff:
    """Loads weights written by ``fit_base`` / distillation into a fresh denoiser of the run's architecture (two of
    them in a ``SigmaHandoff`` where the file records a hand-off σ: a student distilled with ``distil_sigma_min``)."""
    state, meta = load_weights(path)
    handoff = meta.get("handoff_sigma")
    model = build_denoiser(domain, cfg) if not handoff else SigmaHandoff(
        build_denoiser(domain, cfg), build_denoiser(domain, cfg), float(handoff))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape: weights of another architecture
        raise ValueError(f"{path} does not match the {cfg.domain!r} denoiser of this config: {e}") from e
    if missing or unexpected:
        raise ValueError(f"{path} does not match the {cfg.domain!r} denoiser "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval().requires_grad_(False)
