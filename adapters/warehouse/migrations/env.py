"""Alembic environment.

Runs on a connection handed over by ``adapters.warehouse.engine.migrate``, or, from the command line (``alembic -c alembic.ini upgrade head``), on TICKETLENS_WAREHOUSE_URL via the settings object."""

from alembic import context
from sqlalchemy import engine_from_config, pool, text

from ticketlens.adapters.warehouse.schema import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from ticketlens.adapters.settings import load_settings

    return load_settings().warehouse_url


def _serialize(connection) -> None:
    """Take a database lock for the rest of this migration transaction, before Alembic reads or creates its
    version table: several workers starting at once on an empty warehouse would otherwise all try to create
    the same tables. The next one waits, then finds the schema current and does nothing.

    PostgreSQL: a transaction-scoped advisory lock per schema (DDL is transactional, so the whole upgrade
    commits at once). SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock now (the driver would
    otherwise run DDL outside any transaction); waiters queue on ``busy_timeout``.
    """
    name = connection.dialect.name
    if name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('ticketlens-migrate:' || current_schema()))"))
    elif name == "sqlite" and not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            _serialize(connection)
            context.run_migrations()
        return
    section = dict(config.get_section(config.config_ini_section, {}))
    section["sqlalchemy.url"] = _url()
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            _serialize(connection)
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
