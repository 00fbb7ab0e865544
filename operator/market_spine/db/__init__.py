"""PostgreSQL adapter: engine and URL handling, the embedded server, schema, migrations, repositories."""
