"""``kubectl spine``: the kubectl plugin, installed as the ``kubectl-spine`` console script.

kubectl runs any ``kubectl-*`` executable on PATH as a plugin, so ``kubectl spine get`` is this
program with ``get``. It follows krew's conventions: ``kubectl spine --help``, and kubectl's own
``--namespace/-n``, ``--context`` and ``--kubeconfig`` anywhere on the line, resolved as kubectl
resolves them (``kube.kubeconfig``): the SpineWorkItems it shows and changes are those of the
current context's namespace unless told otherwise.

It is a thin shell: it points ``spine``'s settings at that cluster and namespace
(``SPINE_BACKEND=kubernetes``, ``SPINE_NAMESPACE``, ``SPINE_KUBECONFIG``, ``SPINE_KUBE_CONTEXT``) and
runs the ``spine`` command that does the work, so output, errors and exit codes are the same:

- ``get`` is ``spine work list`` (``-o table|json|csv``);
- ``retry``, ``wake``, ``dismiss`` and ``cancel`` are ``spine work retry|wake|dismiss|cancel`` on
  one item, named by its SpineWorkItem name or by pipeline, ``--week`` and ``--tier``; they set
  ``spec.retryRequest``, ``spec.wakeRequest``, ``spec.dismissRequest`` or ``spec.cancel``
  (``kube.workitems.KubernetesQueue``) and the operator makes the transition;
- ``backfill`` is ``spine work backfill`` (every option passes through);
- ``doctor`` is ``spine doctor`` on ``SPINE_DATABASE_URL`` (the doctor reads PostgreSQL, not the
  cluster);
- ``describe`` prints one item: its spec, state, attempts, conditions, Events, and the
  ``kubectl spine`` commands that apply to its state (``core.lifecycle.requests_allowed``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
import typer.main

from market_spine.cli import context
from market_spine.cli.helptext import plain_metavars
from market_spine.cli.main import invoke, run_cli
from market_spine.cli.output import Format, emit, timestamp
from market_spine.config import load_settings
from market_spine.core import lifecycle
from market_spine.core.calendar import describe_week
from market_spine.core.resource import WorkItemResourceSpec, WorkItemStatus
from market_spine.core.states import WorkState
from market_spine.errors import NotFound, UsageError
from market_spine.kube import kubeconfig
from market_spine.kube.client import NotFoundError, events_path, swi_path
from market_spine.kube.workitems import KubernetesQueue, KubeWorkItem

WHO = "kubectl spine"
# kubectl's flags that a plugin honours, taken from anywhere on the line (kubectl passes them on
# after the plugin's name: `kubectl spine get -n market-data`).
GLOBAL_FLAGS = ("--namespace", "-n", "--context", "--kubeconfig")
FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

app = typer.Typer(
    name=WHO,
    help="SpineWorkItems of the current kubectl context and namespace: get, describe, retry, wake, dismiss, "
    "cancel, backfill, and the doctor.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_flags: dict[str, str | None] = {"namespace": None, "context": None, "kubeconfig": None}


@app.callback()
def root(
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", metavar="NAMESPACE", help="Default: the context's namespace.")
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", metavar="CONTEXT", help="Default: the kubeconfig's current context.")
    ] = None,
    kubeconfig_path: Annotated[
        str | None,
        typer.Option("--kubeconfig", metavar="FILE", help="Default: $KUBECONFIG, else ~/.kube/config."),
    ] = None,
) -> None:
    _flags.update(namespace=namespace, context=context, kubeconfig=kubeconfig_path)


def target() -> kubeconfig.Target:
    """Resolve the cluster, context and namespace, and point ``spine``'s settings at them."""
    found = kubeconfig.resolve(_flags["kubeconfig"], _flags["context"], _flags["namespace"])
    os.environ["SPINE_BACKEND"] = "kubernetes"
    os.environ["SPINE_NAMESPACE"] = found.namespace
    for name, value in (("SPINE_KUBECONFIG", found.kubeconfig), ("SPINE_KUBE_CONTEXT", found.context)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(value)
    return found


def _spine(path: Sequence[str], argv: Sequence[str]) -> None:
    """Run ``spine <path> <argv>`` and leave with its exit code."""
    raise typer.Exit(run_cli(list(argv), path=path, who=WHO))


def _queue() -> KubernetesQueue:
    return KubernetesQueue(load_settings())


def _object(name: str) -> dict[str, Any]:
    queue = _queue()
    try:
        return queue.client.get(swi_path(queue.namespace, name))
    except NotFoundError:
        raise NotFound(
            f"no SpineWorkItem {name!r} in namespace {queue.namespace}; list them with: {WHO} get -n {queue.namespace}"
        ) from None


def _as_given(item: str, week: str | None, tier: str | None) -> list[str]:
    return [item, *(["--week", week] if week else []), *(["--tier", tier] if tier else [])]


def _item_args(item: str, week: str | None, tier: str | None) -> list[str]:
    """``spine work`` arguments for one item: ``PIPELINE --week W --tier T`` as given, or read off
    the SpineWorkItem named ``item``."""
    if week is not None or tier is not None:
        return _as_given(item, week, tier)
    spec = WorkItemResourceSpec.model_validate(_object(item).get("spec") or {})
    return [spec.pipeline, "--week", spec.partition.week.isoformat(), "--tier", spec.partition.tier.value]


ItemArg = Annotated[
    str, typer.Argument(metavar="NAME|PIPELINE", help="A SpineWorkItem's name, or a pipeline with --week and --tier.")
]
WeekOpt = Annotated[str | None, typer.Option("--week", metavar="DATE", help="With a pipeline: any date of the week.")]
TierOpt = Annotated[str | None, typer.Option("--tier", metavar="TIER", help="With a pipeline: the tier.")]


@app.command()
def get(
    states: Annotated[list[str] | None, typer.Option("--state", metavar="STATE", help="Only these states.")] = None,
    pipeline: Annotated[str | None, typer.Option("--pipeline", metavar="PIPELINE", help="Only this pipeline.")] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="At most N items.")] = 200,
    output: Annotated[Format, typer.Option("--output", "-o", metavar="table|json|csv", help="Output format.")] = (
        Format.TABLE
    ),
) -> None:
    """List the namespace's SpineWorkItems, most urgent first (spine work list)."""
    target()
    argv = [*(a for s in states or () for a in ("--state", s)), "--limit", str(limit), "--format", output.value]
    _spine(("work", "list"), [*argv, *(["--pipeline", pipeline] if pipeline else [])])


@app.command()
def describe(item: ItemArg, week: WeekOpt = None, tier: TierOpt = None) -> None:
    """One SpineWorkItem: spec, state, attempts, conditions, Events, and what can be done next."""
    found = target()
    if week is None and tier is None:
        obj = _object(item)
    else:
        obj = _queue().get(context.check_pipeline(item), context.partition(week, None, tier or "")).raw
    print_description(obj, _events(found.namespace, obj["metadata"]["name"]), found.namespace)


def _events(namespace: str, name: str) -> list[dict[str, Any]]:
    queue = _queue()
    answer = queue.client.request(
        "GET",
        events_path(namespace),
        query={"fieldSelector": f"involvedObject.kind=SpineWorkItem,involvedObject.name={name}"},
    )
    events = list(answer.get("items") or [])
    return sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def print_description(obj: dict[str, Any], events: Sequence[dict[str, Any]], namespace: str) -> None:
    """What ``describe`` prints: ``Field: value`` lines (never cut), then tables."""
    item = KubeWorkItem.from_object(obj, context.utcnow())
    spec = WorkItemResourceSpec.model_validate(obj.get("spec") or {})
    status = WorkItemStatus.model_validate(obj.get("status") or {})
    state = item.state
    attempts = f"{item.attempt_count}/{item.max_attempts}"
    waiting = f", next attempt at {timestamp(item.next_attempt_at)}" if item.next_attempt_at else ""
    lines = [
        ("Name", item.k8s_name),
        ("Namespace", namespace),
        ("Pipeline", spec.pipeline),
        ("Week", describe_week(spec.partition.week)),
        ("Tier", spec.partition.tier.value),
        ("State", f"{state.value} (attempts {attempts}{waiting})"),
        ("Priority", str(spec.priority)),
        ("Params", ", ".join(f"{k}={v}" for k, v in sorted(spec.params.items())) or "none"),
        ("Chain", "yes" if spec.chain else "no"),
        ("Job", status.current_job or "none"),
        ("Capture", status.capture_id or "none"),
        ("Last error", item.last_error or "none"),
    ]
    width = max(len(k) for k, _ in lines) + 1
    for key, value in lines:
        print(f"{key + ':':<{width}} {value}")
    history = [
        {
            "attempt": a.attempt,
            "job": a.job,
            "outcome": a.outcome.value,
            "started_at": a.started_at,
            "finished_at": a.finished_at,
            "reason": a.reason,
            "error": a.error,
        }
        for a in status.history
    ]
    _section("Attempts", history, ("attempt", "job", "outcome", "started_at", "finished_at", "reason", "error"))
    conditions = [
        {"type": c.type.value, "status": c.status.value, "reason": c.reason, "message": c.message}
        for c in status.conditions
    ]
    _section("Conditions", conditions, ("type", "status", "reason", "message"))
    rows = [
        {"type": e.get("type"), "reason": e.get("reason"), "at": e.get("lastTimestamp"), "message": e.get("message")}
        for e in events
    ]
    _section("Events", rows, ("type", "reason", "at", "message"))
    hints = next_steps(item.k8s_name, state, namespace)
    if hints:
        print("\nNext:")
        for hint in hints:
            print(f"  {hint}")


def _section(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    print(f"\n{title}:")
    sys.stdout.flush()
    if rows:
        emit(rows, Format.TABLE, columns=columns)
    else:
        print("  none")


# What each verb does, for the hints of `describe` (which verbs apply comes from the lifecycle).
HINTS = {
    "retry": "run it again with a fresh attempt budget",
    "wake": "run the next attempt now instead of at its time",
    "dismiss": "accept the failure: the doctor stops reporting it",
    "cancel": "stop it",
}


def next_steps(name: str, state: WorkState, namespace: str) -> list[str]:
    """The ``kubectl spine`` commands that apply to an item in ``state`` (``core.lifecycle``)."""
    where = f"{name} -n {namespace}"
    verbs = lifecycle.requests_allowed(state)
    width = max(map(len, verbs), default=0)
    return [f"{WHO} {verb} {where}{' ' * (width - len(verb))}    # {HINTS[verb]}" for verb in verbs]


@app.command()
def retry(item: ItemArg, week: WeekOpt = None, tier: TierOpt = None) -> None:
    """Admin retry: a FAILED, COMPLETE (to re-run) or CANCELLED (to re-open) item goes back to PENDING
    with a fresh attempt budget."""
    target()
    _spine(("work", "retry"), _item_args(item, week, tier))


@app.command()
def cancel(item: ItemArg, week: WeekOpt = None, tier: TierOpt = None) -> None:
    """Cancel an item that has not finished (its running Job is deleted)."""
    target()
    _spine(("work", "cancel"), _item_args(item, week, tier))


@app.command()
def wake(item: ItemArg, week: WeekOpt = None, tier: TierOpt = None) -> None:
    """Run an item waiting in RETRY_WAIT now (spine work wake)."""
    target()
    _spine(("work", "wake"), _item_args(item, week, tier))


@app.command()
def dismiss(
    item: ItemArg,
    week: WeekOpt = None,
    tier: TierOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why the failure is accepted (kept with the item).")] = "",
) -> None:
    """Accept a FAILED item: it becomes CANCELLED (reason Dismissed) and the doctor stops reporting
    it (spine work dismiss)."""
    target()
    _spine(("work", "dismiss"), [*_item_args(item, week, tier), *(["--reason", reason] if reason else [])])


def _help(args: Sequence[str]) -> bool:
    """``--help`` for a verb that hands its arguments on: spine's help, without a cluster."""
    return "--help" in args


@app.command(context_settings=FORWARD)
def backfill(ctx: typer.Context) -> None:
    """Enqueue trading weeks × tiers at backfill priority (spine work backfill; its options)."""
    if not _help(ctx.args):
        target()
    _spine(("work", "backfill"), ctx.args)


@app.command(context_settings=FORWARD)
def doctor(ctx: typer.Context) -> None:
    """Gaps and the commands that fill them (spine doctor; its options), from SPINE_DATABASE_URL."""
    if not _help(ctx.args):
        namespace = target().namespace
        if not os.environ.get("SPINE_DATABASE_URL"):
            raise UsageError(
                "the doctor reads the platform's PostgreSQL, not the cluster: set SPINE_DATABASE_URL (e.g. through "
                f"`kubectl port-forward` to it), or run the chart's daily check now: kubectl -n {namespace} "
                "create job --from=cronjob/market-spine-doctor doctor-now"
            )
    _spine(("doctor",), ctx.args)


def hoist_flags(argv: Sequence[str]) -> list[str]:
    """kubectl's flags moved before the verb, so they may be written anywhere (``get -n x``)."""
    front: list[str] = []
    rest: list[str] = []
    words = list(argv)
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            rest += words[index:]
            break
        flag = word.split("=", 1)[0]
        if flag in GLOBAL_FLAGS and "=" in word:
            front.append(word)
        elif word in GLOBAL_FLAGS and index + 1 < len(words):
            front += [word, words[index + 1]]
            index += 1
        elif word.startswith("-n") and len(word) > 2 and not word.startswith("--"):
            front += ["-n", word[2:]]
        else:
            rest.append(word)
        index += 1
    return front + rest


def command() -> Any:
    built = typer.main.get_command(app)
    plain_metavars(built)
    return built


def run(argv: Sequence[str] | None = None) -> int:
    """Run ``kubectl spine`` with ``argv``; returns the exit code (tests call this)."""
    return invoke(command(), hoist_flags(sys.argv[1:] if argv is None else argv), prog=WHO, who=WHO)


def main() -> None:
    sys.exit(run())
