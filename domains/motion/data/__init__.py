"""Real motion for the motion domain: DeepMimic clips (inside pybullet) and AMASS files, as SMPL-24 windows."""

from .windows import SPLITS, WindowConfig, build_windows, cache_windows, load_windows

__all__ = ["SPLITS", "WindowConfig", "build_windows", "cache_windows", "load_windows"]
