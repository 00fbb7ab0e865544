"""Services: what the CLI and the operator ask for, built on the pipelines, adapters and core."""
