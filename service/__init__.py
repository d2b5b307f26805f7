"""The service layer: the experiment engine, the Python client, the CLI (REST API to come)."""
