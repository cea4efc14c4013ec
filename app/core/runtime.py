"""The served process's garbage collector, set once the app is built.

CPython collects its youngest generation every 700 net new container objects. A 1000-record
batch allocates tens of thousands (bodies, models, hashes, rows) that all die with the
request, yet ran ~60 young collections, promoted the survivors of each, and so triggered
full collections that walked every object of the process (modules, routes, schemas, SQL
metadata: ~190,000), a quarter of the batch's CPU. Reference counting frees nearly all of it:
the collector is only for cycles, and needs neither to run that often nor to look at objects
that live as long as the process."""

from __future__ import annotations

import gc

# Net new container objects between young collections: a batch's worth, so its objects are
# freed by reference counting before a collection would promote them.
YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Move everything alive now (the built app) out of the collector's sight, and collect
    the young generation less often. For the served process, after the app is built."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
