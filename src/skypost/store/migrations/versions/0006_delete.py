"""delete and repost: a delivery's intent, post generations, a hook's unpublish setting

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('posts') as batch:
        batch.add_column(sa.Column('delete_requested_at', sa.Float(), nullable=True))
        batch.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default=sa.text('0')))
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('intent', sa.String(length=16), nullable=False,
                                   server_default=sa.text("'publish'")))
        batch.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default=sa.text('0')))
        # a repost gives the same account a new delivery (and record key) for the same post
        batch.drop_constraint('uq_deliveries_post_account', type_='unique')
        batch.create_unique_constraint('uq_deliveries_post_account', ['post_seq', 'account_id', 'generation'])
    with op.batch_alter_table('hooks') as batch:
        batch.add_column(sa.Column('on_unpublish', sa.String(length=16), nullable=False,
                                   server_default=sa.text("'keep'")))


def downgrade() -> None:
    with op.batch_alter_table('hooks') as batch:
        batch.drop_column('on_unpublish')
    op.execute("DELETE FROM deliveries WHERE generation <> (SELECT generation FROM posts "
               "WHERE posts.seq = deliveries.post_seq)")
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_constraint('uq_deliveries_post_account', type_='unique')
        batch.create_unique_constraint('uq_deliveries_post_account', ['post_seq', 'account_id'])
        batch.drop_column('generation')
        batch.drop_column('intent')
    with op.batch_alter_table('posts') as batch:
        batch.drop_column('generation')
        batch.drop_column('delete_requested_at')
