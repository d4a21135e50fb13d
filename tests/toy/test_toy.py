"""The 2-D toy domain: oracle on hand-built points (cell borders included), data, encode/decode, penalty."""

import numpy as np
import pytest
import torch

from genneg.domains.toy import ToyDomain
from genneg.domain import Domain, get_domain
from genneg.oracles.toy import Checkerboard, Rings


def test_checkerboard_cells_and_borders():
    board = Checkerboard(k=4, extent=2.0)  # cells of width 1; (0, 0) cell is [-2, -1) x [-2, -1): black
    pts = np.array([
        [-1.5, -1.5],   # black
        [-0.5, -1.5],   # white
        [-1.0, -1.5],   # on the border between black (left) and white (right): belongs to the right cell
        [-1.0 - 1e-9, -1.5],
        [2.0, 2.0],     # the closed outer corner: last cell (3, 3), black
        [2.0 + 1e-9, 0.0],  # just outside
        [0.0, 0.0],     # a corner shared by four cells: belongs to cell (2, 2), black
    ])
    r = board(pts)
    assert r.valid.tolist() == [True, False, False, True, True, False, True]
    assert r.reasons["white_cell"].tolist() == [False, True, True, False, False, False, False]
    assert r.reasons["outside"].tolist() == [False, False, False, False, False, True, False]


def test_rings_reasons():
    r = Rings(((0.5, 1.0), (1.5, 2.0)))(np.array([[0.75, 0], [1.25, 0], [0.1, 0], [0, 1.5], [3.0, 0]]))
    assert r.valid.tolist() == [True, False, False, True, False]
    assert r.reasons["band"].tolist() == [False, True, True, False, False]
    assert r.reasons["outside"].tolist() == [False, False, False, False, True]


@pytest.mark.parametrize("bad, msg", [(np.zeros((3, 3)), "shape"), (np.zeros((0, 2)), "empty"),
                                      (np.array([[np.nan, 0.0]]), "NaN"), (np.array([["a", "b"]]), "numeric")])
def test_oracle_bad_input(bad, msg):
    with pytest.raises(ValueError, match=msg):
        Checkerboard()(bad)


@pytest.mark.parametrize("shape", ["checkerboard", "rings"])
def test_domain_data_is_valid_and_round_trips(shape):
    d = ToyDomain(shape=shape, n_train=2000, n_eval=500)
    assert isinstance(d, Domain)
    x0, cond = d.dataset("train")
    assert cond is None and x0.shape == (2000, 2) and x0.abs().max() <= 1.0
    assert d.oracle()(d.decode(x0)).valid.all()
    assert np.allclose(d.decode(d.encode(d.points("test"))), d.points("test"))
    assert not torch.equal(d.dataset("val")[0], d.dataset("test")[0])
    assert torch.equal(d.dataset("train")[0], ToyDomain(shape=shape, n_train=2000, n_eval=500).dataset("train")[0])
    assert 0.3 < d.sigma_data < 0.8


def test_penalty_is_zero_on_valid_points_and_grows_outside():
    d = ToyDomain(n_train=10, n_eval=10)
    x0 = d.encode(np.array([[-1.5, -1.5], [-0.5, -1.5], [3.0, 3.0]])).requires_grad_(True)
    pen = d.penalty(x0)
    assert pen[0] == 0 and pen[1] > 0 and pen[2] > pen[1]
    pen.sum().backward()
    assert torch.isfinite(x0.grad).all() and x0.grad[1].abs().sum() > 0


def test_unknown_domain_shape_and_decode_errors():
    with pytest.raises(KeyError, match="unknown domain 'nope'"):
        get_domain("nope")
    with pytest.raises(ValueError, match="unknown toy shape"):
        ToyDomain(shape="triangle")
    with pytest.raises(ValueError, match="NaN"):
        ToyDomain(n_train=10, n_eval=10).decode(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        ToyDomain(n_train=10, n_eval=10).decode(torch.zeros(3, 3))


def test_exact_data_denoiser_samples_the_board_and_matches_brute_force():
    from genneg.config import SamplerConfig
    from genneg.generate import generate

    d = get_domain("toy")
    x = torch.tensor([[0.1, 0.1], [0.26, -0.74], [1.3, 0.0], [-0.5, 0.5]])
    pts = d.encode(d._draw(400_000, np.random.default_rng(0))).double()
    for s in (0.01, 0.2, 3.0):  # against a Monte Carlo posterior mean over data points
        w = torch.softmax(-((x.double()[:, None] - pts[None]) ** 2).sum(-1) / (2 * s * s), 1)
        brute = (w @ pts).float()
        assert torch.allclose(d.data_denoiser(x, torch.full((4,), s)), brute, atol=0.01), s
    far = d.data_denoiser(torch.tensor([[40.0, -40.0]]), torch.tensor([0.002]))  # no underflow far from every cell
    assert torch.isfinite(far).all() and far.abs().max() <= 1
    x0 = generate(d.data_denoiser, d.sample_shape, 4000, SamplerConfig(steps=18), seed=0)
    assert d.oracle()(d.decode(x0)).valid.all()  # the exact denoiser puts nothing off the black cells
    with pytest.raises(ValueError, match="checkerboard only"):
        get_domain("toy", shape="rings").data_denoiser(x, torch.ones(4))
