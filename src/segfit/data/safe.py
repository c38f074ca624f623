"""``data.on_error``: a bad sample either stops the run (naming the file) or is skipped, warned about once, counted."""

from __future__ import annotations

import warnings

from segfit.data.formats import ImageReader
from segfit.data.records import DataError, ImageRecord


class SafeReader:
    """An ``ImageReader`` whose ``load`` returns ``None`` for a bad sample when ``on_error`` is ``skip``."""

    def __init__(self, reader: ImageReader, on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.reader = reader
        self.on_error = on_error
        self.skipped: dict[str, str] = {}
        """Image file → problem, for every sample skipped so far (this process only)."""

    def __len__(self) -> int:
        return len(self.reader)

    def source(self, i: int) -> str:
        return self.reader.source(i)

    def load(self, i: int) -> ImageRecord | None:
        try:
            return self.reader.load(i)
        except DataError as err:
            if self.on_error == "raise":
                raise
            source = self.reader.source(i)
            if source not in self.skipped:
                self.skipped[source] = err.problem if err.path == source else str(err)
                warnings.warn(f"skipping {source}: {self.skipped[source]}", stacklevel=2)
            return None
