"""The served process's garbage collector (app/core/runtime.py)."""

from __future__ import annotations

import gc

from app.core.runtime import YOUNG_THRESHOLD, tune_garbage_collector


def test_the_built_app_is_frozen_and_young_objects_are_collected_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
        # Cycles are still collected.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
