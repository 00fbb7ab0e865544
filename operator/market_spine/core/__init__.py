"""The pure core: rules with no I/O.

Everything here imports only the standard library and pydantic, so that the state machine,
backoff, partition keys, week calendar, gap detection and analytics formulas can be tested
exhaustively and reused unchanged by the local worker and the Kubernetes operator.
"""
