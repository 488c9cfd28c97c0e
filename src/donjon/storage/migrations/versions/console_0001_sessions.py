"""Console sessions, shared by every worker and replica of ``donjon server``.

Revision ID: console_0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "console_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("key", sa.String(64), nullable=False),  # SHA-256 of the session id
        sa.Column("sealed", sa.LargeBinary(), nullable=False),  # the credential, sealed
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("viewed", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_console_sessions"),
    )
    op.create_index("ix_console_sessions_expires", "console_sessions", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_expires", table_name="console_sessions")
    op.drop_table("console_sessions")
