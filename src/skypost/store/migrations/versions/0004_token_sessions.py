"""dashboard sessions kept server side (they die at logout and with their token)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('web_sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('token_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['token_id'], ['tokens.id'], name=op.f('fk_web_sessions_token_id_tokens'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id_hash', name=op.f('pk_web_sessions'))
    )
    op.create_index(op.f('ix_web_sessions_token_id'), 'web_sessions', ['token_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_web_sessions_token_id'), table_name='web_sessions')
    op.drop_table('web_sessions')
