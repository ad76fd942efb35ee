"""The garbage collector's policy (ledger_node/gcpause.py): paused blocks, frozen servers."""

from __future__ import annotations

import gc

from ledger_node.gcpause import freeze_long_lived, gc_paused


def test_gc_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_freeze_long_lived_moves_what_lives_now_out_of_collections() -> None:
    gc.unfreeze()
    survivor = [object()]
    try:
        frozen = freeze_long_lived()
        assert frozen == gc.get_freeze_count() > 0
        assert not any(o is survivor for o in gc.get_objects())  # out of every generation
        later = [object()]
        assert any(o is later for o in gc.get_objects())  # new objects are collected as ever
    finally:
        gc.unfreeze()
    assert any(o is survivor for o in gc.get_objects())
