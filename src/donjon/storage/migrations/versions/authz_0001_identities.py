"""Identities: accounts, groups, memberships and API token hashes.

Revision ID: authz_0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "authz_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_accounts",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(256)),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identity_accounts"),
    )
    op.create_table(
        "identity_groups",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identity_groups"),
    )
    op.create_table(
        "identity_memberships",
        sa.Column("group_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "account_id", name="pk_identity_memberships"),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["identity_groups.id"],
            name="fk_identity_memberships_group_id_identity_groups",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["identity_accounts.id"],
            name="fk_identity_memberships_account_id_identity_accounts",
        ),
    )
    op.create_table(
        "identity_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_identity_tokens"),
        sa.UniqueConstraint("hash", name="uq_identity_tokens_hash"),
        sa.ForeignKeyConstraint(
            ["owner"], ["identity_accounts.id"], name="fk_identity_tokens_owner_identity_accounts"
        ),
    )


def downgrade() -> None:
    op.drop_table("identity_tokens")
    op.drop_table("identity_memberships")
    op.drop_table("identity_groups")
    op.drop_table("identity_accounts")
