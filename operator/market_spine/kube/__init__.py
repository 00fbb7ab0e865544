"""Adapter to Kubernetes: API access (``client``), Job manifests (``jobs``), Events (``events``) and
the SpineWorkItem work queue used by ``spine work`` on the kubernetes backend (``workitems``).

Imports the pure core and the database layer only; the operator (``market_spine.operator``) and the
CLI call into it.
"""
