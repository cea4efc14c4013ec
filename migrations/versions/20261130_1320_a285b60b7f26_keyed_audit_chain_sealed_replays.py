"""audit chain keyed from here on; stored replays that hold a secret are dropped

The audit chain becomes an HMAC under the audit key, which a migration does not have: events
already chained keep their plain SHA-256 links, and the head row records the first position
linked with the key (`keyed_from_seq`, the next event). Stored Idempotency-Key answers are
sealed from now on; the ones written before that hold a verification code or a webhook signing
secret in the clear and cannot be sealed here, so they are deleted (a retry with such a key is
then a new request). Other stored answers stay as they are and replay as before.

Downgrading drops the marker (the older `audit verify` then fails on keyed links) and the
sealed answers, which the older code cannot read.

Revision ID: a285b60b7f26
Revises: 9e4d2b7c1f08
Create Date: 2026-11-30 13:20:00+00:00
"""

from collections.abc import Callable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "a285b60b7f26"
down_revision: str | None = "9e4d2b7c1f08"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000

idempotency_keys = sa.table(
    "idempotency_keys",
    sa.column("id", sa.Uuid()),
    sa.column("response_body", sa.LargeBinary()),
)


def _holds_secret(body: bytes) -> bool:
    try:
        answer: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(answer, dict):
        return False
    return bool(answer.get("webhook_signing_secret") or answer.get("verification"))


def _delete_where(doomed: Callable[[bytes], bool]) -> None:
    connection = op.get_bind()
    last = None
    while True:
        statement = (
            sa.select(idempotency_keys.c.id, idempotency_keys.c.response_body)
            .where(idempotency_keys.c.response_body.is_not(None))
            .order_by(idempotency_keys.c.id)
            .limit(CHUNK)
        )
        if last is not None:
            statement = statement.where(idempotency_keys.c.id > last)
        rows = connection.execute(statement).all()
        if not rows:
            return
        ids = [row.id for row in rows if doomed(bytes(row.response_body))]
        if ids:
            connection.execute(sa.delete(idempotency_keys).where(idempotency_keys.c.id.in_(ids)))
        last = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("audit_chain_head", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "keyed_from_seq",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                server_default="1",
                nullable=False,
            )
        )
    op.execute("UPDATE audit_chain_head SET keyed_from_seq = seq + 1")
    _delete_where(_holds_secret)


def downgrade() -> None:
    _delete_where(lambda body: not body.startswith(b"{"))
    with op.batch_alter_table("audit_chain_head", schema=None) as batch_op:
        batch_op.drop_column("keyed_from_seq")
