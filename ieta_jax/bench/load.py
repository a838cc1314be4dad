"""Machine-load guard shared by every benchmark: a ratio taken while other jobs share the cores is not reported.

    guard = LoadGuard.start(force=args.force)   # prints the load average before the run
    ...run...
    guard.finish()                              # prints it after
    if guard.ratios_allowed: print(ratio)       # else says why the ratio is withheld
"""

from __future__ import annotations

import argparse
import dataclasses
import os

MAX_START_LOAD = 1.0


def add_force_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help=f"report ratios even when the 1-minute load average at start is above {MAX_START_LOAD}")


@dataclasses.dataclass
class LoadGuard:
    """The load average at start (and end) of a benchmark, and whether its ratios may be reported."""

    start_load: tuple[float, float, float]
    force: bool
    end_load: tuple[float, float, float] | None = None

    @classmethod
    def start(cls, force: bool = False) -> "LoadGuard":
        guard = cls(start_load=os.getloadavg(), force=force)
        print(f"load average at start (1/5/15 min): {_fmt(guard.start_load)} on {os.cpu_count()} CPUs")
        if guard.busy:
            if force:
                print(f"--force: the machine is busy (1-min load {guard.start_load[0]:.2f} > {MAX_START_LOAD}); "
                      f"ratios below are reported anyway and are NOT valid comparisons")
            else:
                print(f"the machine is busy (1-min load {guard.start_load[0]:.2f} > {MAX_START_LOAD}): the run "
                      f"goes ahead but no ratio will be reported (pass --force to report it anyway)")
        return guard

    @property
    def busy(self) -> bool:
        return self.start_load[0] > MAX_START_LOAD

    @property
    def ratios_allowed(self) -> bool:
        return not self.busy or self.force

    def finish(self) -> None:
        self.end_load = os.getloadavg()
        print(f"load average at end (1/5/15 min): {_fmt(self.end_load)}")

    def ratio(self, text: str) -> None:
        """Print a ratio line, or why it is withheld."""
        if not self.ratios_allowed:
            print(f"(ratio withheld: load {self.start_load[0]:.2f} > {MAX_START_LOAD} at start; --force to print)")
        elif self.busy:
            print(f"{text}  [--force under load {self.start_load[0]:.2f}: not a valid comparison]")
        else:
            print(text)


def _fmt(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)
