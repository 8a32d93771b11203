"""the backfeed: per-account poll state, one backfeed job per account, reactions found by URI

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# one waiting or running backfeed job per account (the id is in the JSON args)
_JOB_INDEX = {
    "sqlite": "CREATE UNIQUE INDEX uq_jobs_backfeed ON jobs (json_extract(args, '$.account_id')) "
              "WHERE kind = 'backfeed' AND status IN ('todo', 'doing')",
    "postgresql": "CREATE UNIQUE INDEX uq_jobs_backfeed ON jobs ((args->>'account_id')) "
                  "WHERE kind = 'backfeed' AND status IN ('todo', 'doing')",
}


def upgrade() -> None:
    op.create_table('backfeed_state',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('notifications_until', sa.Float(), nullable=True),
    sa.Column('likes_until', sa.Float(), nullable=True),
    sa.Column('reposts_until', sa.Float(), nullable=True),
    sa.Column('posts_until', sa.Float(), nullable=True),
    sa.Column('polls', sa.Integer(), nullable=False),
    sa.Column('last_poll_at', sa.Float(), nullable=True),
    sa.Column('full_reconciled_at', sa.Float(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                            name=op.f('fk_backfeed_state_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_backfeed_state'))
    )
    op.create_index('ix_deliveries_uri', 'deliveries', ['uri'], unique=False)
    op.create_index('ix_interactions_delivery_kind', 'interactions', ['delivery_id', 'kind'], unique=False)
    op.execute(_JOB_INDEX[op.get_bind().dialect.name])


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS uq_jobs_backfeed")
    op.drop_index('ix_interactions_delivery_kind', table_name='interactions')
    op.drop_index('ix_deliveries_uri', table_name='deliveries')
    op.drop_table('backfeed_state')
