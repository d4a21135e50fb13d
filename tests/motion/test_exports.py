"""Motion exports reload (AMASS .npz, meshes, GIFs) and `genneg run motion` works end to end on a tiny budget."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("smplx")
pytest.importorskip("pybullet")
trimesh = pytest.importorskip("trimesh")


@pytest.fixture(scope="module")
def motion(domain):
    """A full-length val window of the walk: physical features [T, 147], vertices [T, V, 3], joints [T, 24, 3]."""
    x0, cond = domain.dataset("val")
    walk = (cond["label"] == domain.label_names.index("walk")) & cond["defined"].all(1)
    i = int(walk.nonzero()[0, 0])
    feats = domain.physical(x0[i][cond["defined"][i]]).detach()
    v, j = domain.pose(feats)
    return feats.numpy(), v.numpy(), j.numpy()


def test_amass_export_reloads_to_the_same_joints(domain, motion, tmp_path):
    from genneg.domains.motion.data.amass import load_amass, to_smplx_inputs
    from genneg.domains.motion.export import write_amass

    feats, _, joints = motion
    path = write_amass(tmp_path / "m.npz", feats, domain.body, fps=20.0)
    with np.load(path) as z:
        assert z["poses"].shape == (len(feats), 72) and z["trans"].shape == (len(feats), 3)
        assert float(z["mocap_framerate"]) == 20.0 and str(z["gender"]) == "neutral" and str(z["body"]) == "proxy-smpl"
    m = load_amass(path, fps=20.0, pelvis_rest=domain.body.rest_joints[0])
    out = domain.body.forward(**to_smplx_inputs(m, domain.body.rest_joints[0]))
    assert np.abs(out.joints - joints).max() < 1e-4


def test_sample_export_reproduces_the_verdicts(domain, tmp_path):
    """Stored lowest heights and joints give back the oracle's verdicts; the AMASS parameters give back the joints."""
    from genneg.domains.motion.calibration import TOE_INDICES
    from genneg.domains.motion.data.amass import load_amass, to_smplx_inputs
    from genneg.oracles.motion import MotionThresholds, motion_infractions

    x0, cond = domain.dataset("val")
    pick = torch.arange(0, len(x0), 6)
    x0, cond = x0[pick], {k: v[pick] for k, v in cond.items()}
    g = torch.Generator().manual_seed(1)
    noisy = torch.cat([x0, x0 + 0.4 * torch.randn(x0.shape, generator=g)]) * torch.cat([cond["defined"]] * 2)[..., None]
    cond = {k: torch.cat([v, v]) for k, v in cond.items()}
    samples = domain.decode(noisy, cond)
    result = domain.oracle()(samples, cond)
    assert result.valid.any() and not result.valid.all()
    path = domain.export(samples, cond, result, tmp_path / "motions.npz")
    with np.load(path, allow_pickle=False) as z:
        stored = dict(z)
    b = len(pick) * 2
    assert stored["poses"].shape == (b, 40, 72) and stored["joints"].shape == (b, 40, 24, 3)
    assert stored["lowest_height"].shape == (b, 40) and stored["mask"].shape == (b, 40)
    t = MotionThresholds(**{k[10:]: float(v) for k, v in stored.items() if k.startswith("threshold_")})
    flags = motion_infractions(stored["lowest_height"], stored["joints"][:, :, TOE_INDICES],
                               float(stored["mocap_framerate"]), stored["mask"], t)  # fmt: skip
    for reason, f in flags.items():
        np.testing.assert_array_equal(f, stored[f"reason_{reason}"])
    np.testing.assert_array_equal(~np.logical_or.reduce(list(flags.values())), stored["valid"])
    i = int(np.flatnonzero(~stored["valid"])[0])
    d = stored["mask"][i]
    one = tmp_path / "one.npz"
    np.savez(one, poses=stored["poses"][i][d], trans=stored["trans"][i][d], mocap_framerate=20.0)
    m = load_amass(one, fps=20.0, pelvis_rest=domain.body.rest_joints[0])
    out = domain.body.forward(**to_smplx_inputs(m, domain.body.rest_joints[0]))
    assert np.abs(out.joints - stored["joints"][i][d]).max() < 1e-4
    assert np.abs(out.vertices[:, :, 1].min(1) - stored["lowest_height"][i][d]).max() < 1e-4
    assert str(stored["body"]) == "proxy-smpl" and set(stored["label_name"]) <= set(domain.label_names)
    with pytest.raises(ValueError, match=".npz"):
        domain.export(samples, cond, result, tmp_path / "motions.json")


@pytest.mark.parametrize("fmt", ["obj", "glb"])
def test_meshes_reload(domain, motion, tmp_path, fmt):
    from genneg.domains.motion.export import write_meshes

    _, verts, _ = motion
    paths = write_meshes(domain.body, verts[:3], tmp_path, fmt)
    assert len(paths) == 3
    mesh = trimesh.load(paths[1], force="mesh", process=False)
    assert mesh.vertices.shape == verts[1].shape and len(mesh.faces) == len(domain.body.faces)
    assert np.abs(np.asarray(mesh.vertices) - verts[1]).max() < 1e-4


def test_gif_has_one_image_per_frame_and_flags(motion, tmp_path):
    from PIL import Image

    from genneg.domains.motion.plot import MotionPanel, frame_flags, write_gif

    _, verts, joints = motion
    n = 6
    sunk = joints[:n] - np.array([0, 0.3, 0])
    path = tmp_path / "a.gif"
    write_gif(path, [MotionPanel(joints[:n], verts[:n], "real"), MotionPanel(sunk, None, "sunk")])
    with Image.open(path) as im:
        assert im.n_frames == n
    flags = frame_flags(sunk, sunk[:, :, 1].min(1))
    assert flags["penetration"].all() and not frame_flags(joints, verts[:, :, 1].min(1))["penetration"].any()


def test_run_motion_tiny_end_to_end(cache_dir, tmp_path):
    """The whole pipeline (base, 2 rounds, distillation, every baseline, report) on a cut-down tiny preset."""
    from genneg.config import EvalConfig
    from genneg.domain import get_domain
    from genneg.run import run

    torch.set_num_threads(1)
    domain = get_domain("motion", cache_dir=str(cache_dir))
    cfg = domain.presets()["tiny"]
    cfg = replace(cfg, data={"cache_dir": str(cache_dir)}, base=replace(cfg.base, steps=60),
                  classifier=replace(cfg.classifier, steps=30), distil=replace(cfg.distil, steps=30),
                  genneg=replace(cfg.genneg, samples_per_round=64, distil_samples=64),
                  eval=EvalConfig(num_samples=64, num_nll=8, nll_sigmas=4))  # fmt: skip
    agg = run(domain, cfg, tmp_path / "run")
    rows = agg["rows"]
    assert {"base", "round1", "round2", "distilled", "rejection", "discriminator", "penalty"} <= set(rows)
    assert set(rows["base"]["reasons"]) == {"penetration", "skating", "float"}
    assert all(np.isfinite(rows[k]["nll"]["mean"]) for k in ("base", "round1", "round2", "distilled"))
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "figures" / "samples.png").is_file()
    stored = np.load(tmp_path / "run" / "seed0" / "samples_base.npz")
    assert stored["s_features"].shape == (64, 40, 147) and stored["s_lowest_height"].shape == (64, 40)
    json.loads((tmp_path / "run" / "results.json").read_text())
