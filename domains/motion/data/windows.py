"""Training windows of real motion: DeepMimic clips retargeted to SMPL-24, grounded, split, cut, mirrored.

Every clip is held out in part: its frames are split in time into train | val | test segments, and windows never
cross a segment boundary. Windows hold up to ``window`` frames; shorter ones are padded and masked. Looping clips
are closed and tiled first (``loops.py``) so that every cycle phase starts a full train window and the val and test
segments hold full-length windows; a tiled clip's held-out frames repeat its cycle, so for those clips "held out"
means new phases and positions of the same cycle, not new motion. Some train windows are cut to a random prefix
(``prefix_fraction``) so that short frame masks are in the training distribution.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from genneg.checkpoint import read_npz
from genneg.rng import numpy_rng

from ..rotations import matrix_to_axis_angle
from .deepmimic import default_clip_paths, read_clip, resample, retarget_to_smpl
from .loops import close_loop, join_ratio, tile
from .representation import FRAME_FEATURES, canonicalize, encode, mirror

__all__ = ["WindowConfig", "SPLITS", "clip_motion", "ground", "split_segments", "build_windows",
           "cache_windows", "load_windows"]  # fmt: skip

SPLITS = ("train", "val", "test")
DATA_VERSION = 3  # bump when the pipeline changes: it keys the cache


@dataclass(frozen=True)
class WindowConfig:
    """How real motion is turned into windows.

    Attributes:
        fps: frame rate after resampling.
        window: frames per window (2 s at 20 fps).
        stride: frames between train window starts.
        min_frames: shortest window kept; also the shortest val/test segment of a clip.
        val_fraction, test_fraction: share of a clip's frames (at its end) held out, for clips that are not tiled.
        tile: close and tile the looping clips (``"Loop": "wrap"``) into several cycles.
        heldout_frames: frames of a tiled clip's val segment and of its test segment (at least ``window``).
        heldout_stride: frames between val/test window starts.
        prefix_fraction: share of train windows cut to a prefix of random length in [min_frames, window].
        mirror: add the left-right mirror image of every window.
        seed: chooses the phase of each clip's train window grid.
        clips: names of DeepMimic clips to use ("walk", ...); empty = all.
        clip_dir: folder of ``humanoid3d_*.txt`` clips; None = the ones inside pybullet_data.
        ground_percentile: the clip is shifted so this percentile of its per-frame lowest vertex is at y = 0.
    """

    fps: float = 20.0
    window: int = 40
    stride: int = 10
    min_frames: int = 5
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    mirror: bool = True
    tile: bool = True
    heldout_frames: int = 80
    heldout_stride: int = 10
    prefix_fraction: float = 0.5
    seed: int = 0
    clips: tuple[str, ...] = ()
    clip_dir: str | None = None
    ground_percentile: float = 5.0

    def __post_init__(self):
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not 2 <= self.min_frames <= self.window:
            raise ValueError(f"need 2 <= min_frames <= window, got {self.min_frames}, {self.window}")
        if self.stride < 1 or self.heldout_stride < 1:
            raise ValueError(f"stride and heldout_stride must be >= 1, got {self.stride}, {self.heldout_stride}")
        if self.heldout_frames < self.window:
            raise ValueError(f"heldout_frames ({self.heldout_frames}) must hold a window of {self.window} frames")
        if not 0 <= self.prefix_fraction <= 1:
            raise ValueError(f"prefix_fraction must be in [0, 1], got {self.prefix_fraction}")
        if min(self.val_fraction, self.test_fraction) < 0 or self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction and test_fraction must be >= 0 and sum to less than 1")
        if not 0 <= self.ground_percentile <= 100:
            raise ValueError(f"ground_percentile must be in [0, 100], got {self.ground_percentile}")
        object.__setattr__(self, "clips", tuple(self.clips))


def _clip_paths(cfg: WindowConfig) -> list[Path]:
    paths = sorted(Path(cfg.clip_dir).glob("humanoid3d_*.txt")) if cfg.clip_dir else default_clip_paths()
    if cfg.clips:
        by_name = {p.stem.removeprefix("humanoid3d_"): p for p in paths}
        unknown = [c for c in cfg.clips if c not in by_name]
        if unknown:
            raise ValueError(f"unknown clips {unknown}; available: {sorted(by_name)}")
        paths = [by_name[c] for c in cfg.clips]
    if not paths:
        raise FileNotFoundError(f"no humanoid3d_*.txt clips in {cfg.clip_dir}")
    return paths


def pose_body(body, root: np.ndarray, local: np.ndarray):
    """Runs ``body`` on a motion: root [T, 3] pelvis positions, local [T, 24, 3, 3] -> BodyOutput."""
    aa = matrix_to_axis_angle(local)
    return body.forward(aa[:, 0], aa[:, 1:].reshape(len(aa), -1), root - body.rest_joints[0])


def ground(body, root: np.ndarray, local: np.ndarray, percentile: float = 5.0) -> np.ndarray:
    """Root positions [T, 3] shifted up or down so the given percentile of per-frame lowest vertex is at 0."""
    lowest = pose_body(body, root, local).vertices[:, :, 1].min(axis=1)
    return root - np.array([0.0, np.percentile(lowest, percentile), 0.0])


def _cycles(duration: float, cfg: WindowConfig) -> int:
    """Cycles of a looping clip that give every phase a full train window plus the two held-out segments."""
    need = duration + (cfg.window - 1 + 2 * cfg.heldout_frames + 1) / cfg.fps
    return int(np.ceil(need / duration))


def clip_motion(path: str | Path, cfg: WindowConfig, body) -> tuple[str, np.ndarray, np.ndarray, dict]:
    """One clip, closed and tiled if it loops (and ``cfg.tile``), resampled, retargeted to ``body`` and grounded.

    Returns:
        (name, root [N, 3], local [N, 24, 3, 3], info) with info ``{"cycles": int (0 = not tiled),
        "loop_fix_deg": float, "join_ratio": float}`` (``loops.close_loop`` / ``loops.join_ratio``; NaN untiled).
    """
    clip = read_clip(path)
    info = {"cycles": 0, "loop_fix_deg": float("nan"), "join_ratio": float("nan")}
    if cfg.tile and clip.loop:
        clip, fix = close_loop(clip)
        info = {"cycles": _cycles(clip.duration, cfg), "loop_fix_deg": fix, "join_ratio": join_ratio(clip)}
        clip = tile(clip, info["cycles"])
    clip = resample(clip, cfg.fps)
    root, local = retarget_to_smpl(clip, body.rest_joints.astype(np.float64))
    return clip.name, ground(body, root, local, cfg.ground_percentile), local, info


def split_segments(n: int, cfg: WindowConfig, tiled: bool = False) -> dict[str, tuple[int, int]]:
    """Frame ranges [start, stop) of the train, val and test parts of an n-frame clip (in time order).

    A tiled clip holds out ``heldout_frames`` for val and for test; any other clip its val/test fractions.
    """
    if tiled:
        held = [cfg.heldout_frames if f > 0 else 0 for f in (cfg.val_fraction, cfg.test_fraction)]
    else:
        held = [max(cfg.min_frames, round(f * n)) if f > 0 else 0 for f in (cfg.val_fraction, cfg.test_fraction)]
    n_train = n - sum(held)
    if n_train < cfg.min_frames:
        raise ValueError(f"a clip of {n} frames is too short to hold out val/test segments of {held} frames")
    return {"train": (0, n_train), "val": (n_train, n_train + held[0]), "test": (n_train + held[0], n)}


def _window_starts(start: int, stop: int, cfg: WindowConfig, stride: int, phase: int) -> list[int]:
    if stop - start <= cfg.window:
        return [start] if stop - start >= cfg.min_frames else []
    starts = list(range(start + phase, stop - cfg.window + 1, stride)) or [stop - cfg.window]
    if starts[-1] + cfg.window < stop:  # cover the segment's tail too
        starts.append(stop - cfg.window)
    return starts


def _prefix_length(cfg: WindowConfig, length: int, rng: np.random.Generator) -> int:
    """A train window's length after the random prefix cut (drawn for every window, so the stream is stable)."""
    cut, short = rng.random() < cfg.prefix_fraction, int(rng.integers(cfg.min_frames, cfg.window + 1))
    return min(length, short) if cut else length


def _clip_windows(name, root, local, cfg: WindowConfig, rng: np.random.Generator, tiled: bool) -> list[dict]:
    out = []
    for split, (a, b) in split_segments(len(root), cfg, tiled).items():
        train = split == "train"
        stride = cfg.stride if train else cfg.heldout_stride
        phase = int(rng.integers(cfg.stride)) if train else 0
        for s in _window_starts(a, b, cfg, stride, phase):
            full = min(s + cfg.window, b)
            e = s + _prefix_length(cfg, full - s, rng) if train else full
            variants = [(False, root[s:e], local[s:e])]
            if cfg.mirror:
                variants.append((True, *mirror(root[s:e], local[s:e])))
            for mirrored, r, loc in variants:
                feats = np.zeros((cfg.window, FRAME_FEATURES), np.float32)
                feats[: e - s] = encode(*canonicalize(r, loc))
                out.append(dict(features=feats, length=e - s, clip=name, split=split, mirrored=mirrored, start=s,
                                cut=e < full))  # fmt: skip
    return out


@functools.lru_cache(maxsize=4)
def _worker_body(model: str, cache_dir: str | None):
    """The body a worker process poses with, loaded once per process (not shipped with every job)."""
    from ..body import load_body

    return load_body(model, cache_dir=cache_dir)


def _clip_job(path: str, cfg: WindowConfig, body) -> tuple[str, np.ndarray, np.ndarray, dict]:
    """``clip_motion`` on an executor; ``body`` is a Body, or ``(model, cache_dir)`` to load it on the worker."""
    return clip_motion(path, cfg, _worker_body(*body) if isinstance(body, tuple) else body)


def _stack(rows: list[dict], infos: dict, cfg: WindowConfig, body_name: str) -> dict[str, np.ndarray]:
    """``build_windows``' arrays from its window rows and per-clip infos."""
    names = sorted({r["clip"] for r in rows})
    length = np.array([r["length"] for r in rows])
    return {
        "features": np.stack([r["features"] for r in rows]),
        "mask": np.arange(cfg.window)[None] < length[:, None],
        "length": length,
        "label": np.array([names.index(r["clip"]) for r in rows]),
        "clip": np.array([r["clip"] for r in rows]),
        "split": np.array([r["split"] for r in rows]),
        "mirrored": np.array([r["mirrored"] for r in rows]),
        "start": np.array([r["start"] for r in rows]),
        "cut": np.array([r["cut"] for r in rows], bool),
        "label_names": np.array(names),
        "frames": np.array([infos[n]["frames"] for n in names]),
        "cycles": np.array([infos[n]["cycles"] for n in names]),
        "loop_fix_deg": np.array([infos[n]["loop_fix_deg"] for n in names]),
        "join_ratio": np.array([infos[n]["join_ratio"] for n in names]),
        "fps": np.array(cfg.fps),
        "body": np.array(body_name),
    }


def build_windows(cfg: WindowConfig = WindowConfig(), body=None, callback: Callable[[str], None] | None = None,
                  executor: cf.Executor | None = None, body_source: tuple[str, str | None] | None = None):
    """All windows of the configured clips, deterministic given ``cfg`` and the body.

    Args:
        body: a ``body.Body`` (default: ``load_body()``, the proxy unless GENNEG_SMPL_MODEL is set).
        callback: called with each clip's name once it is processed.
        executor: retargets and grounds the clips in parallel (a process pool, a Dask client's executor); the
            windows are then cut here in clip order, so the result is the same as without one.
        body_source: ``(model, cache_dir)`` that ``load_body`` turns into ``body``: workers load the body once
            instead of receiving it (megabytes) with every clip. The clips and the model must be readable there.

    Returns:
        dict of numpy arrays over N windows: ``features`` [N, T, 147] float32 (zero padding), ``mask`` [N, T]
        bool, ``length`` [N], ``label`` [N] (index into ``label_names``), ``clip`` [N] str, ``split`` [N] str,
        ``mirrored`` [N] bool, ``start`` [N] (first frame in the clip), ``cut`` [N] bool (a train window cut to a
        random prefix), plus ``label_names`` [L], per clip ``frames`` (after tiling), ``cycles``, ``loop_fix_deg``
        and ``join_ratio`` [L] (``clip_motion``'s info), ``fps`` and ``body`` (the body's name, e.g. "proxy-smpl").
    """
    if body is None:
        from ..body import load_body

        body = load_body()
    rng = numpy_rng(cfg.seed, "motion-windows")
    rows, infos = [], {}
    paths = _clip_paths(cfg)
    if executor is None:
        motions = (clip_motion(path, cfg, body) for path in paths)
    else:
        futures = [executor.submit(_clip_job, str(path), cfg, body_source or body) for path in paths]
        motions = (f.result() for f in futures)
    for name, root, local, info in motions:
        rows += _clip_windows(name, root, local, cfg, rng, info["cycles"] > 0)
        infos[name] = {**info, "frames": len(root)}
        if callback:
            callback(name)
    return _stack(rows, infos, cfg, body.name)



def _cache_key(cfg: WindowConfig, body_name: str) -> str:
    blob = json.dumps({"config": asdict(cfg), "body": body_name, "version": DATA_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _atomic_write(path: Path, write: Callable) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _manifest(cfg: WindowConfig, data: dict) -> dict:
    counts = {s: int((data["split"] == s).sum()) for s in SPLITS}
    frames = {s: int(data["length"][data["split"] == s].sum()) for s in SPLITS}
    per_clip = {str(c): int((data["clip"] == c).sum()) for c in data["label_names"]}
    loops = {str(c): {"cycles": int(k), "loop_fix_deg": round(float(f), 2), "join_ratio": round(float(j), 3)}
             for c, k, f, j in zip(data["label_names"], data["cycles"], data["loop_fix_deg"], data["join_ratio"])
             if k > 0}  # fmt: skip
    return {"version": DATA_VERSION, "body": str(data["body"]), "config": asdict(cfg), "windows": counts,
            "frames": frames, "windows_per_clip": per_clip, "tiled": loops,
            "label_names": [str(n) for n in data["label_names"]]}  # fmt: skip


def cache_windows(cfg: WindowConfig = WindowConfig(), body=None, cache_dir: str | Path | None = None,
                  callback: Callable[[str], None] | None = None, executor: cf.Executor | None = None,
                  body_source: tuple[str, str | None] | None = None) -> Path:  # fmt: skip
    """Builds the windows once and stores them as ``motion-windows-<key>.npz`` + a JSON manifest beside it.

    The key hashes the config, the body's name and the pipeline version, so a change rebuilds.
    Returns the ``.npz`` path (reuse it with :func:`load_windows`).
    """
    if body is None:
        from ..body import load_body

        body = load_body()
    root = (Path(cache_dir).expanduser() if cache_dir
            else Path(os.environ.get("GENNEG_CACHE", "~/.cache/genneg")).expanduser())
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"motion-windows-{_cache_key(cfg, body.name)}.npz"
    if not path.is_file():
        data = build_windows(cfg, body, callback, executor, body_source)
        manifest = json.dumps(_manifest(cfg, data), indent=2).encode()
        _atomic_write(path.with_suffix(".json"), lambda fh: fh.write(manifest))
        _atomic_write(path, lambda fh: np.savez_compressed(fh, **data))
    return path


def load_windows(path: str | Path, split: str | None = None) -> dict[str, np.ndarray]:
    """Windows stored by :func:`cache_windows`, optionally only one split ("train", "val" or "test")."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data = read_npz(path, "motion windows", ("features", "mask", "length", "label", "split", "label_names"))
    if split is None:
        return data
    keep = data["split"] == split
    n = len(keep)
    return {k: (v[keep] if v.ndim and v.shape[0] == n and k != "label_names" else v) for k, v in data.items()}
