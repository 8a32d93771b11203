"""Alembic environment: runs on the connection skypost hands over."""

from alembic import context

from skypost.store.schema import metadata

connection = context.config.attributes.get("connection")


def run() -> None:
    if connection is None:
        import sqlalchemy as sa

        engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            _migrate(conn)
        engine.dispose()
    else:
        _migrate(connection)


def _migrate(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()


run()
