"""Alembic environment: runs on the connection handed over by :func:`ivcloud.store.db.migrate`."""

from alembic import context

import ivcloud.store.schema_app  # noqa: F401  (registers the app-side tables)
import ivcloud.store.schema_cloud as _cloud_tables  # noqa: F401  (registers cloud storage)
import ivcloud.store.schema_messages as _messages  # noqa: F401  (message centre)
import ivcloud.store.schema_user_extras as _user_extras  # noqa: F401  (user extras)
from ivcloud.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
