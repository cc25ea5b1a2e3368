"""What the BTXRD reader reports: a :class:`Problem` per thing wrong with the input, and the
:class:`DatasetError` raised when a folder cannot be read at all (or, with ``strict=True``, has problems)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


class DatasetError(ValueError):
    """The dataset cannot be read (or, with ``strict=True``, it has problems); ``problems`` lists them."""

    def __init__(self, message: str, problems: Sequence["Problem"] = ()):
        self.problems = list(problems)
        if self.problems:
            shown = "\n".join(f"  - {p}" for p in self.problems[:50])
            more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
            message = f"{message}\n{shown}{more}"
        super().__init__(message)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: the file (relative to the dataset root when inside it) and why."""

    file: str
    reason: str
    #: ``sheet`` | ``image`` | ``annotation`` | ``layout``
    kind: str = "annotation"

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"
