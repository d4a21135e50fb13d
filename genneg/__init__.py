"""genneg: Gen-neG (oracle-assisted guidance) for diffusion models.

The engine speaks one currency, a denoiser ``denoiser(x, sigma, cond) -> x0_hat``; see ARCHITECTURE in the README.
"""

__version__ = "0.1.0"
