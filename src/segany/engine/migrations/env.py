"""Alembic's entry point: runs the versioned migrations on the connection segany passes in."""

from alembic import context

from segany.engine.schema import Base

connection = context.config.attributes["connection"]
# Batch mode lets later migrations alter SQLite tables (which have no ALTER COLUMN).
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
