"""Alembic environment: runs on the connection skypost hands over."""

from alembic import context

from skypost.store.schema import metadata

connection = context.config.attributes.get("connection")


def run() -> None:
    if connection is None:
        from skypost.store.db import create_engine

        engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
        with engine.begin() as conn:
            _migrate(conn)
        engine.dispose()
    else:
        _migrate(connection)


def _migrate(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()


run()
