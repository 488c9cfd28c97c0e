"""The vault's referrers: signed documents attached to a model version.

Revision ID: registry_0002
Revises: registry_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "registry_0002"
down_revision = "registry_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_attachments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(200), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_attachments"),
        sa.UniqueConstraint("version_id", "digest", name="uq_registry_attachments_version_id"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["registry_versions.id"],
            name="fk_registry_attachments_version_id_registry_versions",
        ),
    )
    op.create_index("ix_registry_attachments_version_id", "registry_attachments", ["version_id"])


def downgrade() -> None:
    op.drop_index("ix_registry_attachments_version_id", "registry_attachments")
    op.drop_table("registry_attachments")
