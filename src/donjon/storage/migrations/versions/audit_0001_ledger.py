"""The audit ledger: an append-only hash chain, its head (the lock row) and checkpoints.

Revision ID: audit_0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "audit_0001"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS = "0" * 64

POSTGRES_GUARD = """
CREATE OR REPLACE FUNCTION donjon_audit_ledger_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_ledger is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "audit_ledger",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_ledger"),
    )
    head = op.create_table(
        "audit_ledger_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_ledger_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("ledger", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_checkpoints"),
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute(POSTGRES_GUARD)
        op.execute(
            "CREATE TRIGGER audit_ledger_append_only BEFORE UPDATE OR DELETE ON audit_ledger "
            "FOR EACH ROW EXECUTE FUNCTION donjon_audit_ledger_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_ledger_no_{verb.lower()} BEFORE {verb} ON audit_ledger "
                "BEGIN SELECT RAISE(ABORT, 'audit_ledger is append-only'); END"
            )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_ledger_append_only ON audit_ledger")
        op.execute("DROP FUNCTION IF EXISTS donjon_audit_ledger_append_only()")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_ledger_head")
    op.drop_table("audit_ledger")
