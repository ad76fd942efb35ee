"""The unlinkability audit's scanner, for ``tests/test_unlinkability.py``.

The functions live in :mod:`ledger_node.demo.linkscan` (the demo's auditor check uses them too);
this module re-exports them under the same names.
"""

from __future__ import annotations

from ledger_node.demo.linkscan import (
    MIN_HEX_RUN,
    WINDOW,
    Haystack,
    Hit,
    Needle,
    amount_needles,
    chance_hits,
    fixed_positions,
    hex_decoded,
    key_needles,
    shared_runs,
    text_needles,
    time_needles,
    value_segments,
    windows,
    yuan,
)

__all__ = [
    "MIN_HEX_RUN",
    "WINDOW",
    "Haystack",
    "Hit",
    "Needle",
    "amount_needles",
    "chance_hits",
    "fixed_positions",
    "hex_decoded",
    "key_needles",
    "shared_runs",
    "text_needles",
    "time_needles",
    "value_segments",
    "windows",
    "yuan",
]
