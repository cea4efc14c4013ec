"""The committed contract matches the code and is fit for partners' tools."""

import json
from pathlib import Path

from openapi_spec_validator import validate

from app.cli import render_openapi

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def test_committed_spec_matches_the_code() -> None:
    assert SPEC_PATH.read_text(encoding="utf-8") == render_openapi(), (
        "openapi/openapi.json is stale: run `.venv/bin/spix-dsr openapi` and commit it"
    )


def test_spec_is_valid_openapi() -> None:
    validate(json.loads(SPEC_PATH.read_text(encoding="utf-8")))


def test_every_operation_is_documented() -> None:
    spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    seen_ids: set[str] = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation.get("operationId"), where
            assert operation["operationId"] not in seen_ids, where
            seen_ids.add(operation["operationId"])
            assert operation.get("tags"), where
            assert operation.get("summary"), where
            if path.startswith("/v1"):
                assert "401" in operation["responses"], where
            for status, response in operation["responses"].items():
                if path.startswith("/drp/") and status not in ("413", "422"):
                    # The Data Rights Protocol's own error shape (or none: a refused setup).
                    assert list(response.get("content", {})) in ([], ["application/json"]), where
                    continue
                if path.startswith("/opendsr/") and status in ("400", "404"):
                    # OpenDSR's refusals take the protocol's error object.
                    assert list(response.get("content", {})) == ["application/json"], where
                elif status.startswith(("4", "5")):
                    assert list(response.get("content", {})) == ["application/problem+json"], where
