"""The load model (tests/benchmarks/load_model.py) in `make bench`, small unless
SPIX_DSR_LOAD_RECORDS / SPIX_DSR_LOAD_REQUESTS say otherwise; `make load` runs it at
1,000,000 records and 1,000 requests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.benchmarks import load_model
from tests.databases import POSTGRES_URL

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.skipif(not POSTGRES_URL, reason="the load model runs on PostgreSQL"),
]


async def test_every_request_completes_under_load(tmp_path: Path) -> None:
    records = int(os.environ.get("SPIX_DSR_LOAD_RECORDS", "20000"))
    requests = int(os.environ.get("SPIX_DSR_LOAD_REQUESTS", "100"))
    filers = int(os.environ.get("SPIX_DSR_LOAD_FILERS", "4"))
    figures = await load_model.run(records, requests, filers, tmp_path)
    assert figures["statuses"] == {"completed": requests}
