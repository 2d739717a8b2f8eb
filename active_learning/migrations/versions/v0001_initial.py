"""Initial store of record: buildings, rounds, annotations, quarantine, posteriors, decisions.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "buildings",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("n_dates", sa.Integer(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
    )
    op.create_table(
        "annotations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(256), nullable=False, unique=True),
        sa.Column("building_id", sa.String(128), sa.ForeignKey("buildings.id"), nullable=False),
        sa.Column("volunteer_id", sa.String(128), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("states", sa.JSON(), nullable=False),
        sa.Column("submitted_at", _TS, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("round_id", sa.Integer(), sa.ForeignKey("rounds.id"), nullable=True),
    )
    op.create_index("ix_annotations_building_id", "annotations", ["building_id"])
    op.create_index("ix_annotations_volunteer_id", "annotations", ["volunteer_id"])
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(256), nullable=False),
        sa.Column("building_id", sa.String(128), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
    )
    op.create_index("ix_quarantine_external_id", "quarantine", ["external_id"])
    op.create_table(
        "posteriors",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("building_id", sa.String(128), sa.ForeignKey("buildings.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("probs", sa.JSON(), nullable=False),
        sa.Column("map_gap", sa.Integer(), nullable=False),
        sa.Column("interval_start", sa.String(10), nullable=True),
        sa.Column("interval_end", sa.String(10), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("n_reviews", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(256), nullable=True),
        sa.Column("aggregator", sa.String(256), nullable=False),
        sa.Column("round_id", sa.Integer(), sa.ForeignKey("rounds.id"), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("building_id", "version", name="uq_posterior_version"),
    )
    op.create_index("ix_posteriors_building_id", "posteriors", ["building_id"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("building_id", sa.String(128), sa.ForeignKey("buildings.id"), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("map_gap", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("n_reviews", sa.Integer(), nullable=False),
        sa.Column("n_consistent", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), sa.ForeignKey("rounds.id"), nullable=True),
        sa.Column("decided_at", _TS, nullable=False),
    )
    op.create_index("ix_decisions_building_id", "decisions", ["building_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_decisions_building_id", "decisions"),
        ("ix_posteriors_building_id", "posteriors"),
        ("ix_quarantine_external_id", "quarantine"),
        ("ix_annotations_volunteer_id", "annotations"),
        ("ix_annotations_building_id", "annotations"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("decisions", "posteriors", "quarantine", "annotations", "rounds", "buildings"):
        op.drop_table(table)
