"""What the method's steps need besides the maths: where to keep files, whether to resume, how to show progress."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

__all__ = ["RunContext", "Phases"]

# ``phases(name, steps, samples) -> (progress, callback)``: the progress hooks of one phase of the method
Phases = Callable[[str, int, int], tuple[Callable[[int], None] | None, Callable[[dict], None] | None]]


@dataclass(frozen=True)
class RunContext:
    """Where a run keeps its files and how it reports progress.

    Attributes:
        run_dir: folder for weights, train states and cached draws (None: nothing is written).
        resume: reuse what ``run_dir`` holds (cached draws, train states) instead of starting afresh.
        progress: called with the number of rows after each sampled batch.
        callback: called with ``{"step", "loss", "lr", "grad_norm"}`` after each training step.
        phases: optional ``phases(name, steps, samples) -> (progress, callback)``; a caller (the CLI) opens one
            progress bar per phase of the method with it (``phase``).
    """

    run_dir: Path | str | None = None
    resume: bool = False
    progress: Callable[[int], None] | None = None
    callback: Callable[[dict], None] | None = None
    phases: Phases | None = None

    def file(self, name: str) -> Path | None:
        """``run_dir / name``, or None when nothing is kept on disk."""
        return None if self.run_dir is None else Path(self.run_dir) / name

    def phase(self, name: str, steps: int = 0, samples: int = 0) -> RunContext:
        """This context with the progress hooks of one phase (a round, the distillation, a baseline)."""
        if self.phases is None:
            return self
        progress, callback = self.phases(name, steps, samples)
        return replace(self, progress=progress, callback=callback)
