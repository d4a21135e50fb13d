"""Writing arrays of a known length to disk batch by batch, without holding them in memory.

``ArrayWriter(out, n)`` receives rows ``[start, start + m)`` of named arrays, writes each into its own ``.npy`` file
(the header for all ``n`` rows first, then the rows at their offset), and on ``close`` turns the folder into the
result atomically: renamed to ``out``, or streamed into one ``out.npz`` archive. A killed writer leaves only a
``.partial`` folder beside ``out``, never a truncated result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["ArrayWriter"]

_COPY_BYTES = 16 << 20  # the archive is filled in pieces of this size


class _NpyFile:
    """One ``.npy`` file of shape ``[n, *row]``; rows are written at their offset, in any order."""

    def __init__(self, path: Path, n: int, first: np.ndarray):
        if first.dtype.hasobject:
            raise ValueError(f"cannot stream {path.stem!r}: object arrays have no fixed size on disk")
        self.dtype, self.row = first.dtype, first.shape[1:]
        self.row_bytes = int(np.prod(self.row, dtype=np.int64)) * self.dtype.itemsize
        self.file = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (n, *self.row)}
        np.lib.format.write_array_header_2_0(self.file, header)
        self.offset = self.file.tell()
        self.file.truncate(self.offset + n * self.row_bytes)

    def write(self, start: int, rows: np.ndarray, name: str):
        if rows.shape[1:] != self.row or rows.dtype != self.dtype:
            raise ValueError(f"array {name!r}: a batch of shape {rows.shape[1:]} / {rows.dtype} does not match the "
                             f"first batch's {self.row} / {self.dtype}")
        self.file.seek(self.offset + start * self.row_bytes)
        self.file.write(np.ascontiguousarray(rows).tobytes())


class ArrayWriter:
    """Streams named arrays of ``n`` rows to ``out`` (a ``.npz`` archive or a folder of ``.npy`` files).

    Args:
        out: the result; its parent folder is created. An existing ``.npz`` is replaced at ``close``; an existing
            folder is refused (choose another path or remove it).
        n: rows every array has in the end.
    """

    def __init__(self, out: str | os.PathLike, n: int):
        if n < 1:
            raise ValueError(f"need n >= 1 rows, got {n}")
        self.out, self.n = Path(out), n
        self.archive = self.out.suffix == ".npz"
        if not self.archive and self.out.exists():
            raise FileExistsError(f"{self.out} already exists; choose another output or remove it")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.dir = self.out.parent / f".{self.out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
        self.dir.mkdir()  # permissions from the umask, as the result's should be
        self.files: dict[str, _NpyFile] = {}
        self.scalars: set[str] = set()
        self.rows = 0

    def write(self, start: int, arrays: dict[str, np.ndarray]) -> None:
        """Writes rows ``[start, start + m)`` of every array (0-d arrays are stored once, as they are)."""
        m = None
        for name, a in arrays.items():
            a = np.asarray(a)
            if a.ndim == 0:
                if name not in self.scalars:
                    np.save(self.dir / f"{name}.npy", a)
                    self.scalars.add(name)
                continue
            if m is None:
                m = a.shape[0]
            if a.shape[0] != m or not 0 <= start <= self.n - m:
                raise ValueError(f"array {name!r}: rows [{start}, {start + a.shape[0]}) do not fit a batch of {m} "
                                 f"rows within the {self.n} rows")
            if name not in self.files:
                self.files[name] = _NpyFile(self.dir / f"{name}.npy", self.n, a)
            self.files[name].write(start, a, name)
        self.rows += m or 0

    def close(self) -> Path:
        """Finishes the result and returns its path (every row must have been written once)."""
        for f in self.files.values():
            f.file.close()
        if self.rows != self.n:
            self.abort()
            raise ValueError(f"{self.rows} rows were written, expected {self.n}")
        if self.archive:
            fd, tmp = tempfile.mkstemp(dir=self.out.parent, prefix=f".{self.out.name}.", suffix=".tmp")
            os.close(fd)
            try:
                self._zip(tmp)
                os.replace(tmp, self.out)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            os.replace(self.dir, self.out)
        return self.out

    def _zip(self, path: str) -> None:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for npy in sorted(self.dir.glob("*.npy")):
                with open(npy, "rb") as src, z.open(npy.name, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, _COPY_BYTES)

    def abort(self) -> None:
        """Removes what was written; ``out`` is left as it was."""
        for f in self.files.values():
            f.file.close()
        shutil.rmtree(self.dir, ignore_errors=True)
