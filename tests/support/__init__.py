"""What the tests share: paths of the bundled examples, helpers that run jobs as users and launchers do, and the
real servers the tests start (PostgreSQL and MariaDB, the BigQuery, GCS and Pub/Sub emulators). `plugin` is the
pytest plugin with the session fixtures and markers; `tests/conftest.py` registers it."""
