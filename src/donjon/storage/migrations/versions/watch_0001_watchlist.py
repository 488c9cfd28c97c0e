"""The watch list: watched model versions and their last checks and probes.

Revision ID: watch_0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "watch_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watch_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(2000), nullable=False),
        sa.Column("fingerprint", sa.String(140), nullable=False),  # the attachment's digest
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("enrolled_at", sa.String(64), nullable=False),  # ISO time, as written
        sa.PrimaryKeyConstraint("id", name="pk_watch_entries"),
        sa.UniqueConstraint("model", "version", name="uq_watch_entries_model"),
    )
    op.create_table(
        "watch_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),  # checks | probes
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_watch_results"),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["watch_entries.id"],
            name="fk_watch_results_entry_id_watch_entries",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_watch_results_entry_id", "watch_results", ["entry_id", "kind", "id"])


def downgrade() -> None:
    op.drop_index("ix_watch_results_entry_id", table_name="watch_results")
    op.drop_table("watch_results")
    op.drop_table("watch_entries")
