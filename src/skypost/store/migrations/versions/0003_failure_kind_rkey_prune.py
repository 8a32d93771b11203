"""failure kind, one record key per account, pruning

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('failure_kind', sa.String(length=32), nullable=True))
    # workflow state that used to live in the error text
    op.execute("UPDATE deliveries SET status = 'needs_reauth', failure_kind = 'auth', "
               "completed_at = NULL WHERE status = 'failed' AND error LIKE 're-enter the app password%'")
    op.execute("UPDATE deliveries SET failure_kind = 'transient_exhausted' "
               "WHERE status = 'failed' AND error LIKE 'gave up after%'")
    op.execute("UPDATE deliveries SET failure_kind = 'removed' "
               "WHERE status = 'failed' AND failure_kind IS NULL AND error LIKE 'the account @% was removed'")
    op.execute("UPDATE deliveries SET failure_kind = 'permanent' "
               "WHERE status = 'failed' AND failure_kind IS NULL")
    op.create_index('uq_deliveries_account_rkey', 'deliveries', ['account_id', 'rkey'], unique=True)
    op.create_index('ix_jobs_status_updated_at', 'jobs', ['status', 'updated_at'])
    # at most one waiting or running job of each recurring kind, however many workers start
    op.create_index('uq_jobs_recurring', 'jobs', ['kind'], unique=True,
                    sqlite_where=sa.text("kind = 'prune' AND status IN ('todo', 'doing')"),
                    postgresql_where=sa.text("kind = 'prune' AND status IN ('todo', 'doing')"))


def downgrade() -> None:
    op.drop_index('uq_jobs_recurring', table_name='jobs')
    op.drop_index('ix_jobs_status_updated_at', table_name='jobs')
    op.drop_index('uq_deliveries_account_rkey', table_name='deliveries')
    op.execute("UPDATE deliveries SET status = 'failed' WHERE status = 'needs_reauth'")
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('failure_kind')
