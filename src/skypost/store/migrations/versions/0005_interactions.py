"""the conversation: replies, quotes, likes and reposts that syndicated posts gather

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('interactions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('uri', sa.String(length=2048), nullable=False),
    sa.Column('cid', sa.String(length=256), nullable=True),
    sa.Column('post_seq', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('account', sa.String(length=253), nullable=False),
    sa.Column('subject_uri', sa.String(length=2048), nullable=False),
    sa.Column('author_did', sa.String(length=2048), nullable=False),
    sa.Column('author_handle', sa.String(length=253), nullable=True),
    sa.Column('author_display_name', sa.Text(), nullable=True),
    sa.Column('author_avatar', sa.String(length=2048), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('parent_uri', sa.String(length=2048), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=True),
    sa.Column('indexed_at', sa.Float(), nullable=False),
    sa.Column('removed_at', sa.Float(), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['post_seq'], ['posts.seq'], name=op.f('fk_interactions_post_seq_posts'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'],
                            name=op.f('fk_interactions_delivery_id_deliveries'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_interactions')),
    sa.UniqueConstraint('uri', name=op.f('uq_interactions_uri'))
    )
    op.create_index('ix_interactions_post_seq_kind', 'interactions', ['post_seq', 'kind'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_interactions_post_seq_kind', table_name='interactions')
    op.drop_table('interactions')
