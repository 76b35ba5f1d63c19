"""Many blocks at a constant inflation rate, as whole arrays, exactly.

At a constant rate ``a / b`` (the reduced fraction ``inflation / (DEC * blocks_per_year)``) each
empty block mints ``p = floor(S * a / b)`` and the supply becomes ``S + p``. The recursion has no
closed form (kernel.py's docstring says why), but it has a form that arrays can check. Write the
first block's ``S0 * a = p0 * b + e0`` (``0 <= e0 < b``) and ``p_n = p0 + C_n``; since
``S_n = S0 + n * p0 + P_n`` with ``P_n = C_0 + ... + C_(n-1)``::

    C_n = floor((e0 + n * p0 * a + a * P_n) / b)                                  (*)

``C_n`` depends only on the ``C`` before it, so (*) has exactly one solution: the true one. Any
sequence that (*) maps onto itself is that solution. :func:`constant_rate_provisions` starts from
``P = 0`` (a lower bound: every ``C`` is at least 0) and applies (*) to the whole window until the
sequence no longer changes (two or three rounds, as ``P`` is a small correction: ``a * P_n`` is far
below ``b`` for the windows allowed here), then returns ``p0 + C``: the same integers the
block-by-block loop computes. It gives up (returns None) when the window would leave 64 bits or
does not settle in a bounded number of rounds; the caller then steps the blocks one by one.

Why no product can overflow: (*) is monotone in ``C``, so from the lower bound every round stays
at or below the true sequence, whose arguments are at most ``S_max * a``, where ``S_max`` bounds
the supply over the window: ``S_n <= S0 * (1 + a/b)**n <= S0 * exp(W * a / b)``, and the window
``W`` is cut so that ``64 * W * a <= b``, hence ``S_n <= S0 + S0 // 32 + 1``. The window is used
only when ``S_max * a`` and ``b`` fit a signed 64-bit integer.
"""

from __future__ import annotations

import numpy
import numpy.typing

#: The most blocks solved as one array (a day of one-second blocks fits).
MAX_WINDOW = 1 << 17
#: Below this many blocks the arrays cost more than the loop.
MIN_WINDOW = 64
_ROUNDS = 40
_INT64_MAX = 2**63 - 1

Provisions = numpy.typing.NDArray[numpy.int64]


def window_for(supply: int, num: int, den: int, blocks: int) -> int:
    """How many of ``blocks`` (at most) one array window may solve from ``supply`` at the rate
    ``num / den`` (reduced, non-negative); 0 when none (too few blocks, or beyond 64 bits)."""
    if supply < 0 or num < 0 or den <= 0 or den > _INT64_MAX:
        return 0
    window = min(blocks, MAX_WINDOW, den // (64 * num) if num else MAX_WINDOW)
    most = supply + supply // 32 + 1  # the supply never passes this inside the window
    if window < MIN_WINDOW or most * max(num, 1) > _INT64_MAX:
        return 0
    return window


def constant_rate_provisions(supply: int, num: int, den: int, window: int) -> tuple[int, Provisions] | None:
    """The provisions of ``window`` blocks from ``supply`` at the constant rate ``num / den``
    (``window`` from :func:`window_for`), and the supply after them; None when the rounds do not
    settle (the caller then steps the blocks one by one). Equal to ``window`` steps of
    ``p = supply * num // den; supply += p``, number for number."""
    if window <= 0 or window != window_for(supply, num, den, window):
        return None
    first, excess = divmod(supply * num, den)
    positions = numpy.arange(window, dtype=numpy.int64)
    # e0 + n * p0 * a: at most the last argument of (*), inside 64 bits (see the module docstring).
    base = positions * (first * num)
    base += excess
    carries = base // den
    prefix = numpy.empty_like(carries)
    for _ in range(_ROUNDS):
        numpy.cumsum(carries, out=prefix)
        prefix -= carries  # P_n: the carries before block n
        prefix *= num
        prefix += base
        prefix //= den
        if numpy.array_equal(prefix, carries):
            provisions = carries + first
            return supply + window * first + int(carries.sum()), provisions
        carries, prefix = prefix, carries
    return None
