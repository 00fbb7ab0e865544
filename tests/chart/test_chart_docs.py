"""What docs/ops/install.md says the chart does, checked against the rendered chart (issue 10: it
once said the enqueue CronJobs' work items "have no data source", and later that they use
``--source finra-api``; the chart decides which is true)."""

from __future__ import annotations

import re
import shlex

from market_spine.core.partitions import Tier
from tests.chart.chartlib import ROOT, Rendered, containers, pod_specs

INSTALL = ROOT / "docs" / "ops" / "install.md"


def _documented_enqueue() -> list[str]:
    text = re.sub(r"\s+", " ", INSTALL.read_text(encoding="utf-8"))
    match = re.search(r"The chart's enqueue CronJobs run `(?P<command>spine work enqueue [^`]+)`", text)
    assert match, "install.md no longer says which command the enqueue CronJobs run"
    return shlex.split(match["command"])


def test_the_enqueue_cronjobs_run_the_command_install_md_documents(default: Rendered) -> None:
    documented = _documented_enqueue()
    assert documented[documented.index("--tier") + 1] == "<TIER>"
    enqueues = [c for c in default.of_kind("CronJob") if c["metadata"]["name"].endswith(tuple(
        f"enqueue-{tier.value.lower().replace('_', '-')}" for tier in Tier))]  # fmt: skip
    assert len(enqueues) == len(Tier)
    for cronjob in enqueues:
        (container,) = containers(pod_specs(cronjob)[0])
        args = ["spine", *container["args"]]
        tier = args[args.index("--tier") + 1]
        assert args == [tier if word == "<TIER>" else word for word in documented], cronjob["metadata"]["name"]
        assert args[args.index("--source") + 1] == "finra-api"  # the items have a data source
