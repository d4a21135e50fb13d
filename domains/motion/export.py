"""Exports of motion: a batch of samples with their verdicts (``.npz``, what ``MotionDomain.export`` writes), per-frame
meshes (trimesh ``.obj`` / ``.glb``), one motion's AMASS-style SMPL parameters (``.npz``), and before/after GIFs of
a finished run.

``python -m genneg.domains.motion.export RUN_DIR [--stages base distilled] [--n 4]`` writes, for the first ``n`` samples
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

__all__ = ["amass_parameters", "export_arrays", "write_export", "write_meshes", "write_amass", "export_run",
           "compare_gif"]

EXPORT_VERSION = 1


def amass_parameters(features: np.ndarray, body) -> tuple[np.ndarray, np.ndarray]:
    """AMASS-style SMPL parameters (Z up) of physical features [..., 147]: ``poses`` [..., 72] axis-angle (the
    pelvis's in the Z-up world) and ``trans`` [..., 3] (smplx ``transl``)."""
    dec = decode_features(np.asarray(features)[..., None, :])  # a one-frame axis for decode's [..., T, 147]
    rot = dec["rotations"][..., 0, :, :, :].copy()  # [..., 24, 3, 3]
    rot[..., 0, :, :] = Z_UP_TO_Y_UP.T @ rot[..., 0, :, :]
    poses = matrix_to_axis_angle(rot).reshape(rot.shape[:-3] + (72,))
    trans = dec["root"][..., 0, :] @ Z_UP_TO_Y_UP - body.rest_joints[0]  # inverse of root = (trans + rest) Z^T
    return poses.astype(np.float32), trans.astype(np.float32)


def export_arrays(samples: dict, result, body, label_names) -> dict[str, np.ndarray]:
    """A batch of decoded motion samples and their verdicts as named arrays (the ``.npz`` layout, batch first).

    Args:
        samples: ``MotionDomain.decode`` output (``features``, ``joints``, ``lowest_height``, ``defined``, ``label``).
        result: the oracle's ``OracleResult`` on them (or None: no verdict arrays).
        body: the ``body.Body`` they were posed with; label_names: the domain's clip names.

    Returns:
        ``poses`` [B, T, 72] and ``trans`` [B, T, 3] (AMASS: axis-angle, Z up), ``joints`` [B, T, 24, 3] and
        ``lowest_height`` [B, T] (metres, Y up, floor at y = 0: what the oracles read), ``mask`` [B, T] (defined
        frames), ``label`` [B] and ``label_name`` [B]; with a result, ``valid``, ``judged`` (the oracle's
        ``defined``) and ``reason_<name>`` [B]. Undefined frames hold zeros.
    """
    mask = np.asarray(samples["defined"], bool)
    b, t = mask.shape
    poses, trans = np.zeros((b, t, 72), np.float32), np.zeros((b, t, 3), np.float32)
    if mask.any():
        poses[mask], trans[mask] = amass_parameters(np.asarray(samples["features"])[mask], body)
    label = np.asarray(samples["label"])
    out = {"poses": poses, "trans": trans, "joints": np.asarray(samples["joints"], np.float32),
           "lowest_height": np.asarray(samples["lowest_height"], np.float32), "mask": mask, "label": label,
           "label_name": np.asarray(label_names)[label]}  # fmt: skip
    if result is not None:
        out.update(valid=result.valid, judged=result.defined, **{f"reason_{k}": v for k, v in result.reasons.items()})
    return out


def write_export(path: str | Path, arrays: dict, body, fps: float, thresholds=None) -> Path:
    """Writes :func:`export_arrays` output as one ``.npz`` with the batch-wide fields: ``mocap_framerate``,
    ``gender`` ("neutral"), ``betas`` [10] zeros, ``body`` (its name), ``version`` and the oracle thresholds
    (``threshold_<field>``) when given. Written beside the target, then renamed."""
    import dataclasses
    import os
    import tempfile

    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"a motion export is an .npz file, got {path}")
    extra = {"mocap_framerate": np.array(float(fps)), "gender": np.array("neutral"), "betas": np.zeros(10, np.float32),
             "body": np.array(body.name), "version": np.array(EXPORT_VERSION)}  # fmt: skip
    if thresholds is not None:
        extra.update({f"threshold_{k}": np.array(v) for k, v in dataclasses.asdict(thresholds).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays, **extra)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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
    poses, trans = amass_parameters(features, body)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, poses=poses.astype(np.float32), trans=trans.astype(np.float32), betas=np.zeros(10, np.float32),
             mocap_framerate=np.array(float(fps)), gender=np.array(gender), body=np.array(body.name))  # fmt: skip
    return path


def _pick(results: dict, first: str, n: int, label: int | None = None) -> np.ndarray:
    """Indices of up to n samples the first stage gets wrong (longest windows first), else any; only samples of
    clip ``label`` when given."""
    s = results[first]
    order = np.argsort(s["s_defined"].sum(1) * -1 + 1000 * s["valid"], kind="stable")
    if label is not None:
        order = order[s["s_label"][order] == label]
    return order[:n]


def compare_gif(path: str | Path, domain, denoisers: dict, label: int, sampler, *, seed: int = 0,
                frames: int | None = None, oracle=None, dpi: int = 72) -> dict[str, bool]:  # fmt: skip
    """Samples one full-length window of clip ``label`` from each denoiser with the same initial noise (``seed``)
    and animates them side by side as a GIF (``plot.write_gif``: stick figures of the SMPL joints over the floor,
    red while a frame penetrates). ``denoisers`` maps a panel title ("base", "Gen-neG") to a denoiser.

    Returns:
        ``{title: valid}``, the oracle's verdict (``domain.oracle()`` unless ``oracle``) on each panel's window.
    """
    import torch

    from genneg.generate import generate

    from .plot import MotionPanel, write_gif

    cond = {"label": torch.tensor([int(label)]), "defined": torch.ones(1, domain.frames, dtype=torch.bool)}
    oracle = oracle or domain.oracle()
    panels, verdicts = [], {}
    for title, denoiser in denoisers.items():
        samples = domain.decode(generate(denoiser, domain.sample_shape, 1, sampler, cond, seed=seed), cond)
        result = oracle(samples, cond)
        bad = [k for k, flags in result.reasons.items() if flags[0]]
        verdicts[title] = bool(result.valid[0])
        panels.append(MotionPanel(samples["joints"][0][:frames], None,
                                  f"{title}: {'invalid (' + ', '.join(bad) + ')' if bad else 'valid'}",
                                  lowest=samples["lowest_height"][0][:frames]))
    write_gif(path, panels, domain.fps, dpi=dpi)
    return verdicts


def export_run(run_dir: str | Path, stages=("base", "distilled"), n: int = 4, out: str | Path | None = None,
               mesh_format: str = "glb", label: str | None = None) -> Path:  # fmt: skip
    """Before/after GIFs, AMASS ``.npz`` and meshes of ``n`` samples from a finished ``genneg run motion``; every
    stage sampled the same conditions with the same noise, so a GIF compares them on one clip label and noise.
    ``label`` (a clip name, e.g. "walk") keeps to that clip's samples."""
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
    if label is not None and label not in domain.label_names:
        raise ValueError(f"unknown clip {label!r}; the run's clips: {', '.join(domain.label_names)}")
    for i in _pick(loaded, stages[0], n, None if label is None else domain.label_names.index(label)):
        panels = []
        for stage in stages:
            s = loaded[stage]
            d = s["s_defined"][i]
            feats = s["s_features"][i][d]
            verts, joints = (a.numpy() for a in domain.pose(torch.as_tensor(feats)))
            bad = [k[2:] for k in s if k.startswith("r_") and s[k][i]]
            verdict = "invalid (" + ", ".join(bad) + ")" if bad else "valid"
            panels.append(MotionPanel(joints, verts, f"{stage}: {verdict}"))
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
    p.add_argument("--label", default=None, help="only samples of this clip, e.g. walk (default: any)")
    a = p.parse_args(argv)
    out = export_run(a.run_dir, a.stages, a.n, a.out, a.mesh_format, a.label)
    print(f"exports written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
