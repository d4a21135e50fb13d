"""Run configuration: frozen dataclasses, one per concern, with named presets supplied by each domain.

A domain's ``presets()`` returns ``{name: RunConfig}``; the CLI applies overrides with ``dataclasses.replace`` and
saves the resolved config as JSON beside every artefact. No config value is ever evaluated as code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any

from .choices import CalibrationSplit, ClassifierInput, DistilSigma, PriorCorrection, SamplerKind, check_choice
from .training import TrainConfig

__all__ = ["SigmaConfig", "SamplerConfig", "GenNegConfig", "EvalConfig", "RunConfig", "config_from_dict", "BASELINES"]

BASELINES = ("rejection", "no_is", "time_independent", "discriminator", "penalty")


@dataclass(frozen=True)
class SigmaConfig:
    """The base denoiser's training noise levels: ln σ ~ N(p_mean, p_std²) (EDM's defaults, -1.2 and 1.2).

    A domain whose validity is decided at noise levels far below the data scale (traffic: half a metre in units of
    25 m) moves ``p_mean`` down so that the denoiser sees those levels often enough to learn them.
    """

    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self):
        if not (math.isfinite(self.p_mean) and 0 < self.p_std < math.inf):
            raise ValueError(f"SigmaConfig needs a finite p_mean and a positive p_std, got {self.p_mean}, {self.p_std}")


@dataclass(frozen=True)
class SamplerConfig:
    """Attributes: steps (Karras schedule length), sigma_min/sigma_max/rho (schedule), kind ("heun"/"stochastic"),
    batch_size (rows per sampler call; bounds memory)."""

    steps: int = 32
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    kind: SamplerKind = "heun"
    batch_size: int = 8192

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"SamplerConfig.steps must be >= 1, got {self.steps}")
        if not 0 < self.sigma_min < self.sigma_max < math.inf:
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {self.sigma_min}, {self.sigma_max}")
        if not 0 < self.rho < math.inf:
            raise ValueError(f"SamplerConfig.rho must be positive and finite, got {self.rho}")
        check_choice("SamplerConfig.kind", self.kind, SamplerKind)
        if self.batch_size < 1:
            raise ValueError("SamplerConfig.batch_size must be >= 1")


@dataclass(frozen=True)
class GenNegConfig:
    """Settings of the method itself.

    Attributes:
        rounds: classifiers stacked (K).
        samples_per_round: raw samples drawn from the current model each round (M).
        guidance_weight: w in D + w σ² Σ ∇ log C_k (theory: 1).
        guidance_sigma_min / guidance_sigma_max: σ window in which guidance is applied.
        classifier_sigma_min / classifier_sigma_max: log-uniform σ range the classifier is trained on.
        importance_weights: restore the model's prior α in the classifier (False: the "w/o IS" ablation).
        prior_correction: how the prior is restored. "weights": balanced batches with importance weights α (valid)
            and 1 − α (invalid); "offset": balanced batches without weights, then log(α / (1 − α)) added to the
            logit. Both have the optimum P(valid | x_σ) under the model; "offset" keeps the full gradient signal of
            the rare class (Saerens et al. 2002, prior-shift correction).
        calibrate: fit a temperature per σ-bin on held-out labelled samples after training.
        distil_data_fraction: share of each distillation batch drawn from training data rather than the teacher.
        distil_samples: teacher samples generated for distillation.
        distil_sigma: σ distribution of the distillation loss. "lognormal": the base model's (EDM's) training
            distribution, which rarely visits the small σ where a classifier's correction lives; "loguniform": ln σ
            uniform over [classifier_sigma_min, classifier_sigma_max], so the student sees the whole guidance window
            (measured on the toy: the student follows the teacher closer, fewer infractions, and the teacher's NLL).
        distil_pool: 0 (default): the teacher is evaluated afresh on every distillation batch (fresh σ and noise every
            step). P > 0: P triples (x_σ, σ, D_g(x_σ; σ)) are drawn once from the teacher samples (σ from
            ``distil_sigma``, fresh noise) and evaluated in large batches, and the student trains on those: the guided
            teacher (base + every classifier, with autograd) is paid P times instead of steps × batch_size times, so
            long distillations become affordable (measured on the toy: 27k steps from a 3-classifier teacher).
        distil_sigma_min: 0 (default): the student replaces the base at every σ. s > 0: the student learns the guided
            denoiser only for σ ≥ s (``distil_sigma`` cut off below s) and the distilled model hands the
            smaller σ back to the base network (``SigmaHandoff``: still one network evaluation per step). For a
            guidance that acts at large σ this keeps the base's likelihood at the small σ that dominate the NLL
            bound, where a student's fitting error costs most (docs/method.md, "Distillation").
        baselines: which baselines and ablations `genneg run` evaluates.
        penalty_sigma_max: the penalty baseline acts only below this σ.
        auto_window: stop each classifier's guidance above the σ where, on held-out samples, it stops beating the
            prior (its gradient there is noise that guidance would multiply by σ²).
        penalty_weight: strength λ of the differentiable-penalty baseline, log C = −λ·penalty(D(x; σ)).
        guidance_max_ratio: None (default, the method as published), or clip each classifier's guidance step
            σ²·w·∇ log C to this multiple of σ·√d per sample (``GuidanceTerm.max_ratio``), a guard against an
            over-sharp classifier at the smallest σ.
        classifier_per_reason: False (default): one classifier per round on the sample's verdict. True: one per
            reason of the oracle, each on that reason's labels (per element where the oracle gives per-element flags
            and the domain has ``make_element_classifier_net``), each with its own calibration and σ window, their
            log-probabilities summed (docs/method.md, "One classifier per reason"). Round 1's ablations stay single.
        calibration_split: where the held-out samples that calibrate a classifier and set its σ window come from:
            "train" (default): a stratified tenth of the round's samples, drawn on training conditions; "val": a
            tenth as many samples drawn on the domain's ``val`` conditions (held-out maps), and the classifier
            trains on all of the round's samples.
        min_minority: 0 (default): every round draws ``samples_per_round``. N > 0: a round whose first
            ``samples_per_round`` samples hold fewer than N of their rarer class in expectation draws more, up to
            ⌈N / min(α̂, 1 − α̂)⌉ in all (α̂ from those first samples; ``max_samples_per_round`` when they hold
            none of a class), so a classifier sees about N examples of the class it must learn (200 / α when α is
            small).
        max_samples_per_round: the cap on a round's samples under ``min_minority``.
        classifier_input: "noisy" (default): a classifier reads x_σ. "denoised": it reads the base model's denoised
            estimate D(x_σ; σ) in x_σ's place (the same scaling, σ still given), and guidance differentiates through
            D. A function of x_σ, so the classifier's optimum is still P(valid | x_σ); what is decided early in
            sampling but hidden by the noise (two vehicles heading for one spot, a body's lowest point) is in D's
            estimate. Costs one more denoiser evaluation per round's guide (its per-reason classifiers share it)
            and its backward pass in guidance.
        oracle_curriculum: () (default): every round labels with the run's oracle. Otherwise one keyword dict per
            round (the first ``len`` rounds) for the domain's ``oracle(**kwargs)``, e.g. looser thresholds
            ``({"penetration_mm": 300}, {"penetration_mm": 150})``, so early rounds have a valid class to learn
            from; later rounds and every evaluation use the run's oracle. The valid sets must be nested (each round's
            inside the previous one's) for the stacked classifiers to target the final valid set.
    """

    rounds: int = 2
    samples_per_round: int = 20000
    guidance_weight: float = 1.0
    guidance_sigma_min: float = 0.0
    guidance_sigma_max: float = math.inf
    classifier_sigma_min: float = 0.002
    classifier_sigma_max: float = 80.0
    importance_weights: bool = True
    prior_correction: PriorCorrection = "weights"
    calibrate: bool = True
    distil_data_fraction: float = 0.0
    distil_samples: int = 20000
    distil_sigma: DistilSigma = "lognormal"
    distil_pool: int = 0
    distil_sigma_min: float = 0.0
    baselines: tuple[str, ...] = BASELINES
    penalty_weight: float = 10.0
    penalty_sigma_max: float = 1.0
    auto_window: bool = True
    guidance_max_ratio: float | None = None
    classifier_per_reason: bool = False
    calibration_split: CalibrationSplit = "train"
    min_minority: int = 0
    max_samples_per_round: int = 100_000
    oracle_curriculum: tuple[dict, ...] = ()
    classifier_input: ClassifierInput = "noisy"

    def __post_init__(self):
        if self.rounds < 0 or self.samples_per_round < 2 or self.distil_samples < 1:
            raise ValueError("GenNegConfig: rounds >= 0, samples_per_round >= 2, distil_samples >= 1 required")
        if self.distil_pool < 0:
            raise ValueError(f"distil_pool must be >= 0 (0: a fresh teacher target every step), got {self.distil_pool}")
        if not 0 <= self.distil_sigma_min < self.classifier_sigma_max:
            raise ValueError(f"distil_sigma_min must be in [0, classifier_sigma_max = {self.classifier_sigma_max}), "
                             f"got {self.distil_sigma_min}")
        if not 0 <= self.distil_data_fraction <= 1:
            raise ValueError(f"distil_data_fraction must be in [0, 1], got {self.distil_data_fraction}")
        if not 0 < self.classifier_sigma_min < self.classifier_sigma_max < math.inf:
            raise ValueError("need 0 < classifier_sigma_min < classifier_sigma_max < inf")
        if not math.isfinite(self.guidance_weight) or not 0 <= self.guidance_sigma_min <= self.guidance_sigma_max:
            raise ValueError(f"need a finite guidance_weight and 0 <= guidance_sigma_min <= guidance_sigma_max, got "
                             f"{self.guidance_weight}, {self.guidance_sigma_min}, {self.guidance_sigma_max}")
        if not (0 <= self.penalty_weight < math.inf and 0 < self.penalty_sigma_max):
            raise ValueError(f"need a finite penalty_weight >= 0 and penalty_sigma_max > 0, got {self.penalty_weight}, "
                             f"{self.penalty_sigma_max}")
        if self.guidance_max_ratio is not None and not 0 < self.guidance_max_ratio < math.inf:
            raise ValueError(f"guidance_max_ratio must be None or positive and finite, got {self.guidance_max_ratio}")
        if self.min_minority < 0 or (self.min_minority and self.max_samples_per_round < self.samples_per_round):
            raise ValueError(f"need min_minority >= 0 and max_samples_per_round >= samples_per_round, got "
                             f"{self.min_minority}, {self.max_samples_per_round}")
        curriculum = tuple(self.oracle_curriculum)
        if len(curriculum) > self.rounds or not all(isinstance(c, dict) for c in curriculum):
            raise ValueError(f"oracle_curriculum must hold at most rounds ({self.rounds}) keyword dicts, got "
                             f"{self.oracle_curriculum!r}")
        object.__setattr__(self, "oracle_curriculum", tuple(dict(c) for c in curriculum))
        check_choice("GenNegConfig.distil_sigma", self.distil_sigma, DistilSigma)
        check_choice("GenNegConfig.prior_correction", self.prior_correction, PriorCorrection)
        check_choice("GenNegConfig.calibration_split", self.calibration_split, CalibrationSplit)
        check_choice("GenNegConfig.classifier_input", self.classifier_input, ClassifierInput)
        unknown = set(self.baselines) - set(BASELINES)
        if unknown:
            raise ValueError(f"unknown baselines {sorted(unknown)}; choose from {list(BASELINES)}")
        object.__setattr__(self, "baselines", tuple(self.baselines))


@dataclass(frozen=True)
class EvalConfig:
    """Attributes: num_samples (generated per stage for infraction rates), num_nll (held-out points for the bound),
    nll_sigmas (stratified σ draws per point), nll_sigma_min/nll_sigma_max (the bound's σ range)."""

    num_samples: int = 20000
    num_nll: int = 2000
    nll_sigmas: int = 32
    nll_sigma_min: float = 0.002
    nll_sigma_max: float = 80.0

    def __post_init__(self):
        if self.num_samples < 1 or self.num_nll < 1 or self.nll_sigmas < 1:
            raise ValueError("EvalConfig counts must be >= 1")
        if not 0 < self.nll_sigma_min < self.nll_sigma_max < math.inf:
            raise ValueError(f"need 0 < nll_sigma_min < nll_sigma_max < inf, got {self.nll_sigma_min}, "
                             f"{self.nll_sigma_max}")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs. ``data``, ``net`` and ``classifier_net`` are domain-specific keyword dicts.

    ``pretrained_base`` names a pretrained model folder (``genneg.pretrained``, e.g. "pretrained/toy-default") that
    ``genneg run`` starts from instead of training the base; "" trains it.
    """

    domain: str
    preset: str = "default"
    data: dict = field(default_factory=dict)
    net: dict = field(default_factory=dict)
    classifier_net: dict = field(default_factory=dict)
    base: TrainConfig = TrainConfig()
    base_sigma: SigmaConfig = SigmaConfig()
    classifier: TrainConfig = TrainConfig()
    distil: TrainConfig = TrainConfig()
    sampler: SamplerConfig = SamplerConfig()
    genneg: GenNegConfig = GenNegConfig()
    eval: EvalConfig = EvalConfig()
    seed: int = 0
    device: str = "cpu"
    pretrained_base: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def config_from_dict(cls, d: dict[str, Any]):
    """Rebuilds a (nested) frozen dataclass from its ``asdict`` form, rejecting unknown keys by name."""
    names = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {sorted(unknown)}")
    kwargs = {}
    for k, v in d.items():
        ftype = _field_type(cls, k)
        if ftype is not None and isinstance(v, dict):
            kwargs[k] = config_from_dict(ftype, v)
        elif isinstance(v, list):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    return cls(**kwargs)


def _field_type(cls, name: str):
    default = {f.name: f.default for f in fields(cls)}.get(name)
    return type(default) if is_dataclass(default) else None


def override(cfg, path: str, value: Any):
    """Returns ``cfg`` with the dotted field ``path`` (e.g. "base.steps") replaced by ``value``."""
    head, _, rest = path.partition(".")
    if head not in {f.name for f in fields(cfg)}:
        raise ValueError(f"unknown config field {path!r} in {type(cfg).__name__}")
    current = getattr(cfg, head)
    if rest:
        if isinstance(current, dict):
            return replace(cfg, **{head: {**current, rest: value}})
        return replace(cfg, **{head: override(current, rest, value)})
    return replace(cfg, **{head: value})
