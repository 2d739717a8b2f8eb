"""Campaigns: rounds with stages, review requests, sync cursors in the store, the campaign lock, audit sets,
model events; annotation comments; decisions keep every review's interval; content hashes without the time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("annotations") as batch:
        batch.add_column(sa.Column("comment", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("campaign", sa.String(128), nullable=True))
        batch.add_column(sa.Column("stage", sa.String(32), nullable=True))
        batch.add_column(sa.Column("summary", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("model_version", sa.String(256), nullable=True))
        batch.create_index("ix_rounds_campaign", ["campaign"])
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("reviews", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("model_version", sa.String(256), nullable=True))
    op.create_table(
        "sync_cursors",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "campaigns",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("labeler", sa.String(512), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "review_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(128), nullable=False),
        sa.Column("request_key", sa.String(256), nullable=False),
        sa.Column("building_id", sa.String(128), sa.ForeignKey("buildings.id"), nullable=False),
        sa.Column("round_id", sa.Integer(), sa.ForeignKey("rounds.id"), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("acquisition", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("task_ref", sa.String(256), nullable=True),
        sa.Column("answer_external_id", sa.String(256), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("pushed_at", _TS, nullable=True),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=False, server_default=""),
        sa.UniqueConstraint("campaign", "request_key", name="uq_review_request_key"),
    )
    op.create_index("ix_review_requests_campaign", "review_requests", ["campaign"])
    op.create_index("ix_review_requests_building_id", "review_requests", ["building_id"])
    op.create_index("ix_review_requests_status", "review_requests", ["status"])
    op.create_table(
        "campaign_locks",
        sa.Column("campaign", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("acquired_at", _TS, nullable=False),
        sa.Column("heartbeat_at", _TS, nullable=False),
    )
    op.create_table(
        "audit_buildings",
        sa.Column("campaign", sa.String(128), primary_key=True),
        sa.Column("purpose", sa.String(32), primary_key=True),
        sa.Column("building_id", sa.String(128), sa.ForeignKey("buildings.id"), primary_key=True),
        sa.Column("round_id", sa.Integer(), sa.ForeignKey("rounds.id"), nullable=True),
        sa.Column("added_at", _TS, nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(128), nullable=False),
        sa.Column("round_id", sa.Integer(), sa.ForeignKey("rounds.id"), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(256), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_model_events_campaign", "model_events", ["campaign"])
    _rehash_annotations()


def _rehash_annotations() -> None:
    """Content hashes no longer include the submission time (revisions are keyed on content)."""
    bind = op.get_bind()
    table = sa.table(
        "annotations",
        sa.column("id", sa.Integer()),
        sa.column("building_id", sa.String()),
        sa.column("volunteer_id", sa.String()),
        sa.column("source", sa.String()),
        sa.column("states", sa.JSON()),
        sa.column("comment", sa.Text()),
        sa.column("content_hash", sa.String()),
    )
    rows = bind.execute(
        sa.select(table.c.id, table.c.building_id, table.c.volunteer_id, table.c.source, table.c.states)
    ).all()
    for row in rows:
        body = json.dumps([row.building_id, row.volunteer_id, row.source, list(row.states), ""])
        digest = hashlib.sha256(body.encode()).hexdigest()
        bind.execute(sa.update(table).where(table.c.id == row.id).values(content_hash=digest))


def downgrade() -> None:
    op.drop_index("ix_model_events_campaign", "model_events")
    op.drop_table("model_events")
    op.drop_table("audit_buildings")
    op.drop_table("campaign_locks")
    for index in (
        "ix_review_requests_status",
        "ix_review_requests_building_id",
        "ix_review_requests_campaign",
    ):
        op.drop_index(index, "review_requests")
    op.drop_table("review_requests")
    op.drop_table("campaigns")
    op.drop_table("sync_cursors")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("model_version")
        batch.drop_column("reviews")
    with op.batch_alter_table("rounds") as batch:
        batch.drop_index("ix_rounds_campaign")
        batch.drop_column("model_version")
        batch.drop_column("summary")
        batch.drop_column("stage")
        batch.drop_column("campaign")
    with op.batch_alter_table("annotations") as batch:
        batch.drop_column("comment")
