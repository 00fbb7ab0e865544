"""FINRA adapters: the weekly file reader, the Query API client and the sample-file generator.

Called by ``pipelines.ingest`` (files and API), by the demo and by tests (samples). These modules
do I/O (files, HTTP) and may import the pure core, never pipelines, services or the CLI.
"""
