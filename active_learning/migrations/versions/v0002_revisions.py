"""Annotation revisions and retractions: updates supersede, deletions retract, nothing is lost.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("annotations") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("retracted_at", _TS, nullable=True))
        batch.add_column(sa.Column("retracted_reason", sa.Text(), nullable=True))
    op.create_table(
        "annotation_revisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(256), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("states", sa.JSON(), nullable=False),
        sa.Column("submitted_at", _TS, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("superseded_at", _TS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_annotation_revisions_external_id", "annotation_revisions", ["external_id"])


def downgrade() -> None:
    op.drop_index("ix_annotation_revisions_external_id", "annotation_revisions")
    op.drop_table("annotation_revisions")
    with op.batch_alter_table("annotations") as batch:
        batch.drop_column("retracted_reason")
        batch.drop_column("retracted_at")
        batch.drop_column("revision")
