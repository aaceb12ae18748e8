"""A wall-clock budget: what is left, a progress bar that shows it, and ``20m`` / ``90s`` / ``1h30m`` parsing."""

from __future__ import annotations

import re
import time
from typing import Callable

from tqdm.auto import tqdm

from ..errors import ConfigError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: "str | float | int") -> float:
    """Seconds in ``"20m"``, ``"90s"``, ``"1h30m"``, ``"300"`` (seconds) or a number; positive."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text).strip().lower())
        if not match or not any(match.groups()):
            raise ConfigError(f"budget {text!r} is not a duration: write e.g. 90s, 20m, 1h30m or a number of seconds")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise ConfigError(f"budget must be positive, got {text!r}")
    return seconds


class Budget:
    """``seconds`` of wall time from construction; ``remaining()`` never goes below zero.

    The bar counts elapsed seconds against the total and names the stage running and the seconds left;
    ``clock`` is injectable so tests need not sleep.
    """

    def __init__(self, seconds: float, *, progress: bool = True, clock: Callable[[], float] = time.monotonic):
        self.seconds = float(seconds)
        self.clock = clock
        self.started = clock()
        self.bar = tqdm(total=round(self.seconds), unit="s", desc="auto", disable=not progress, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} s {postfix}")

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        return max(0.0, self.seconds - self.elapsed())

    def stage(self, name: str) -> None:
        """Show ``name`` and what is left on the bar (call at every step of the search)."""
        self.bar.n = min(self.elapsed(), self.seconds)
        self.bar.set_postfix_str(f"{name}; {self.remaining():.0f} s left", refresh=True)

    def close(self) -> None:
        self.bar.n = min(self.elapsed(), self.seconds)
        self.bar.close()
