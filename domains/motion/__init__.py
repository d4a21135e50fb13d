"""Human motion: SMPL bodies through smplx, DeepMimic/AMASS mocap retargeted to SMPL-24, and its oracles.

Heavy dependencies (smplx, torch, pybullet, scipy) are imported by the submodules that need them; install them
with ``pip install 'genneg[motion]'``.
"""
