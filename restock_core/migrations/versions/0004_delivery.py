"""provider requests: stored membership and key of each stable provider request

Revision ID: 0004_delivery
Revises: 0003_faces
Create Date: 2026-12-02 15:20:00
"""

import sqlalchemy as sa
from alembic import op

import restock_core.db

revision = "0004_delivery"
down_revision = "0003_faces"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "provider_requests",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("request_key", sa.String(length=100), nullable=False),
        sa.Column("variant_info", sa.JSON(), nullable=False),
        sa.Column("created_at", restock_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_requests")),
        sa.UniqueConstraint("request_key", name=op.f("uq_provider_requests_request_key")),
    )
    with op.batch_alter_table("provider_requests", schema=None) as batch_op:
        batch_op.create_index("ix_provider_requests_created", ["created_at"], unique=False)
    op.create_table(
        "provider_request_members",
        sa.Column("delivery_id", BigId, nullable=False),
        sa.Column("request_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_provider_request_members_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["provider_requests.id"],
            name=op.f("fk_provider_request_members_request_id_provider_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_provider_request_members")),
    )
    with op.batch_alter_table("provider_request_members", schema=None) as batch_op:
        batch_op.create_index(
            "ix_provider_request_members_request", ["request_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("provider_request_members", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_request_members_request")
    op.drop_table("provider_request_members")
    with op.batch_alter_table("provider_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_requests_created")
    op.drop_table("provider_requests")
