"""replies from the site (posts.kind), who may reply (threadgate / postgate)

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('accounts', sa.Column('replies', sa.String(length=64), nullable=True))
    op.add_column('accounts', sa.Column('quotes', sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column('posts', sa.Column('kind', sa.String(length=16), nullable=False, server_default='post'))
    op.add_column('posts', sa.Column('parent_seq', sa.Integer(), nullable=True))
    op.add_column('posts', sa.Column('reply_id', sa.String(length=255), nullable=True))
    op.add_column('posts', sa.Column('reply_parent_uri', sa.String(length=2048), nullable=True))
    op.add_column('posts', sa.Column('reply_parent_cid', sa.String(length=256), nullable=True))
    op.create_index('uq_posts_parent_reply', 'posts', ['parent_seq', 'reply_id'], unique=True)
    op.add_column('deliveries', sa.Column('threadgate', sa.String(length=64), nullable=True))
    op.add_column('deliveries', sa.Column('postgate', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_index('uq_posts_parent_reply', table_name='posts')
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('postgate')
        batch.drop_column('threadgate')
    with op.batch_alter_table('posts') as batch:
        for column in ('reply_parent_cid', 'reply_parent_uri', 'reply_id', 'parent_seq', 'kind'):
            batch.drop_column(column)
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('quotes')
        batch.drop_column('replies')
