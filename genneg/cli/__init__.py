"""The ``genneg`` command: ``parser`` declares it, ``commands`` runs it, ``resolve`` turns arguments into configs,
``ui`` shows progress and logs. ``main`` only parses, builds a config and calls the library."""

from __future__ import annotations

import sys

from .parser import build_parser
from .resolve import resolve_device

__all__ = ["main", "build_parser"]


def main(argv: list[str] | None = None) -> int:
    from genneg import distributed

    args = build_parser().parse_args(argv)
    if hasattr(args, "workers") and args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        if hasattr(args, "device"):  # under torchrun: join the process group, take this rank's GPU
            args.device = distributed.init(resolve_device(args.device))
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    except (KeyError, ValueError, FileNotFoundError, TypeError, ImportError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return 0
