"""Progress of long work: a bar that counts the unit the result reports, and the run's length said up front.

    with Meter(2048, "call", "roar", enabled=True) as meter:
        for chunk in calibrated(2048, 256):      # chunks of 1 (warm-up), 1 (timed), then 256 units
            ...                                  # the work of chunk.stop - chunk.start units
            meter.update(chunk.stop - chunk.start)

After its second update a meter knows the time per unit and writes one line before the bar moves on,

    roar: about 2 min (2048 calls at ~60 ms each)

(:func:`estimate_line`): the time per unit of the second update (the first pays the warm-up: loading, compiling),
times the units of the run. The first chunks are small (:func:`calibrated`), so the line comes after two denoiser
calls, not after a batch of minutes. A small chunk uses a GPU less well than a full batch, so there the estimate
errs long.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
#: Work estimated below this many seconds says nothing up front: its bar is enough.
QUIET_BELOW_S = 10.0


def duration(seconds: float) -> str:
    """A rounded duration a person reads at a glance: ``40 s``, ``2 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def per_unit(seconds: float) -> str:
    """The time of one unit, two significant digits at most: ``60 ms``, ``290 ms``, ``1.2 s``, ``3 min``."""
    if seconds >= 1:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 90 else duration(seconds)
    ms = seconds * 1000
    return f"{ms:.2g} ms" if ms < 10 else f"{ms:.0f} ms"


def estimate_line(desc: str, units: float, unit: str, seconds_per_unit: float) -> str:
    """``desc: about T (N units at ~t each)``, ``T = N x t``."""
    n = f"{int(units)}" if float(units).is_integer() else f"{units:.3g}"
    return (f"{desc}: about {duration(units * seconds_per_unit)} ({n} {unit}{'s' * (units != 1)} at "
            f"~{per_unit(seconds_per_unit)} each)")


def calibrated(total: int, size: int, first: tuple[int, ...] = (1, 1)) -> Iterator[slice]:
    """``slice``s covering ``range(total)``: first chunks of ``first`` units (a warm-up, then the one a
    :class:`Meter` times), then chunks of ``size``."""
    start, k = 0, 0
    while start < total:
        stop = min(total, start + (min(first[k], size) if k < len(first) else size))
        yield slice(start, stop)
        start, k = stop, k + 1


def track(items: Sequence[T], unit: str, desc: str, enabled: bool | None = True, **bar_options) -> Iterator[T]:
    """``items``, one by one, counted by a :class:`Meter` (``len(items)`` ``unit``s): a loop's bar with its estimate."""
    with Meter(len(items), unit, desc, enabled, **bar_options) as meter:
        for item in items:
            yield item
            meter.update(1)


class Meter:
    """A tqdm bar over ``total`` ``unit``s that, after its second update, writes the estimate of the run
    (:func:`estimate_line`, from the second update's time per unit) when that is ``QUIET_BELOW_S`` or more.

    Args:
        total: the units of the whole run, in the unit its result reports (denoiser calls, steps, trials, cells).
        enabled: True shows it, False hides it, None leaves it to tqdm (shown on an interactive terminal).
        initial: units already done (a resumed run); the estimate counts the rest.
        clock: seconds, monotone (a test passes a fake one); write: where the estimate goes (default: stderr,
            above the bar).
    """

    def __init__(self, total: float, unit: str, desc: str, enabled: bool | None = True, *, initial: float = 0,
                 clock: Callable[[], float] = time.perf_counter, write: Callable[[str], None] | None = None,
                 **bar_options):
        self.total, self.unit, self.desc, self.initial, self.clock = total, unit, desc, initial, clock
        # no tqdm at all when off: the runner makes a meter for every sample() call
        self.bar = None if enabled is False else tqdm(total=total, initial=initial, unit=unit, desc=desc,
                                                       disable=None if enabled is None else not enabled, **bar_options)
        if self.bar is not None and self.bar.disable:
            self.bar = None
        self.write = write or (lambda line: tqdm.write(line, file=sys.stderr))
        self.timed_from = clock()
        self.estimate: str | None = None
        self.updates = 0

    def update(self, units: float = 1) -> None:
        """Count ``units`` done. The first update ends the warm-up (a first call pays for loading and compiling);
        the second is timed, and the estimate of the whole run follows it."""
        if self.bar is None:
            return
        if units > 0 and self.updates < 2:
            now = self.clock()
            self.updates += 1
            left = self.total - self.initial
            seconds = (now - self.timed_from) / units
            if self.updates == 2 and left * seconds >= QUIET_BELOW_S:
                self.estimate = estimate_line(self.desc, left, self.unit, seconds)
                self.write(self.estimate)
            self.timed_from = now
        self.bar.update(units)

    def announce(self, line: str) -> None:
        """Write an estimate the caller made itself (from its own calibration) in place of the meter's."""
        self.estimate, self.updates = line, 2
        if self.bar is not None:
            self.write(line)

    def set_postfix(self, **values) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values, refresh=False)

    def note(self, line: str) -> None:
        """Print ``line`` above the bar (on stdout, where results go)."""
        if self.bar is None:
            print(line)
        else:
            self.bar.write(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
