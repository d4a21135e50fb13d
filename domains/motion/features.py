"""The model's view of a frame: physical features without their constant channels, normalised per feature group,
plus auxiliary channels that restate what the kinematics imply (as HumanML3D's features do).

Physical features are ``data.representation``'s 147 numbers (pelvis position + 24 local rotations in 6D). Channels
that do not vary over the training frames (hands, feet and collars that the DeepMimic skeleton does not move, hinge
components) are dropped and restored from their training value. The others are centred per channel and scaled by one
standard deviation per group, so an error costs the same in every channel of a group (a radian of a knee as much as
a radian of a hip) instead of blowing up near-constant channels to unit variance:

- ``root_height``: the pelvis height; ``root_planar``: its canonical horizontal position (x, z);
- ``rotations``: every varying 6D rotation component;
- auxiliary (``aux=True``): ``aux_positions``, pelvis-relative positions of the ankles, feet, hands and head
  (``AUX_JOINTS``, metres); ``aux_contact``, foot-contact flags (a toe joint below 5 cm and slower than 0.5 m/s, the
  GMD rule's contact); ``aux_lowest``, the height of the mesh's lowest vertex.

The auxiliary channels are outputs the network must keep consistent with its rotations; :func:`aux_errors` measures
how far a generated window's auxiliary channels are from the kinematics of its own rotations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .data.representation import FRAME_FEATURES, ROOT_FEATURES
from .kinematics import sixd_to_matrix
from .skeleton import NUM_JOINTS, TOE_JOINTS, joint_index

__all__ = ["AUX_JOINTS", "AUX_FEATURES", "CONSTANT_STD", "GROUPS", "FeatureCodec", "aux_channels", "aux_from_pose",
           "aux_errors"]

AUX_JOINTS = ("left_ankle", "right_ankle", "left_foot", "right_foot", "left_hand", "right_hand", "head")
AUX_FEATURES = 3 * len(AUX_JOINTS) + len(TOE_JOINTS) + 1
CONSTANT_STD = 1e-3  # a channel that varies less than this over the training frames is constant
CONTACT_HEIGHT_M, CONTACT_SPEED_MS = 0.05, 0.5
_POS = slice(FRAME_FEATURES, FRAME_FEATURES + 3 * len(AUX_JOINTS))
_CONTACT = slice(_POS.stop, _POS.stop + len(TOE_JOINTS))
_LOWEST = slice(_CONTACT.stop, _CONTACT.stop + 1)
_POS_LOCAL = slice(0, 3 * len(AUX_JOINTS))  # the same blocks within the auxiliary channels alone
_CONTACT_LOCAL = slice(_POS_LOCAL.stop, _POS_LOCAL.stop + len(TOE_JOINTS))
GROUPS = {"root_height": [1], "root_planar": [0, 2], "rotations": list(range(ROOT_FEATURES, FRAME_FEATURES)),
          "aux_positions": list(range(_POS.start, _POS.stop)),
          "aux_contact": list(range(_CONTACT.start, _CONTACT.stop)), "aux_lowest": [_LOWEST.start]}  # fmt: skip


@torch.no_grad()
def aux_channels(skinned, physical: Tensor, fps: float) -> Tensor:
    """Auxiliary channels [B, T, AUX_FEATURES] implied by physical features [B, T, 147] (every frame posed)."""
    rot = sixd_to_matrix(physical[..., ROOT_FEATURES:].unflatten(-1, (NUM_JOINTS, 6)))
    root = physical[..., :ROOT_FEATURES]
    return aux_from_pose(skinned.joints(rot, root), skinned.lowest_heights(rot, root), fps)


def aux_from_pose(joints: Tensor, lowest: Tensor, fps: float) -> Tensor:
    """Auxiliary channels [B, T, AUX_FEATURES] of posed frames: joints [B, T, 24, 3], lowest heights [B, T]."""
    rel = joints[..., [joint_index(n) for n in AUX_JOINTS], :] - joints[..., :1, :]
    toes = joints[..., [joint_index(n) for n in TOE_JOINTS], :]
    step = (toes[:, 1:, :, [0, 2]] - toes[:, :-1, :, [0, 2]]).norm(dim=-1) * fps  # [B, T-1, 2]
    # backward differences (the first frame takes the second's), so a frame never looks at padding after it
    speed = torch.cat([step[:, :1], step], 1) if step.shape[1] else torch.zeros_like(toes[..., 0])
    contact = ((toes[..., 1] < CONTACT_HEIGHT_M) & (speed < CONTACT_SPEED_MS)).to(joints.dtype)
    return torch.cat([rel.flatten(-2), contact, lowest[..., None]], -1)


def aux_errors(aux: Tensor, implied: Tensor, defined: Tensor) -> dict[str, np.ndarray]:
    """How far auxiliary channels [B, T, A] are from those the rotations imply, over defined frames, [B] each:
    ``aux_position_error_m`` (mean joint distance), ``aux_lowest_error_m`` (mean absolute height difference) and
    ``aux_contact_mismatch`` (share of flags on the wrong side of 0.5)."""
    d = defined.to(aux.dtype)
    n = d.sum(1).clamp_min(1)
    pos = (aux[..., _POS_LOCAL] - implied[..., _POS_LOCAL]).unflatten(-1, (len(AUX_JOINTS), 3)).norm(dim=-1).mean(-1)
    low = (aux[..., -1] - implied[..., -1]).abs()
    contact = ((aux[..., _CONTACT_LOCAL] > 0.5) != (implied[..., _CONTACT_LOCAL] > 0.5)).to(aux.dtype).mean(-1)
    named = (("aux_position_error_m", pos), ("aux_lowest_error_m", low), ("aux_contact_mismatch", contact))
    return {k: ((v * d).sum(1) / n).numpy() for k, v in named}


@dataclass(frozen=True)
class FeatureCodec:
    """Physical features (+ auxiliary channels) <-> the model's normalised channels.

    Attributes:
        mean: [C] per-channel training mean (C = 147, + AUX_FEATURES with ``aux``); constant channels restore to it.
        scale: [C] the standard deviation of the channel's group.
        kept: [C] bool, the channels the model sees (varying ones).
    """

    mean: np.ndarray
    scale: np.ndarray
    kept: np.ndarray

    @classmethod
    def fit(cls, frames: np.ndarray) -> "FeatureCodec":
        """Fits on training frames [N, C] (C = 147, or 147 + AUX_FEATURES)."""
        frames = np.asarray(frames, np.float64)
        widths = (FRAME_FEATURES, FRAME_FEATURES + AUX_FEATURES)
        if frames.ndim != 2 or frames.shape[1] not in widths or not len(frames):
            raise ValueError(f"expected training frames [N, {FRAME_FEATURES}(+{AUX_FEATURES})], got {frames.shape}")
        mean, std = frames.mean(0), frames.std(0)
        kept = std >= CONSTANT_STD
        scale = np.ones_like(mean)
        for idx in GROUPS.values():
            idx = [i for i in idx if i < len(mean) and kept[i]]
            if idx:
                scale[idx] = np.sqrt(np.mean(std[idx] ** 2))  # the group's pooled standard deviation
        return cls(mean.astype(np.float32), scale.astype(np.float32), kept)

    @property
    def num_features(self) -> int:
        return int(self.kept.sum())

    @property
    def aux(self) -> bool:
        return len(self.mean) > FRAME_FEATURES

    def encode(self, channels: Tensor) -> Tensor:
        """Physical (+ auxiliary) channels [..., C] -> normalised model channels [..., num_features]."""
        mean, scale = (torch.as_tensor(a, device=channels.device, dtype=channels.dtype)
                       for a in (self.mean, self.scale))  # fmt: skip
        kept = torch.as_tensor(self.kept, device=channels.device)
        return ((channels - mean) / scale)[..., kept]

    def decode(self, x0: Tensor) -> Tensor:
        """Model channels [..., num_features] -> physical (+ auxiliary) channels [..., C]; differentiable."""
        mean, scale = (torch.as_tensor(a, device=x0.device, dtype=x0.dtype) for a in (self.mean, self.scale))
        out = mean.expand(x0.shape[:-1] + mean.shape).clone()
        kept = torch.as_tensor(self.kept, device=x0.device)
        out[..., kept] = x0 * scale[kept] + mean[kept]
        return out
