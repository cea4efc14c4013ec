"""The newest migration this code ships, found without loading Alembic: /readyz compares it
with the database's alembic_version on every probe."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import app

_PACKAGED = Path(app.__file__).resolve().parent / "_migrations"
_SOURCE = Path(app.__file__).resolve().parent.parent / "migrations"


def migrations_dir() -> Path:
    return _PACKAGED if _PACKAGED.is_dir() else _SOURCE


def _revision_of(path: Path) -> tuple[str, set[str]] | None:
    """(revision, down revisions) from a revision file's module-level assignments."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            found[target.id] = ast.literal_eval(value)
    revision, down = found.get("revision"), found.get("down_revision")
    if not isinstance(revision, str):
        return None
    downs = {down} if isinstance(down, str) else set(down) if isinstance(down, tuple) else set()
    return revision, downs


@cache
def _graph() -> tuple[frozenset[str], frozenset[str]]:
    """(every revision, every revision another one builds on)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        parsed = _revision_of(path)
        if parsed is not None:
            revisions.add(parsed[0])
            parents |= parsed[1]
    return frozenset(revisions), frozenset(parents)


def head_revisions() -> frozenset[str]:
    """The revisions no other revision builds on (one, unless a merge is missing)."""
    revisions, parents = _graph()
    return revisions - parents


def known_revisions() -> frozenset[str]:
    """Every revision this code ships."""
    return _graph()[0]
