"""TrainConfig's fields as typer options: one source for the defaults and help of ``tpv train`` (internal)."""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, TypeVar, Union, get_args, get_origin, get_type_hints

import typer

from tpv.engine.config import LrRule, TrainConfig
from tpv.errors import ConfigError

__all__ = ["CONFIG_OPTIONS", "config_options"]


@dataclass(frozen=True)
class _Adapt:
    """How one TrainConfig field differs on the command line from what its type says."""

    cli_type: Any
    to_config: Callable[[Any], Any]
    help_suffix: str = ""


def _parse_lr(text: str) -> float | LrRule:
    """``--lr``: a positive number, ``auto`` or ``range-test``."""
    if text == "auto":
        return "auto"
    if text == "range-test":
        return "range-test"
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--lr {text!r}: must be a positive number, 'auto' or 'range-test'") from None


CONFIG_OPTIONS: tuple[str, ...] = (
    "steps",
    "batch_size",
    "grad_accum",
    "lr",
    "optimizer",
    "weight_decay",
    "warmup",
    "eval_every",
    "eval_examples",
    "patience",
    "save_every",
    "seed",
    "precision",
    "device",
    "max_length",
    "num_virtual_tokens",
    "init",
    "init_text",
    "origin_seed",
    "loss",
)
"""The :class:`~tpv.engine.config.TrainConfig` fields that ``tpv train`` takes as options (``--batch-size`` for
``batch_size``): default and help come from the field, the type from its annotation (see :func:`_config_option`)."""

_ADAPT: dict[str, _Adapt] = {
    "lr": _Adapt(str, _parse_lr),
    "eval_examples": _Adapt(int, lambda n: n or None, " 0 scores all."),
}
"""Fields whose command-line form differs: ``--lr`` is text (a number or a rule), ``--eval-examples 0`` is None."""


def _cli_type(hint: Any) -> Any:
    """The option type of a field's annotation: a Literal is text (TrainConfig checks it), ``X | None`` optional."""
    if get_origin(hint) is Literal:
        return str
    if get_origin(hint) in (Union, types.UnionType):
        kept = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(kept) == 1 and len(kept) < len(get_args(hint)):
            return Optional[_cli_type(kept[0])]  # noqa: UP045 (typer reads typing.Optional)
        raise TypeError(f"no command-line form for the annotation {hint!r}; add the field to _ADAPT")
    if hint in (int, float, str, bool):
        return hint
    raise TypeError(f"no command-line form for the annotation {hint!r}; add the field to _ADAPT")


def _config_option(field: dataclasses.Field[Any], hint: Any) -> inspect.Parameter:
    """The keyword parameter, typer-annotated, of one TrainConfig field: its default, type and help."""
    adapt = _ADAPT.get(field.name)
    cli_type = adapt.cli_type if adapt is not None else _cli_type(hint)
    text = str(field.metadata.get("help", "")) + (adapt.help_suffix if adapt is not None else "")
    return inspect.Parameter(
        field.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=field.default,
        annotation=Annotated[cli_type, typer.Option(help=text)],
    )


def _to_config(options: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of a command's generated options (``--lr`` parsed, ``--eval-examples 0`` as None)."""
    values = {}
    for name, value in options.items():
        adapt = _ADAPT.get(name)
        values[name] = adapt.to_config(value) if adapt is not None else value
    return TrainConfig(**values)


_Command = TypeVar("_Command", bound=Callable[..., Any])


def config_options(names: Sequence[str], *, after: str) -> Callable[[_Command], _Command]:
    """Give a typer command one option per named TrainConfig field, received in its ``**options``.

    The command's signature (what typer reads) becomes its own parameters with the fields' options inserted after
    ``after``, so each option's default and help have one source, the field.

    Args:
        names: TrainConfig field names, in the order the options are listed.
        after: the command parameter the options follow.

    Returns:
        A decorator that sets the command's ``__signature__``.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints = get_type_hints(TrainConfig)
    generated = [_config_option(fields[name], hints[name]) for name in names]

    def decorate(command: _Command) -> _Command:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind != p.VAR_KEYWORD]
        at = next(i for i, p in enumerate(own) if p.name == after) + 1
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own[at:]]
        command.__signature__ = inspect.Signature([*own[:at], *generated, *rest])  # type: ignore[attr-defined]
        return command

    return decorate
