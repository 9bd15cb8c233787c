"""``tpv tasks``: list the registered tasks and show one, with where its data comes from and whether it is here.

Mounted by :mod:`tpv.cli` as ``tpv tasks``; usable alone as ``typer`` app ``tpv.cli.tasks:app``. Known errors print
one line on stderr and exit with status 2.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from tpv.cli._common import console as _console
from tpv.cli._common import guard

if TYPE_CHECKING:
    from tpv.tasks.spec import TaskSpec

app = typer.Typer(
    help="NLU tasks: the registry of GLUE, SuperGLUE, the paper's datasets and the offline suite.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _where(spec: TaskSpec) -> str:
    if spec.source == "hub":
        return f"hub: {spec.hub_path}" + (f" ({spec.hub_subset})" if spec.hub_subset else "")
    if spec.source == "local":
        return "files: " + ", ".join(path for _, path in spec.local_files)
    return spec.install


def _status(available: bool | None) -> str:
    return {True: "yes", False: "no", None: "internet"}[available]


def _record(spec: TaskSpec) -> dict[str, Any]:
    from tpv.tasks import availability, list_groups

    available, reason = availability(spec)
    roles = {g.name: g.role(spec.name) for g in list_groups() if spec.name in g.tasks}
    return {
        "name": spec.name,
        "group": spec.group,
        "groups": roles,
        "source": spec.source,
        "data": _where(spec),
        "metric": spec.metric,
        "label_words": list(spec.label_words),
        "available": available,
        "reason": reason,
        "size": spec.size,
        "licence": spec.licence,
    }


@app.command("list")
def list_command(
    group: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--group", "-g", help="Only this group (glue, superglue, paper-nli, offline-topic, ...)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List every task: its group, where its data comes from, and whether that data is available here.

    Availability: `yes` (installed here), `no` (the reason names the install command), `internet` (a hub task:
    loads with internet access, or from local files with `data_files=`).

    Example: `tpv tasks list --group offline-sentiment --json`
    """
    from tpv.tasks import list_tasks

    records = [_record(spec) for spec in guard(lambda: list_tasks(group))]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    from rich import box
    from rich.table import Table

    out = _console()
    wide = out.width >= 120  # narrow terminals drop the data column (`tpv tasks show NAME` has it) and the borders
    table = Table(title=f"tasks ({len(records)})", title_justify="left", box=box.HEAVY_HEAD if wide else box.SIMPLE)
    columns = (
        ("task", "group", "role", "metric", "data", "here") if wide else ("task", "group", "role", "metric", "here")
    )
    for column in columns:
        # names are never cut (they are what a user types); the rest wraps instead of ending in "..."
        table.add_column(column, no_wrap=column in ("task", "group"), overflow="fold")
    for r in records:
        roles = sorted({role for role in r["groups"].values() if role != "member"})
        here = _status(r["available"]) + ("" if r["available"] is not False else f" ({r['reason']})")
        cells = [r["name"], r["group"], "/".join(roles), r["metric"], *([r["data"]] if wide else []), here]
        table.add_row(*cells)
    out.print(table)


@app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="A task name, e.g. rotten_tomatoes or sst2.")],
    examples: Annotated[
        int,
        typer.Option("--examples", "-n", help="Also load the task and print this many training examples."),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Split seed (with --examples).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one task's spec: template, label words, metric, source, licence, size and balance.

    Example: `tpv tasks show wordnet_wic --examples 2`
    """
    from tpv.tasks import get_task, load_task

    spec = guard(lambda: get_task(name))
    record = _record(spec)
    record.update(
        template=spec.template,
        label_names=list(spec.label_names),
        version=spec.version,
        description=spec.description,
        balance=spec.balance,
        citation=spec.citation,
    )
    shown: list[dict[str, Any]] = []
    if examples > 0:
        data = guard(lambda: load_task(spec, seed=seed))
        record["splits"] = data.sizes()
        for example in data.train[:examples]:
            label = example.label
            answer = str(label) if spec.is_regression else spec.label_words[int(label)]
            shown.append({"text": example.text, "label": label, "answer": answer})
        record["examples"] = shown
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    out = _console()
    for key in (
        "name",
        "description",
        "group",
        "data",
        "metric",
        "label_words",
        "label_names",
        "version",
        "licence",
        "size",
        "balance",
        "citation",
        "splits",
    ):
        if key in record and record[key] not in ("", [], None):
            out.print(f"[bold]{key}[/bold]: {record[key]}")
    out.print(f"[bold]here[/bold]: {_status(record['available'])} ({record['reason']})")
    out.print("[bold]template[/bold]:")
    out.print(spec.template, markup=False)
    for item in shown:
        out.print("[bold]---[/bold]")
        out.print(f"{item['text']}{item['answer']}", markup=False)
