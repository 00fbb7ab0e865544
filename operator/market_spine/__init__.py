"""Market Spine: a Kubernetes operator and pipeline toolkit for recurring market-data pipelines.

Layers, outermost first (enforced by the import-linter contracts in ``pyproject.toml``):

* ``cli`` and ``operator``: entry points (Typer commands, Kopf handlers); thin.
* ``services``: what an entry point asks for (enqueue, run a worker, doctor, query).
* ``pipelines``: the FINRA OTC stages and their registry.
* ``db``, ``finra``, ``kube``: adapters to PostgreSQL, FINRA's files and API, and Kubernetes.
* ``core``: pure rules (state machine, backoff, partitions, calendar, gaps, analytics).
"""

__version__ = "0.1.0"
