"""The ledger's registered keys, and guards on every ledger table.

``audit_keys`` holds the public half of every checkpoint key (its id is the
SHA-256 of the key). Triggers refuse ``TRUNCATE`` on every ledger table
(PostgreSQL: the row triggers of audit_0001 never fire on it), ``UPDATE``
and ``DELETE`` on the checkpoints and keys, and any change to the head row
but moving it forward to an entry that is stored with that hash.

Revision ID: audit_0002
Revises: audit_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "audit_0002"
down_revision = "audit_0001"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_checkpoints", "audit_keys")
ALL_TABLES = ("audit_ledger", "audit_ledger_head", *APPEND_ONLY)

POSTGRES_REFUSE = """
CREATE OR REPLACE FUNCTION donjon_audit_refuse() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END;
$$ LANGUAGE plpgsql
"""

POSTGRES_HEAD_FORWARD = """
CREATE OR REPLACE FUNCTION donjon_audit_head_forward() RETURNS trigger AS $$
BEGIN
  IF NEW.id <> OLD.id OR NEW.seq < OLD.seq OR NOT EXISTS (
    SELECT 1 FROM audit_ledger WHERE seq = NEW.seq AND hash = NEW.hash
  ) THEN
    RAISE EXCEPTION 'audit_ledger_head only moves forward, to a stored entry';
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""

SQLITE_HEAD_FORWARD = """
CREATE TRIGGER audit_ledger_head_forward BEFORE UPDATE ON audit_ledger_head
WHEN NEW.id IS NOT OLD.id OR NEW.seq < OLD.seq OR NOT EXISTS (
  SELECT 1 FROM audit_ledger WHERE seq = NEW.seq AND hash = NEW.hash
)
BEGIN SELECT RAISE(ABORT, 'audit_ledger_head only moves forward, to a stored entry'); END
"""


def upgrade() -> None:
    op.create_table(
        "audit_keys",
        sa.Column("key_id", sa.String(128), autoincrement=False, nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("registered", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_audit_keys"),
    )
    if op.get_context().dialect.name == "postgresql":
        _postgres_guards()
    else:
        _sqlite_guards()


def _postgres_guards() -> None:
    op.execute(POSTGRES_REFUSE)
    op.execute(POSTGRES_HEAD_FORWARD)
    for table in ALL_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION donjon_audit_refuse()"
        )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION donjon_audit_refuse()"
        )
    op.execute(
        "CREATE TRIGGER audit_ledger_head_no_insert_delete BEFORE INSERT OR DELETE "
        "ON audit_ledger_head FOR EACH ROW EXECUTE FUNCTION donjon_audit_refuse()"
    )
    op.execute(
        "CREATE TRIGGER audit_ledger_head_forward BEFORE UPDATE ON audit_ledger_head "
        "FOR EACH ROW EXECUTE FUNCTION donjon_audit_head_forward()"
    )


def _sqlite_guards() -> None:
    # SQLite has no TRUNCATE; "DELETE FROM t" fires the row triggers (no truncate
    # optimisation on a table that has triggers).
    refusals = [(table, verb) for table in APPEND_ONLY for verb in ("UPDATE", "DELETE")]
    refusals += [("audit_ledger_head", "INSERT"), ("audit_ledger_head", "DELETE")]
    for table, verb in refusals:
        op.execute(
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
        )
    op.execute(SQLITE_HEAD_FORWARD)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in ALL_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP TRIGGER IF EXISTS audit_ledger_head_no_insert_delete ON audit_ledger_head")
        op.execute("DROP TRIGGER IF EXISTS audit_ledger_head_forward ON audit_ledger_head")
        op.execute("DROP FUNCTION IF EXISTS donjon_audit_head_forward()")
        op.execute("DROP FUNCTION IF EXISTS donjon_audit_refuse()")
    else:
        for table in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        for verb in ("insert", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_ledger_head_no_{verb}")
        op.execute("DROP TRIGGER IF EXISTS audit_ledger_head_forward")
    op.drop_table("audit_keys")
