"""``kubectl spine`` (issue 10, acceptance criterion 4): the real ``kubectl`` finds the installed
``kubectl-spine`` on PATH and runs it as a plugin against a real API server, in the namespace of the
kubeconfig's current context (or ``-n``): ``get`` lists the SpineWorkItems, ``retry`` raises the
admin retry the real operator acts on, ``wake`` runs a waiting item now through the operator, and
``cancel`` and ``describe`` do what they say.

These need a real API server (the emulator proves nothing kubectl would do): they skip without one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from market_spine.core.workitem import WorkItemSpec
from tests.operator.harness import JobController, Namespace, OperatorProcess
from tests.support import envtest
from tests.support.kubectl import kubectl_binary

INGEST = "finra.otc_transparency.ingest_week"
VENV_BIN = Path(sys.executable).parent  # where `pip install` put the kubectl-spine console script

Plugin = Callable[..., subprocess.CompletedProcess[str]]


def spec(week: str = "2025-11-10", tier: str = "OTC", **fields: object) -> WorkItemSpec:
    return WorkItemSpec.model_validate(
        {"pipeline": INGEST, "partition": {"week": week, "tier": tier}, "params": {"source": "finra-api"}, **fields}
    )


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """The plugin points spine's settings at the cluster through os.environ (it is a process of
    its own); in-process calls here must not leave SPINE_BACKEND=kubernetes to later tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def plugin(ns: Namespace, tmp_path: Path) -> Plugin:
    """``kubectl spine …`` run by the real kubectl, with only a kubeconfig whose current context's
    namespace is the test's: no ``-n``, no SPINE_* settings, as an on-call engineer would type it."""
    if not ns.cluster.real:
        pytest.skip(f"kubectl against the emulator proves nothing; {envtest.skip_reason()}")
    config = yaml.safe_load(Path(ns.cluster.kubeconfig).read_text())
    current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    current["context"]["namespace"] = ns.name
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
    env.update(KUBECONFIG=str(kubeconfig), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", COLUMNS="80")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [kubectl_binary(), "spine", *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl spine {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    return run


def failed_item(ns: Namespace, jobs: JobController) -> str:
    """An item whose one attempt failed for good (a usage error is not retried): FAILED."""
    name = ns.enqueue(spec(maxAttempts=1))
    ns.wait_state(name, "RUNNING")
    jobs.fail(f"{name}-a1", message="UsageError: bad option", exit_code=2)
    ns.wait_state(name, "FAILED")
    return name


def test_kubectl_finds_the_plugin_and_its_help_follows_krew(plugin: Plugin) -> None:
    listed = subprocess.run(
        [kubectl_binary(), "plugin", "list", "--name-only"],
        env={"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "kubectl-spine" in listed.stdout.split()
    usage = plugin("--help").stdout
    assert usage.startswith("Usage: kubectl spine [OPTIONS] COMMAND [ARGS]...")
    for flag in ("-n, --namespace NAMESPACE", "--context CONTEXT", "--kubeconfig FILE"):
        assert flag in usage
    for verb in ("get", "describe", "doctor", "retry", "wake", "dismiss", "cancel", "backfill"):
        assert re.search(rf"^  {verb}\s", usage, re.M), verb


def test_get_lists_the_work_items_of_the_current_contexts_namespace(plugin: Plugin, ns: Namespace) -> None:
    names = [ns.enqueue(spec(tier=tier)) for tier in ("OTC", "NMS_TIER_2")]
    table = plugin("get")
    lines = table.stdout.splitlines()  # piped: plain, every value whole
    assert re.split(r"\s{2,}", lines[0]) == [
        "NAME", "PIPELINE", "WEEK", "TIER", "STATE", "ATTEMPTS", "PRIORITY", "NEXT_ATTEMPT_AT", "LAST_ERROR",
    ]  # fmt: skip
    rows = {re.split(r"\s{2,}", line)[0]: re.split(r"\s{2,}", line) for line in lines[1:]}
    assert sorted(rows) == sorted(names)
    for name, tier in zip(names, ("OTC", "NMS_TIER_2"), strict=True):
        assert rows[name][1:7] == [INGEST, "2025-11-10", tier, "PENDING", "0/3", "100"]

    listed = json.loads(plugin("get", "-o", "json").stdout)
    assert sorted(item["name"] for item in listed) == sorted(names)
    # kubectl's flags go anywhere after the plugin's name; another namespace holds nothing.
    elsewhere = plugin("get", "-n", "default", "--state", "PENDING", "-o", "csv")
    assert elsewhere.stdout == "name,pipeline,week,tier,state,attempts,priority,next_attempt_at,last_error\n"


def test_retry_sets_the_admin_retry_the_operator_acts_on(
    plugin: Plugin, ns: Namespace, operator: OperatorProcess, jobs: JobController
) -> None:
    name = failed_item(ns, jobs)

    done = plugin("retry", name)
    assert done.stdout == f'{INGEST} {{"tier":"OTC","week":"2025-11-10"}}: PENDING, attempts reset\n'
    assert ns.item(name)["spec"]["retryRequest"] == 1
    status = ns.wait_state(name, "RUNNING")  # the operator applied it: a new attempt, a new Job
    assert (status.attempts, status.total_attempts, status.observed_retry_request) == (1, 2, 1)
    assert status.current_job == f"{name}-a2"

    described = plugin("describe", name).stdout
    assert f"Name:       {name}\n" in described
    assert "State:      RUNNING (attempts 1/1)" in described
    assert re.search(r"^Events:\n(.*\n)*.*RetryRequested", described, re.M), described
    assert f"kubectl spine cancel {name} -n {ns.name}" in described

    # By pipeline, week (any day of it) and tier, as `spine work cancel` names it.
    cancelled = plugin("cancel", INGEST, "--week", "2025-11-14", "--tier", "OTC")
    assert cancelled.stdout.endswith(
        ": CANCELLED; its running attempt is being stopped and nothing it writes is kept\n"
    ), cancelled.stdout
    assert ns.item(name)["spec"]["cancel"] is True
    ns.wait_state(name, "CANCELLED")


def test_describe_offers_what_the_lifecycle_allows_and_dismiss_accepts_a_failure(
    plugin: Plugin, ns: Namespace, operator: OperatorProcess, jobs: JobController
) -> None:
    name = failed_item(ns, jobs)

    described = plugin("describe", name).stdout
    offered = re.findall(r"^  kubectl spine (\w+) ", described, re.M)
    assert offered == ["retry", "dismiss"], described  # FAILED: no wake, no cancel

    done = plugin("dismiss", name, "--reason", "week withdrawn by FINRA")
    partition = '{"tier":"OTC","week":"2025-11-10"}'
    assert done.stdout == f"{INGEST} {partition}: CANCELLED (dismissed: week withdrawn by FINRA)\n"
    status = ns.wait_state(name, "CANCELLED")
    assert (status.reason, status.observed_dismiss_request) == ("Dismissed", 1)
    assert re.findall(r"^  kubectl spine (\w+) ", plugin("describe", name).stdout, re.M) == ["retry"]


def test_errors_are_one_line_with_the_documented_exit_code(plugin: Plugin, ns: Namespace) -> None:
    missing = plugin("retry", "no-such-item", check=False)
    assert missing.returncode == 6
    assert missing.stderr.strip().splitlines()[-1] == (
        f"kubectl spine: error: no SpineWorkItem 'no-such-item' in namespace {ns.name}; "
        f"list them with: kubectl spine get -n {ns.name}"
    )
    name = ns.enqueue(spec())
    refused = plugin("retry", name, check=False)  # PENDING: nothing to retry
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("kubectl spine: error: ")
    assert "Traceback" not in missing.stderr + refused.stderr
    unset = plugin("doctor", "finra.otc_transparency", check=False)
    assert unset.returncode == 2
    assert "set SPINE_DATABASE_URL" in unset.stderr


# --- kubectl's conventions, without a cluster ---------------------------------------------------------


def _kubeconfig(path: Path) -> Path:
    cluster = {"server": "https://127.0.0.1:6443"}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "prod", "context": {"cluster": "c", "user": "u", "namespace": "market-data"}},
                    {"name": "dev", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "prod",
            }
        )
    )
    return path


def test_the_namespace_is_the_flag_else_the_contexts_else_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from market_spine.kube.kubeconfig import Target, resolve

    config = _kubeconfig(tmp_path / "config")
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert resolve(None, None, None) == Target(config, "prod", "market-data")
    assert resolve(None, "dev", None) == Target(config, "dev", "default")
    assert resolve(None, None, "other") == Target(config, "prod", "other")
    other = _kubeconfig(tmp_path / "explicit")
    assert resolve(str(other), None, None) == Target(other, "prod", "market-data")
    # A KUBECONFIG list is merged by the kubernetes package, as kubectl merges it.
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}{os.pathsep}{config}")
    assert resolve(None, None, None) == Target(None, "prod", "market-data")


def test_an_unknown_context_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from market_spine.cli.kubectl import run

    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config")))
    assert run(["get", "--context", "staging"]) == 2
    error = capsys.readouterr().err
    assert error == "kubectl spine: error: no context 'staging' in the kubeconfig; contexts: prod, dev\n"


def test_kubectl_flags_may_come_anywhere_after_the_plugins_name() -> None:
    from market_spine.cli.kubectl import hoist_flags

    assert hoist_flags(["get", "-n", "x", "--state", "FAILED", "--context=c", "--kubeconfig", "k"]) == [
        "-n", "x", "--context=c", "--kubeconfig", "k", "get", "--state", "FAILED",
    ]  # fmt: skip
    assert hoist_flags(["retry", "name", "-nprod"]) == ["-n", "prod", "retry", "name"]
    assert hoist_flags(["backfill", "p", "--", "-n", "x"]) == ["backfill", "p", "--", "-n", "x"]


def test_wake_runs_a_waiting_item_now_through_the_operator(
    plugin: Plugin, ns: Namespace, operator: OperatorProcess, jobs: JobController
) -> None:
    name = ns.enqueue(
        spec(maxAttempts=3, retry={"backoffSeconds": 3600, "maxBackoffSeconds": 3600})
    )  # the next attempt an hour away
    ns.wait_state(name, "RUNNING")
    jobs.fail(f"{name}-a1", message="SourceUnavailable: FINRA did not answer", exit_code=5)
    ns.wait_state(name, "RETRY_WAIT")

    done = plugin("wake", name)
    assert done.stdout == f'{INGEST} {{"tier":"OTC","week":"2025-11-10"}}: PENDING, due now\n'
    assert ns.item(name)["spec"]["wakeRequest"] == 1
    status = ns.wait_state(name, "RUNNING")  # the operator acted on it now, not in an hour
    assert (status.attempts, status.current_job) == (2, f"{name}-a2")

    again = plugin("wake", name, check=False)  # running, not waiting: refused in words
    assert again.returncode == 2
    assert again.stderr == (
        f"kubectl spine: error: can't wake {INGEST} --week 2025-11-10 --tier OTC: attempt 2 is running now\n"
    )
