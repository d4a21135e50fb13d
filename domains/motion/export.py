"""Exports of motion: per-frame meshes (trimesh ``.obj`` / ``.glb``), AMASS-style SMPL parameters (``.npz``), and
before/after GIFs of a finished run.

``python -m domains.motion.export RUN_DIR [--stages base distilled] [--n 4]`` writes, for the first ``n`` samples
that the first stage gets wrong, a side-by-side GIF of every stage on the same condition and initial noise (every
stage of a run samples with the same seed), plus each motion's AMASS ``.npz`` and ``.glb`` meshes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .data.amass import Z_UP_TO_Y_UP
from .data.representation import decode as decode_features
from .rotations import matrix_to_axis_angle

__all__ = ["write_meshes", "write_amass", "export_run"]


def write_meshes(body, vertices: np.ndarray, folder: str | Path, fmt: str = "obj") -> list[Path]:
    """One mesh file per frame of ``vertices`` [T, V, 3] (``frame_0000.obj``, ...); returns the paths."""
    if fmt not in ("obj", "glb", "ply"):
        raise ValueError(f"mesh format must be obj, glb or ply, got {fmt!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, v in enumerate(np.asarray(vertices)):
        path = folder / f"frame_{t:04d}.{fmt}"
        body.mesh(v).export(path)
        paths.append(path)
    return paths


def write_amass(path: str | Path, features: np.ndarray, body, fps: float = 20.0, gender: str = "neutral") -> Path:
    """SMPL parameters of one motion as an AMASS-style ``.npz`` (Z up), readable by ``data.amass.load_amass``.

    Args:
        features: [T, 147] physical frame features (defined frames only).
        body: the ``body.Body`` the motion was posed with; its name is stored as ``body`` (e.g. "proxy-smpl").

    Stored: ``poses`` [T, 72] axis-angle (pelvis in the Z-up world), ``trans`` [T, 3] (smplx ``transl``, Z up),
    ``betas`` [10] zeros, ``mocap_framerate``, ``gender``, ``body``.
    """
    dec = decode_features(np.asarray(features)[None])
    rot = dec["rotations"][0].copy()  # [T, 24, 3, 3]
    rot[:, 0] = Z_UP_TO_Y_UP.T @ rot[:, 0]
    poses = matrix_to_axis_angle(rot).reshape(len(rot), -1)
    trans = dec["root"][0] @ Z_UP_TO_Y_UP - body.rest_joints[0]  # inverse of root = (trans + rest) Z^T
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, poses=poses.astype(np.float32), trans=trans.astype(np.float32), betas=np.zeros(10, np.float32),
             mocap_framerate=np.array(float(fps)), gender=np.array(gender), body=np.array(body.name))  # fmt: skip
    return path


def _pick(results: dict, first: str, n: int) -> np.ndarray:
    """Indices of up to n samples the first stage gets wrong (longest windows first), else any."""
    s = results[first]
    order = np.argsort(s["s_defined"].sum(1) * -1 + 1000 * s["valid"], kind="stable")
    return order[:n]


def export_run(run_dir: str | Path, stages=("base", "distilled"), n: int = 4, out: str | Path | None = None,
               mesh_format: str = "glb") -> Path:  # fmt: skip
    """Before/after GIFs, AMASS ``.npz`` and meshes of ``n`` samples from a finished ``genneg run motion``."""
    import torch

    from genneg.checkpoint import read_json, read_npz
    from genneg.domain import get_domain

    from .plot import MotionPanel, write_gif

    run_dir = Path(run_dir)
    cfg = read_json(run_dir / "config.json")
    domain = get_domain("motion", **cfg["data"])
    seed_dir = sorted(run_dir.glob("seed*"))[0]
    loaded = {}
    for stage in stages:
        path = seed_dir / f"samples_{stage}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: is {stage!r} a finished stage of this run?")
        loaded[stage] = read_npz(path, "evaluation samples")
    out = Path(out) if out else run_dir / "exports"
    for i in _pick(loaded, stages[0], n):
        panels = []
        for stage in stages:
            s = loaded[stage]
            d = s["s_defined"][i]
            feats = s["s_features"][i][d]
            verts, joints = (a.numpy() for a in domain.pose(torch.as_tensor(feats)))
            bad = [k[2:] for k in s if k.startswith("r_") and s[k][i]]
            panels.append(MotionPanel(joints, verts, f"{stage}: {'invalid (' + ', '.join(bad) + ')' if bad else 'valid'}"))
            write_amass(out / f"sample{i}_{stage}.npz", feats, domain.body, domain.fps)
            write_meshes(domain.body, verts, out / f"sample{i}_{stage}_meshes", mesh_format)
        write_gif(out / f"sample{i}_{'_vs_'.join(stages)}.gif", panels, domain.fps)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="GIFs, AMASS .npz and meshes from a finished `genneg run motion`.")
    p.add_argument("run_dir")
    p.add_argument("--stages", nargs="+", default=["base", "distilled"])
    p.add_argument("--n", type=int, default=4, help="samples to export (default: %(default)s)")
    p.add_argument("--out", default=None, help="default: RUN_DIR/exports")
    p.add_argument("--mesh-format", default="glb", choices=["obj", "glb", "ply"])
    a = p.parse_args(argv)
    out = export_run(a.run_dir, a.stages, a.n, a.out, a.mesh_format)
    print(f"exports written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
