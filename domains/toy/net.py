"""Networks for 2-D points: Fourier features of x (sharp cell borders need them) + σ-conditioned residual MLP."""

from __future__ import annotations

from torch import Tensor, nn

from genneg.nn import FourierFeatures, ResidualMLP, SigmaEmbedding


class ToyNet(nn.Module):
    """``forward(x_in [B, 2], c_noise [B], cond=None) -> [B, out_dim]`` (out_dim 2: denoiser; 1: classifier logit).

    Args:
        width, depth: of the residual MLP.
        num_freqs, max_freq: Fourier features per coordinate (max_freq in cycles per unit of x_in).
    """

    def __init__(self, out_dim: int = 2, width: int = 256, depth: int = 4, num_freqs: int = 8, max_freq: float = 16.0):
        super().__init__()
        self.features = FourierFeatures(2, num_freqs=num_freqs, max_freq=max_freq)
        self.sigma_emb = SigmaEmbedding(128)
        self.mlp = ResidualMLP(self.features.out_dim, out_dim, width=width, depth=depth, emb_dim=128)
        self.out_dim = out_dim

    def forward(self, x_in: Tensor, c_noise: Tensor, cond=None) -> Tensor:
        out = self.mlp(self.features(x_in), self.sigma_emb(c_noise))
        return out[:, 0] if self.out_dim == 1 else out
