"""The vault's catalogue: versions, lineage, gate results, transitions.

Revision ID: registry_0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "registry_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(200), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("status_by", sa.String(256), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_versions"),
        sa.UniqueConstraint("kind", "name", "number", name="uq_registry_versions_kind_name_number"),
    )
    op.create_table(
        "registry_lineage",
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("dataset_version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("version_id", "position", name="pk_registry_lineage"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["registry_versions.id"],
            name="fk_registry_lineage_version_id_registry_versions",
        ),
    )
    op.create_table(
        "registry_gate_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("gate", sa.String(100), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_gate_results"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["registry_versions.id"],
            name="fk_registry_gate_results_version_id_registry_versions",
        ),
    )
    op.create_index("ix_registry_gate_results_version_id", "registry_gate_results", ["version_id"])
    op.create_table(
        "registry_transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("old", sa.String(16), nullable=True),
        sa.Column("new", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("by", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_transitions"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["registry_versions.id"],
            name="fk_registry_transitions_version_id_registry_versions",
        ),
    )
    op.create_index("ix_registry_transitions_version_id", "registry_transitions", ["version_id"])


def downgrade() -> None:
    op.drop_index("ix_registry_transitions_version_id", "registry_transitions")
    op.drop_table("registry_transitions")
    op.drop_index("ix_registry_gate_results_version_id", "registry_gate_results")
    op.drop_table("registry_gate_results")
    op.drop_table("registry_lineage")
    op.drop_table("registry_versions")
