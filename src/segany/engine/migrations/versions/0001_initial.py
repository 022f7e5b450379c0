"""The first schema: images, model versions, training rounds, masks, image runs, leases, settings.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STAMP = sa.DateTime(timezone=True)


# long: the whole first schema, one create_table per table
def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("split", sa.String(8), nullable=False),
        sa.Column("added_at", STAMP, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("weights", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("heldout_miou", sa.Float),
        sa.Column("created_at", STAMP, nullable=False),
    )
    op.create_table(
        "training_rounds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("base_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("steps", sa.Integer, nullable=False),
        sa.Column("train_images", sa.Integer, nullable=False),
        sa.Column("train_masks", sa.Integer, nullable=False),
        sa.Column("heldout_images", sa.Integer, nullable=False),
        sa.Column("heldout_miou", sa.Float),
        sa.Column("base_heldout_miou", sa.Float),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("started_at", STAMP, nullable=False),
        sa.Column("finished_at", STAMP),
    )
    op.create_table(
        "masks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False),
        sa.Column("gear", sa.Integer, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("bbox_x", sa.Float, nullable=False),
        sa.Column("bbox_y", sa.Float, nullable=False),
        sa.Column("bbox_w", sa.Float, nullable=False),
        sa.Column("bbox_h", sa.Float, nullable=False),
        sa.Column("area", sa.Integer, nullable=False),
        sa.Column("predicted_iou", sa.Float),
        sa.Column("stability_score", sa.Float),
        sa.Column("point_coords", sa.JSON),
        sa.Column("crop_box", sa.JSON),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("annotator", sa.String(200)),
        sa.Column("clicks", sa.Integer),
        sa.Column("seconds", sa.Float),
        sa.Column("corrects_id", sa.Integer, sa.ForeignKey("masks.id")),
        sa.Column("client_key", sa.String(100), unique=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("decided_at", STAMP),
    )
    op.create_index("ix_masks_image_id", "masks", ["image_id"])
    op.create_table(
        "image_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False),
        sa.Column("gear", sa.Integer, nullable=False),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("annotator", sa.String(200)),
        sa.Column("seconds", sa.Float),
        sa.Column("finished_at", STAMP, nullable=False),
        sa.UniqueConstraint("image_id", "gear", name="uq_image_runs_image_gear"),
    )
    op.create_index("ix_image_runs_image_id", "image_runs", ["image_id"])
    op.create_table(
        "leases",
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), primary_key=True),
        sa.Column("annotator", sa.String(200), nullable=False),
        sa.Column("expires_at", STAMP, nullable=False),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "settings",
        "leases",
        "image_runs",
        "masks",
        "training_rounds",
        "model_versions",
        "images",
    ):
        op.drop_table(table)
