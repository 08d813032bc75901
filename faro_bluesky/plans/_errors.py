"""The one error an invalid experiment raises: every problem, listed, before any run opens."""

from __future__ import annotations

from collections.abc import Iterable


class ExperimentError(ValueError):
    """An experiment that can't run; ``problems`` lists each problem with its fix."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"experiment has {len(self.problems)} problem(s):\n{lines}")

    @classmethod
    def raise_if(cls, problems: Iterable[str]) -> None:
        """Raise if ``problems`` is not empty."""
        problems = list(problems)
        if problems:
            raise cls(problems)


class DeviceFault(RuntimeError):
    """A device failed an operation even after its retries: a visit's frames are missing.

    `optogenetic_plan` catches it, records the visit as missed (stream ``missed``) and goes
    on; only ``max_consecutive_misses`` in a row end the run. Other plans see it as an
    ordinary failure, with a one-sentence message naming the device and the error.
    """

    def __init__(self, device: str, error: BaseException | str) -> None:
        self.device = device
        self.error = error
        super().__init__(f"{device} failed: {error}")
