"""Human motion: SMPL bodies through smplx, DeepMimic/AMASS mocap retargeted to SMPL-24, and its oracles.

``make_domain(**data_kwargs)`` builds the :class:`MotionDomain` that ``genneg run motion`` uses (found as
``genneg.domains.motion`` by ``genneg.domain.get_domain("motion")``). Heavy dependencies (smplx, pybullet, scipy,
trimesh) are imported by the submodules that need them; install them with ``pip install 'genneg[motion]'``.
"""

from .domain import MotionDomain, make_domain

__all__ = ["MotionDomain", "make_domain"]
