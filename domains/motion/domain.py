"""The motion domain: real mocap windows (DeepMimic clips on SMPL-24), an MDM-style transformer, physics oracles.

``x0`` is a window of model channels ``[B, T, F]``: the varying physical frame features (canonical pelvis position +
24 local rotations in 6D, ``data.representation``) and, with ``aux``, auxiliary channels that restate the kinematics
(joint positions, foot contacts, lowest-vertex height), normalised per feature group (``features.FeatureCodec``);
padded frames are 0. ``cond`` is a dict of tensors: ``label`` int64 ``[B]`` (the clip/action) and
``defined`` bool ``[B, T]`` (the frame mask, which the engine uses in the loss and the NLL bound).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from genneg.config import RunConfig
from genneg.domain import validate_x0
from genneg.oracle import Oracle, all_of, get_oracle
from genneg.rng import numpy_rng

from .data.representation import FRAME_FEATURES, ROOT_FEATURES
from .data.windows import SPLITS, WindowConfig, cache_windows, load_windows
from .calibration import TOE_INDICES, oracle_inputs
from .features import FeatureCodec, aux_channels, aux_errors, aux_from_pose
from .kinematics import SkinnedBody, sixd_to_matrix
from .net import MotionTransformer
from .physics_input import PHYSICS_FEATURES, PhysicsClassifierNet
from .skeleton import NUM_JOINTS

__all__ = ["MotionDomain", "make_domain"]

_METRIC_WINDOWS = 32  # windows per chunk for the full-mesh PhysDiff metrics
CONDITION_SETS = ("windows", "full", "masks")  # what ``conditions`` draws; see MotionDomain.conditions


def make_domain(**data_kwargs) -> "MotionDomain":
    """The motion domain; ``data_kwargs`` are ``WindowConfig`` fields plus ``model``, ``cache_dir`` and ``aux``."""
    return MotionDomain(**data_kwargs)


class MotionDomain:
    """Human motion windows posed on an SMPL body (the proxy unless ``model`` / ``GENNEG_SMPL_MODEL`` says otherwise).

    Args:
        model: SMPL model file (``body.load_body``); None = ``$GENNEG_SMPL_MODEL`` or the proxy body.
        cache_dir: where the body and the windows are cached (default ``$GENNEG_CACHE`` or ``~/.cache/genneg``).
        aux: add the auxiliary channels (``features``) to the model's channels.
        fk_weight, fk_sigma_max: weight (per m²) of :meth:`fk_loss` in :meth:`denoised_loss`, and the noise level
            below which it applies (0 = no forward-kinematics loss).
        conditions: the condition set :meth:`conditions` draws for a split named without one ("windows",
            "full" or "masks"); ``"test:full"`` names one explicitly.
        **windows: ``WindowConfig`` fields (``window``, ``stride``, ``clips``, ``mirror``, ...).
    """

    name = "motion"
    export_suffixes = (".npz",)  # `genneg sample --out X.npz` writes through ``export`` (genneg.exporting)

    def __init__(self, model: str | None = None, cache_dir: str | None = None, aux: bool = True,
                 fk_weight: float = 0.0, fk_sigma_max: float = 1.0, conditions: str = "windows",
                 **windows):  # fmt: skip
        if not (fk_weight >= 0 and fk_sigma_max > 0):
            raise ValueError(f"need fk_weight >= 0 and fk_sigma_max > 0, got {fk_weight}, {fk_sigma_max}")
        if conditions not in CONDITION_SETS:
            raise ValueError(f"unknown condition set {conditions!r}; choose one of {CONDITION_SETS}")
        self.condition_set = conditions
        self.windows = WindowConfig(**windows)
        self.model, self.cache_dir, self.aux = model, cache_dir, bool(aux)
        self.fk_weight, self.fk_sigma_max = float(fk_weight), float(fk_sigma_max)
        self.frames, self.fps = self.windows.window, float(self.windows.fps)

    # --------------------------------------------------------------------------------------------- data
    @cached_property
    def body(self):
        from .body import load_body

        return load_body(self.model, cache_dir=self.cache_dir)

    @cached_property
    def skinned(self) -> SkinnedBody:
        return SkinnedBody(self.body)

    def prepare_data(self, *, workers: int = 1, progress=None, executor=None) -> Path:
        """`genneg data motion`: builds and caches the windows; ``executor`` (e.g. a Dask client's) retargets the
        clips in parallel (``workers`` alone is unused: a local build takes seconds)."""
        from .body import SMPL_MODEL_ENV

        model = str(self.model or os.environ.get(SMPL_MODEL_ENV) or "proxy")  # resolved here, not on the workers
        cache = None if self.cache_dir is None else str(self.cache_dir)
        return cache_windows(self.windows, self.body, self.cache_dir, callback=progress, executor=executor,
                             body_source=(model, cache))

    @cached_property
    def data(self) -> dict[str, np.ndarray]:
        """Every window (``windows.build_windows`` layout), read from the cache."""
        return load_windows(self.prepare_data())

    @cached_property
    def label_names(self) -> tuple[str, ...]:
        return tuple(str(n) for n in self.data["label_names"])

    def _parse(self, split: str) -> tuple[str, str | None]:
        """``"test:full"`` -> ("test", "full"); ``"test"`` -> ("test", None)."""
        name, _, kind = str(split).partition(":")
        if name not in SPLITS or (kind and kind not in CONDITION_SETS):
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}, optionally with a condition set "
                             f"(e.g. 'test:full'): {CONDITION_SETS}")
        return name, kind or None

    def _split(self, split: str) -> np.ndarray:
        """Window indices of a split; with a condition set only the uncut windows ("windows", "masks") or the uncut
        full-length ones ("full")."""
        name, kind = self._parse(split)
        idx = np.flatnonzero(self.data["split"] == name)
        if kind is not None:
            idx = idx[~self.data["cut"][idx]]
        if kind == "full":
            idx = idx[self.data["mask"][idx].all(1)]
        if len(idx) == 0:
            raise ValueError(f"the {split!r} split holds no windows (config {asdict(self.windows)})")
        return idx

    def _channels(self, features: np.ndarray | Tensor) -> Tensor:
        """Physical features [B, T, 147] -> physical (+ auxiliary) channels [B, T, C]."""
        feats = torch.as_tensor(features, dtype=torch.float32)
        if not self.aux:
            return feats
        return torch.cat([feats, aux_channels(self.skinned, feats, self.fps)], -1)

    @cached_property
    def codec(self) -> FeatureCodec:
        """Constant channels and per-group normalisation, fitted on the defined frames of the train split."""
        idx = self._split("train")
        channels = self._channels(self.data["features"][idx])
        return FeatureCodec.fit(channels[torch.as_tensor(self.data["mask"][idx])].numpy())

    @property
    def num_features(self) -> int:
        """Channels per frame of ``x0``."""
        return self.codec.num_features

    def normalise(self, features: np.ndarray, defined: np.ndarray) -> Tensor:
        """Physical features [B, T, 147] -> x0 [B, T, F] (padded frames 0)."""
        x0 = self.codec.encode(self._channels(features))
        return x0 * torch.as_tensor(np.asarray(defined), dtype=x0.dtype)[..., None]

    def physical(self, x0: Tensor) -> Tensor:
        """x0 [B, T, F] -> physical features [B, T, 147] (metres, 6D rotations), differentiable."""
        return self.codec.decode(x0)[..., :FRAME_FEATURES]

    def dataset(self, split: str) -> tuple[Tensor, dict]:
        idx = self._split(split)
        defined = self.data["mask"][idx]
        cond = {"label": torch.as_tensor(self.data["label"][idx], dtype=torch.long),
                "defined": torch.as_tensor(defined)}  # fmt: skip
        return self.normalise(self.data["features"][idx], defined), cond

    @cached_property
    def sigma_data(self) -> float:
        x0, cond = self.dataset("train")
        return float(np.round(x0[cond["defined"]].std().item(), 3))

    def conditions(self, n: int, split: str = "test", seed: int = 0) -> dict:
        """``n`` (label, frame mask) pairs, deterministic by seed, from one of three condition sets. ``split`` is a
        split name, optionally with the set (``"test:full"``); without one, the domain's ``conditions`` setting.

        - ``windows``: a clip drawn uniformly, then one of its uncut windows of the split (its label and mask);
        - ``full``: full-length masks (every frame defined), the clip labels balanced (each ⌊n/L⌋ or ⌈n/L⌉ times);
        - ``masks``: the split's uncut windows' own labels and masks, each window equally often.

        Train windows cut to a random prefix (a training augmentation) are never drawn, so the rounds label samples
        on the same kind of conditions as the evaluation.
        """
        name, kind = self._parse(split)
        kind = kind or self.condition_set
        rng = numpy_rng(seed, "motion-conditions", name if kind == "windows" else f"{name}:{kind}")
        if kind == "full":
            label = _balanced(np.arange(len(self.label_names)), n, rng)
            return {"label": torch.as_tensor(label, dtype=torch.long),
                    "defined": torch.ones(n, self.frames, dtype=torch.bool)}  # fmt: skip
        idx = self._split(f"{name}:masks")
        if kind == "masks":
            pick = _balanced(idx, n, rng)
        else:
            clips = np.unique(self.data["label"][idx])
            chosen = clips[rng.integers(0, len(clips), n)]
            pick = np.empty(n, np.int64)
            for c in np.unique(chosen):
                members = idx[self.data["label"][idx] == c]
                pick[chosen == c] = members[rng.integers(0, len(members), int((chosen == c).sum()))]
        return {"label": torch.as_tensor(self.data["label"][pick], dtype=torch.long),
                "defined": torch.as_tensor(self.data["mask"][pick])}  # fmt: skip

    def sample_shape(self, cond, n: int) -> tuple[int, ...]:
        return (n, self.frames, self.num_features)

    # --------------------------------------------------------------------------------------------- posing
    def pose(self, features: Tensor, vertex_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Physical features [..., 147] -> vertices [..., V', 3] and joints [..., 24, 3] (metres, Y up)."""
        rot = sixd_to_matrix(features[..., ROOT_FEATURES:].unflatten(-1, (NUM_JOINTS, 6)))
        return self.skinned.pose(rot, features[..., :ROOT_FEATURES], vertex_ids)

    @torch.no_grad()
    def decode(self, x0: Tensor, cond: dict) -> dict[str, np.ndarray]:
        """Normalised windows -> what the motion oracles, plots and exports need (numpy, metres, Y up).

        Only what the oracles read is computed (the labelling fast path); :meth:`mesh_metrics` adds the full-mesh
        PhysDiff metrics for a report.

        Returns:
            ``features`` [B, T, 147] physical; ``joints`` [B, T, 24, 3]; ``toes`` [B, T, 2, 3] (the oracle's toe
            joints); ``lowest_height`` [B, T] (the whole mesh's lowest vertex in every frame); ``defined`` [B, T];
            ``label`` [B]. Padded frames are zeros. With ``aux``, also how far the auxiliary channels are from the
            kinematics of the window's own rotations (``features.aux_errors``): ``aux_position_error_m``,
            ``aux_lowest_error_m``, ``aux_contact_mismatch``, [B] each.
        """
        validate_x0(x0, (self.frames, self.num_features))
        defined = cond["defined"].cpu().numpy().astype(bool)
        mask = torch.as_tensor(defined)[..., None]
        channels = self.codec.decode(x0.detach().cpu().float()) * mask
        feats = channels[..., :FRAME_FEATURES]
        samples = oracle_inputs(self.skinned, feats, defined)
        samples.update(features=feats.numpy(), label=cond["label"].cpu().numpy())
        if self.aux:
            implied = aux_from_pose(torch.as_tensor(samples["joints"]), torch.as_tensor(samples["lowest_height"]),
                                    self.fps)  # fmt: skip
            samples.update(aux_errors(channels[..., FRAME_FEATURES:], implied, torch.as_tensor(defined)))
        return samples

    @cached_property
    def train_reference(self) -> dict[str, np.ndarray]:
        """The uncut train windows posed: ``joints`` [N, T, 24, 3], ``defined`` [N, T], ``label`` [N] (what
        :meth:`metrics` measures the distance to the nearest training window against)."""
        idx = self._split("train:masks")
        defined = self.data["mask"][idx]
        joints = oracle_inputs(self.skinned, torch.as_tensor(self.data["features"][idx]), defined)["joints"]
        return {"joints": joints, "defined": defined, "label": self.data["label"][idx]}

    def metrics(self, samples: dict, cond, result, split: str) -> dict[str, dict]:
        """The evaluation's motion measures (``metrics.motion_metrics``): PhysDiff's Penetrate / Float / Skate /
        Phys-Err (mm, from the lowest vertex), GMD's skating ratio, the worst-frame depth's median and 90th
        percentile, diversity per clip and the distance to the nearest training window (m), each with an interval;
        and the invalid rates on full-length conditions and on shorter masks apart, where both are present."""
        from .metrics import motion_metrics

        return motion_metrics(samples, result, self.train_reference, self.fps)

    def mesh_metrics(self, samples: dict) -> dict[str, np.ndarray]:
        """PhysDiff Penetrate / Float / Skate (mm) on the full mesh and the GMD skating ratio, [B] each, of decoded
        samples (about 20 ms a window on one CPU core: for reports, not for labelling)."""
        from genneg.oracles.motion import physdiff_metrics, skating_ratio

        feats, defined = torch.as_tensor(samples["features"]), np.asarray(samples["defined"], bool)
        parts = []
        for s in range(0, feats.shape[0], _METRIC_WINDOWS):
            d = defined[s : s + _METRIC_WINDOWS]
            t = int(d.any(0).nonzero()[0].max()) + 1  # frames up to the chunk's last defined one
            with torch.no_grad():
                v, j = self.pose(feats[s : s + _METRIC_WINDOWS, :t])
            m = physdiff_metrics(v.numpy(), self.fps, d[:, :t])
            m["skating_ratio"] = skating_ratio(j[:, :, TOE_INDICES].numpy(), self.fps, d[:, :t])
            parts.append(m)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # --------------------------------------------------------------------------------------------- oracle, penalty
    def oracle(self, names: list[str] | None = None, **thresholds) -> Oracle:
        """The calibrated motion oracle (penetration, skating, float), or registered motion oracles by name.

        Names are looked up as ``motion:<name>`` first (``penetration``, ``skating``, ``float``, ``physical``).
        ``thresholds`` (``genneg.oracles.motion.MotionThresholds`` fields, e.g. ``penetration_mm=150``) replace the
        calibrated ones for the motion reasons: what a threshold curriculum (``GenNegConfig.oracle_curriculum``)
        passes for its early rounds. They cannot be combined with other registered oracles.
        """
        from dataclasses import replace

        from genneg.oracles.motion import DEFAULT_THRESHOLDS, motion_oracle

        if self.fps != 20.0:
            raise ValueError(f"the motion oracles are calibrated at 20 fps; this domain's windows are at {self.fps}")
        t = replace(DEFAULT_THRESHOLDS, **thresholds) if thresholds else None
        if not names or list(names) in (["motion"], ["physical"]):
            return motion_oracle(t)
        if not thresholds:
            return all_of(*[get_oracle(n, domain=self.name) for n in names], name="+".join(names))
        reasons = [n.removeprefix("motion:") for n in names]
        if not set(reasons) <= {"penetration", "skating", "float"}:
            raise ValueError(f"thresholds {sorted(thresholds)} apply to the motion reasons only, not to {names}")
        return motion_oracle(t, tuple(reasons))

    @cached_property
    def contact_vertices(self) -> Tensor:
        """Vertex ids [K] that are the lowest of some real train frame: the penalty's cheap stand-in for the mesh."""
        idx = self._split("train")
        frames = torch.as_tensor(self.data["features"][idx][self.data["mask"][idx]])
        with torch.no_grad():
            v, _ = self.pose(frames)
        return torch.unique(v[..., 1].argmin(1))

    def penalty(self, x0: Tensor, cond: dict) -> Tensor:
        """Differentiable distance to physical validity ``[B]`` (metres, summed over defined frames).

        Depth of the lowest contact vertex below the floor in every frame, plus the horizontal displacement of each
        toe joint between adjacent frames weighted by a soft "near the floor" gate (height < 5 cm, the GMD rule's).
        """
        from genneg.oracles.motion import GMD_HEIGHT_M

        defined = cond["defined"].to(x0.device, x0.dtype)
        v, j = self.pose(self.physical(x0), self.contact_vertices.to(x0.device))
        depth = torch.relu(-v[..., 1].min(-1).values)  # [B, T]
        toes = j[:, :, TOE_INDICES]  # [B, T, 2, 3]
        step = (toes[:, 1:, :, [0, 2]] - toes[:, :-1, :, [0, 2]]).norm(dim=-1)  # [B, T-1, 2]
        near = torch.sigmoid((GMD_HEIGHT_M - torch.maximum(toes[:, 1:, :, 1], toes[:, :-1, :, 1])) / 0.01)
        pairs = defined[:, 1:] * defined[:, :-1]
        return (depth * defined).sum(1) + ((step * near).sum(-1) * pairs).sum(1)

    def fk_loss(self, denoised: Tensor, x0: Tensor, cond: dict) -> Tensor:
        """Forward-kinematics error of denoised windows ``[B]``: mean squared joint distance (m²) over defined
        frames between the joints posed from ``denoised`` and from ``x0`` (MDM's position loss), differentiable."""
        defined = cond["defined"].to(x0.device, x0.dtype)
        joints = []
        for x in (denoised, x0):
            feats = self.physical(x)
            rot = sixd_to_matrix(feats[..., ROOT_FEATURES:].unflatten(-1, (NUM_JOINTS, 6)))
            joints.append(self.skinned.joints(rot, feats[..., :ROOT_FEATURES]))
        err = (joints[0] - joints[1].detach()).square().sum(-1).mean(-1)  # [B, T]
        return (err * defined).sum(1) / defined.sum(1).clamp_min(1)

    def denoised_loss(self, denoised: Tensor, x0: Tensor, sigma: Tensor, cond: dict) -> Tensor:
        """The domain's term added to the denoising loss, ``[B]``: ``fk_weight`` × :meth:`fk_loss` where σ is below
        ``fk_sigma_max`` (MDM's geometric loss, at the noise levels where joint positions are resolved)."""
        if self.fk_weight == 0:
            return x0.new_zeros(x0.shape[0])
        gate = (sigma < self.fk_sigma_max).to(x0.dtype)
        return self.fk_weight * gate * self.fk_loss(denoised, x0, cond)

    # --------------------------------------------------------------------------------------------- nets, plots
    def _net(self, cfg: dict, classifier: bool) -> nn.Module:
        cfg = dict(cfg)
        if not cfg.pop("physics", False):
            return MotionTransformer(self.num_features, self.frames, len(self.label_names), classifier=classifier,
                                     **cfg)  # fmt: skip
        if not classifier:
            raise ValueError("physics inputs are for classifier nets; a denoiser reads the model's channels only")
        trunk = MotionTransformer(self.num_features + len(PHYSICS_FEATURES), self.frames, len(self.label_names),
                                  classifier=True, **cfg)  # fmt: skip
        return PhysicsClassifierNet(trunk, self.physical, self.skinned, self.sigma_data, self.fps)

    def make_denoiser_net(self, cfg: dict) -> nn.Module:
        return self._net(cfg, classifier=False)

    def make_classifier_net(self, cfg: dict) -> nn.Module:
        return self._net({**cfg, "label_dropout": 0.0}, classifier=True)

    def make_element_classifier_net(self, cfg: dict, reason: str) -> nn.Module:
        """A per-frame classifier (logits ``[B, T]``) for ``reason``: only ``penetration`` is decided frame by
        frame (the oracle's per-frame flags); skating and floating are properties of a whole window."""
        if reason != "penetration":
            raise ValueError(f"only the penetration reason has per-frame labels, not {reason!r}")
        return self._net({**cfg, "label_dropout": 0.0, "head": "elements"}, classifier=True)

    def export_arrays(self, samples: dict, cond, result) -> dict[str, np.ndarray]:
        """One batch of decoded samples and verdicts in the export layout (``export.export_arrays``), for writers
        that stream large draws batch by batch."""
        from .export import export_arrays

        return export_arrays(samples, result, self.body, self.label_names)

    def export(self, samples: dict, cond, result, path) -> Path:
        """Writes decoded samples and the oracle's verdicts as one ``.npz``: AMASS-style SMPL parameters (``poses``
        [B, T, 72], ``trans`` [B, T, 3], Z up), joints [B, T, 24, 3] and lowest-vertex heights [B, T] (Y up, what
        the oracles read), the frame ``mask``, labels, ``valid`` and ``reason_<name>`` [B], and the thresholds of
        :meth:`oracle`'s default rules (``export.write_export``). Returns the path."""
        from genneg.oracles.motion import DEFAULT_THRESHOLDS

        from .export import write_export

        return write_export(path, self.export_arrays(samples, cond, result), self.body, self.fps, DEFAULT_THRESHOLDS)

    def plot(self, samples, cond, result, ax, title: str = "") -> None:
        from .plot import plot_lowest_heights

        plot_lowest_heights(samples, result, ax, title, fps=self.fps)

    def presets(self) -> dict[str, RunConfig]:
        from .presets import motion_presets

        return motion_presets()


def _balanced(items: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``items``, each ⌊n/len⌋ or ⌈n/len⌉ times (the extra ones drawn without replacement), shuffled."""
    reps, extra = divmod(n, len(items))
    out = np.concatenate([np.repeat(items, reps), rng.choice(items, extra, replace=False)])
    return out[rng.permutation(n)]
