"""A motion classifier that also reads the physical quantities the oracles judge, computed differentiably.

The oracles fail a window on its lowest mesh vertex (penetration, floating) and on its toe joints' heights and
speeds (skating). A classifier that sees only the model's channels must learn skinning and forward kinematics from a
few thousand labelled windows before it can tell how deep a body sinks; measured on the ``cpu`` base it does not
(docs/motion.md, "Classifiers that read the kinematics"). :class:`PhysicsClassifierNet` computes those quantities
from its input with the body's own kinematics (``kinematics.SkinnedBody``: the same posing the oracles' inputs come
from) and hands them to the classifier trunk beside the channels, per frame:

- the height of the whole mesh's lowest vertex, and the lowest over the window's defined frames (broadcast);
- the two toe joints' heights and horizontal speeds (backward differences, as the auxiliary channels').

Heights are divided by 0.1 m and speeds by 0.5 m/s, then squashed by ``4 tanh(v / 4)`` so that a noisy input at
σ = 80 cannot feed the trunk numbers in the hundreds. Everything is differentiable, so guidance follows the
gradient of the classifier through the kinematics (with ``GenNegConfig.classifier_input = "denoised"``, through the
base's denoised estimate as well). The wrapper changes what the classifier reads, not what it learns: it is trained
on the same balanced, weighted labels, and at σ → 0 on the denoised estimate its extra inputs are the oracle's own.

``NoisyClassifier`` calls a net with ``(c_in · x, ln σ / 4, cond)``, c_in = 1 / √(σ² + σ_data²); the wrapper inverts
that to pose x itself.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .data.representation import FRAME_FEATURES, ROOT_FEATURES
from .kinematics import sixd_to_matrix
from .net import frame_mask
from .skeleton import NUM_JOINTS, TOE_JOINTS, joint_index

__all__ = ["PHYSICS_FEATURES", "PhysicsClassifierNet", "physics_features"]

PHYSICS_FEATURES = ("lowest", "window_lowest", "left_toe_height", "right_toe_height", "left_toe_speed",
                    "right_toe_speed")  # fmt: skip
HEIGHT_SCALE_M, SPEED_SCALE_MS, SQUASH = 0.1, 0.5, 4.0
_TOES = [joint_index(n) for n in TOE_JOINTS]


def physics_features(skinned, physical: Tensor, defined: Tensor, fps: float) -> Tensor:
    """Per-frame physical quantities [B, T, len(PHYSICS_FEATURES)] of physical features [B, T, 147] (metres, m/s),
    unscaled; differentiable. ``defined`` [B, T] bool: the window's lowest is taken over its defined frames."""
    rot = sixd_to_matrix(physical[..., ROOT_FEATURES:FRAME_FEATURES].unflatten(-1, (NUM_JOINTS, 6)))
    root = physical[..., :ROOT_FEATURES]
    transforms = skinned.global_transforms(rot)  # the chain once, for the mesh and the joints
    lowest = skinned.lowest_heights(rot, root, transforms)  # [B, T]
    toes = transforms[1][..., _TOES, :] + root[..., None, :]  # [B, T, 2, 3] world joints
    step = (toes[:, 1:, :, [0, 2]] - toes[:, :-1, :, [0, 2]]).norm(dim=-1) * fps  # [B, T-1, 2]
    speed = torch.cat([step[:, :1], step], 1) if step.shape[1] else torch.zeros_like(toes[..., 0])
    window = lowest.masked_fill(~defined, torch.inf).min(1, keepdim=True).values  # [B, 1]
    window = torch.where(window.isfinite(), window, torch.zeros_like(window)).expand_as(lowest)
    return torch.cat([lowest[..., None], window[..., None], toes[..., 1], speed], -1)


class PhysicsClassifierNet(nn.Module):
    """``forward(x_in, c_noise, cond)``: the trunk's logit of [channels, scaled physics features] per frame.

    Args:
        trunk: a classifier ``MotionTransformer`` built for ``features + len(PHYSICS_FEATURES)`` channels.
        decode: model channels [..., F] -> physical features [..., 147] (``MotionDomain.physical``), differentiable.
        skinned: the body (``kinematics.SkinnedBody``); not part of the weights.
        sigma_data: the domain's σ_data, to undo the classifier's input scaling.
        fps: frame rate, for the toe speeds.
    """

    def __init__(self, trunk: nn.Module, decode, skinned, sigma_data: float, fps: float):
        super().__init__()
        if trunk.features <= len(PHYSICS_FEATURES):
            raise ValueError(f"the trunk reads {trunk.features} channels, too few for the model's and "
                             f"{len(PHYSICS_FEATURES)} physics features")  # fmt: skip
        self.trunk = trunk
        self._decode, self._skinned = decode, skinned
        self.sigma_data, self.fps = float(sigma_data), float(fps)

    @property
    def features(self) -> int:
        """Model channels the net reads (without the physics features it adds)."""
        return self.trunk.features - len(PHYSICS_FEATURES)

    def physics(self, x: Tensor, defined: Tensor) -> Tensor:
        """Scaled, squashed physics features [B, T, K] of unscaled model channels x [B, T, F]."""
        raw = physics_features(self._skinned, self._decode(x), defined, self.fps)
        scale = raw.new_tensor([HEIGHT_SCALE_M] * 4 + [SPEED_SCALE_MS] * 2)
        return SQUASH * torch.tanh(raw / scale / SQUASH) * defined[..., None].to(raw.dtype)

    def forward(self, x_in: Tensor, c_noise: Tensor, cond=None) -> Tensor:
        b, t, f = x_in.shape
        if f != self.features:
            raise ValueError(f"expected x of shape [B, T, {self.features}], got {tuple(x_in.shape)}")
        sigma = (4 * c_noise).exp()  # NoisyClassifier passes c_noise = ln σ / 4
        x = x_in * (sigma**2 + self.sigma_data**2).sqrt()[:, None, None]
        defined = frame_mask(cond, b, t, x_in.device)
        return self.trunk(torch.cat([x_in, self.physics(x, defined)], -1), c_noise, cond)
