"""Persistence: SQLAlchemy 2 async schema, repositories, Alembic migrations, object storage."""
