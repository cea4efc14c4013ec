"""What a caller may see: decided once from its key, applied to every read as SQL.

A key sees everything (admin, auditor), one system's rows (system), one controller's rows
(controller), or nothing. Visibility fails closed: a role this code does not know, or a bound
key without its binding, sees nothing, never everything. Which operations a role may call at
all is another question, answered by the role checks on each route (403)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, false, true

Kind = Literal["everything", "system", "controller", "nothing"]
# The rows of one table that a key bound to this system key or controller id sees.
Rows = Callable[[Any], ColumnElement[bool]]


def every_row(_bound: object) -> ColumnElement[bool]:
    """For tables that a kind of bound key sees whole (the registry, the platform's rules)."""
    return true()


@dataclass(frozen=True, slots=True)
class Visibility:
    kind: Kind
    system_key: str | None = None
    controller_id: uuid.UUID | None = None

    @classmethod
    def of(
        cls, role: str, *, system_key: str | None, controller_id: uuid.UUID | None
    ) -> Visibility:
        if role in ("admin", "auditor"):
            return EVERYTHING
        if role == "system" and system_key is not None:
            return cls("system", system_key=system_key)
        if role == "controller" and controller_id is not None:
            return cls("controller", controller_id=controller_id)
        return NOTHING

    @property
    def everything(self) -> bool:
        return self.kind == "everything"

    @property
    def nothing(self) -> bool:
        return self.kind == "nothing"

    def where(
        self, *, system: Rows | None = None, controller: Rows | None = None
    ) -> ColumnElement[bool]:
        """The rows of one table this caller sees, as a WHERE clause. `system` and
        `controller` give the rows a system key / a controller key sees from its binding;
        a kind of key the table names nothing for sees none of it."""
        if self.kind == "everything":
            return true()
        if self.kind == "system" and system is not None:
            return system(self.system_key)
        if self.kind == "controller" and controller is not None:
            return controller(self.controller_id)
        return false()

    def shared(self) -> ColumnElement[bool]:
        """Rows every known key reads (the registry): none for an unknown role."""
        return self.where(system=every_row, controller=every_row)

    def names_other_controller(self, controller_id: uuid.UUID | None) -> bool:
        """A filter naming a controller this key may not see: the answer is empty."""
        return (
            controller_id is not None
            and self.kind == "controller"
            and controller_id != self.controller_id
        )


EVERYTHING = Visibility("everything")
NOTHING = Visibility("nothing")


# The OpenAPI description of every list filter that names a controller: one answer for all.
CONTROLLER_FILTER = (
    "A controller key naming another controller gets an empty page (200), the same answer "
    "as for a controller that holds nothing: a filter never tells one customer what another "
    "holds."
)
