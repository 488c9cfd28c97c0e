"""Failed authentications per source address, shared by every worker and replica.

Revision ID: limits_0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "limits_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_failure_windows",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("opened", sa.Float(), nullable=False),  # Unix time the window opened
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_auth_failure_windows"),
    )
    op.create_index("ix_auth_failure_windows_opened", "auth_failure_windows", ["opened"])


def downgrade() -> None:
    op.drop_index("ix_auth_failure_windows_opened", table_name="auth_failure_windows")
    op.drop_table("auth_failure_windows")
