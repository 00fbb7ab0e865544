"""The Kubernetes operator (``spine operator run``): reconciles SpineWorkItems into Jobs.

Entry point layer, like the CLI. ``runner`` starts it, ``handlers`` are the (thin) Kopf handlers,
``reconciler`` carries out the pure planner's decisions (``core.reconcile``), ``queueing`` holds
the work queue and the concurrency limits, ``dbsync`` mirrors work items into PostgreSQL and
``metrics`` exposes them to Prometheus.
"""
