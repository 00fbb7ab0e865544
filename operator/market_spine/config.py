"""Runtime settings, read from ``SPINE_*`` environment variables (pydantic-settings).

Called by the CLI, the worker and the operator at start-up. Secrets (the database URL with its
password) come only from the environment, which in a cluster is filled from a Kubernetes Secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from market_spine.errors import UsageError


class Backend(StrEnum):
    LOCAL = "local"  # the PostgreSQL-backed queue and `spine worker`
    KUBERNETES = "kubernetes"  # SpineWorkItem objects reconciled by the operator


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPINE_", extra="ignore")

    # --- database -------------------------------------------------------------------------
    database_url: str | None = Field(
        None, description="Any PostgreSQL URL; unset means an embedded server in data_dir."
    )
    data_dir: Path | None = Field(None, description="Where the embedded PostgreSQL keeps its data.")
    db_connect_timeout: int = Field(10, ge=1, description="Seconds to wait for PostgreSQL to answer.")

    # --- work queue -----------------------------------------------------------------------
    backend: Backend = Backend.LOCAL
    namespace: str = Field("default", description="Namespace of SpineWorkItems (kubernetes backend).")
    kubeconfig: Path | None = Field(None, description="Kubeconfig for the kubernetes backend; in-cluster if unset.")
    kube_context: str | None = Field(None, description="Context of the kubeconfig to use; its current one if unset.")
    worker_lease_seconds: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="Local worker: a claim's lease; the heartbeat renews it every third of it, and an attempt "
        "whose lease ran out (its worker died or lost the database) is lost and retried.",
    )
    worker_grace_seconds: float = Field(
        30.0, ge=0, le=3600, description="Local worker: on SIGTERM, how long running attempts may still finish."
    )

    # --- FINRA ----------------------------------------------------------------------------
    finra_api_url: str = Field("https://api.finra.org", description="Base URL of FINRA's Query API or a mirror.")
    finra_api_client_id: str | None = None
    finra_api_client_secret: str | None = None
    finra_api_rate_per_second: float = Field(5.0, gt=0)
    finra_api_retries: int = Field(3, ge=1, description="Attempts per API request before giving up.")
    finra_api_backoff_seconds: float = Field(1.0, ge=0, description="First wait between API retries; doubles.")
    publication_grace_days: int = Field(
        1,
        ge=0,
        le=60,
        description="Days after FINRA first publishes a week before the doctor expects the platform to hold it.",
    )
    download_timeout_seconds: float = Field(
        60.0, gt=0, description="Seconds a download (--file URL, FINRA's API) may wait for its next byte."
    )
    download_deadline_seconds: float = Field(
        900.0,
        gt=0,
        description="Seconds a whole download (a --file URL; all of a week from FINRA's API) may take, "
        "however slowly its bytes still come.",
    )
    landing_dir: Path | None = Field(
        None, description="Folder of FINRA weekly files; the doctor points ingest remediations at files here."
    )

    # --- operator -------------------------------------------------------------------------
    pipeline_image: str = Field("ghcr.io/market-spine/market-spine:0.1.0", description="Image of pipeline Jobs.")
    database_secret: str = Field("market-spine-db", description="Secret whose `url` key Jobs read.")
    database_secret_key: str = Field("url")
    job_service_account: str | None = None
    job_ttl_seconds: int = Field(86_400, ge=0)
    job_start_timeout_seconds: int = Field(600, ge=1)
    default_active_deadline_seconds: int = Field(
        3600, ge=1, description="Per-attempt deadline when a work item sets none (a Job's, or a local attempt's)."
    )
    max_running: int = Field(10, ge=1, description="Global limit of running Jobs.")
    max_running_per_pipeline: int = Field(5, ge=1)
    resync_interval_seconds: float = Field(300.0, gt=0)
    gap_check_weeks: int = Field(12, ge=1, description="Weeks the operator's periodic gap check covers.")
    gap_check_interval_seconds: float = Field(
        900.0, gt=0, description="How often the operator refreshes market_spine_partition_gaps."
    )
    metrics_port: int = Field(9102, ge=1, le=65535)
    health_port: int = Field(8080, ge=1, le=65535)
    peering: str | None = Field(None, description="Kopf peering name for two replicas; None = standalone.")
    peering_priority: int | None = Field(
        None, ge=1, le=2**31 - 1, description="This replica's peering priority (highest acts); None = random."
    )


# Settings of the earlier week model (a week was the date FINRA stamped on a file, expected a fixed
# lag after it). They cannot be translated: refusing them beats silently ignoring what someone set.
RETIRED_SETTINGS = ("SPINE_WEEK_ENDING_WEEKDAY", "SPINE_PUBLICATION_LAG_DAYS")


def check_retired_settings(environ: Mapping[str, str] | None = None) -> None:
    """:class:`UsageError` naming the replacement if a retired setting is still set."""
    env = os.environ if environ is None else environ
    for name in RETIRED_SETTINGS:
        if name in env:
            raise UsageError(
                f"{name} is no longer supported: weeks are FINRA trading weeks and are expected by FINRA's "
                "publication calendar; unset it and use SPINE_PUBLICATION_GRACE_DAYS (days after FINRA's first "
                "publication before a week is expected, default 1)"
            )


def load_settings() -> Settings:
    """The settings from the environment; a retired or invalid ``SPINE_*`` value is a
    :class:`UsageError` naming the variable (one line, exit code 2), never a pydantic traceback."""
    check_retired_settings()
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "SPINE_" + "_".join(str(p) for p in first.get("loc", ())[:1]).upper()
        raise UsageError(f"{name} is invalid: {first.get('msg')}") from None
