"""Alembic migrations of the database schema; run through :mod:`mailintake.schema`."""
