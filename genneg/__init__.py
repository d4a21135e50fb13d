"""genneg: Gen-neG (oracle-assisted guidance) for diffusion models.

The engine speaks one currency, a denoiser ``denoiser(x, sigma, cond) -> x0_hat``; see
``docs/api.md`` for the Python API and ``docs/method.md`` for the method as implemented.
"""

__version__ = "0.1.0"
