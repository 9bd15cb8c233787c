"""Benchmark configs: a defaults file plus per-experiment overlays, deep-merged, validated, written beside results.

A config is a chain of YAML files. The shipped ``defaults.yaml`` comes first, then each file given, in order;
later files override earlier ones key by key (mappings merge recursively, lists and scalars are replaced), and
``--set key.path=value`` overrides come last::

    defaults.yaml  <-  fewshot.yaml  <-  gpu.yaml  <-  --set fewshot.seeds=[0,1]

The merged mapping is validated by the pydantic models of :mod:`tpv.bench.schema` (unknown keys are refused);
any broken rule becomes one :class:`~tpv.errors.ConfigError` that names the key, the value, the file that set it
and the rule, e.g. ``fewshot.shots[2] = -5 (set in fewshot.yaml): must be >= 0``. The resolved config (every
value, defaults included) is written as ``config.yaml`` beside every result, so a result always says exactly how
it was made.

Shipped configs live in ``benchmarks/configs/`` of the repository (override with ``$TPV_BENCH_CONFIGS``); a
name without a suffix (``fewshot``) is looked up there, anything else is a path.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tpv.bench.schema import (
    CalibrationSection,
    Config,
    CrossOriginSection,
    DataSection,
    ExperimentName,
    FewShotInit,
    FewShotSection,
    ModelSection,
    PerfSection,
    PromptSection,
    RuleError,
    RuntimeSection,
    SimilaritySection,
    StatsSection,
    TasksSection,
)
from tpv.errors import ConfigError

__all__ = [
    "CONFIGS_ENV",
    "CalibrationSection",
    "Config",
    "ConfigLayer",
    "CrossOriginSection",
    "DataSection",
    "ExperimentName",
    "FewShotInit",
    "FewShotSection",
    "ModelSection",
    "PerfSection",
    "PromptSection",
    "RuntimeSection",
    "SimilaritySection",
    "StatsSection",
    "TasksSection",
    "config_dir",
    "deep_merge",
    "dump_config",
    "list_configs",
    "load_config",
    "parse_override",
    "resolve_config_path",
    "validate",
]

CONFIGS_ENV = "TPV_BENCH_CONFIGS"
DEFAULTS_FILE = "defaults.yaml"
InitName = FewShotInit  # the old name, kept for existing imports (not exported: it clashed with the engine's)


# -- files ----------------------------------------------------------------------------------------------------


class ConfigLayer:
    """One source of config values: a file (or the ``--set`` overrides) and the mapping it holds."""

    def __init__(self, label: str, data: Mapping[str, Any]) -> None:
        """Create a layer.

        Args:
            label: where the values come from (a file name, or ``--set``).
            data: the mapping.
        """
        self.label = label
        self.data = dict(data)

    def __repr__(self) -> str:
        return f"ConfigLayer({self.label!r})"


def config_dir() -> Path | None:
    """The folder of shipped configs: ``$TPV_BENCH_CONFIGS``, ``./benchmarks/configs`` or the repository's."""
    env = os.environ.get(CONFIGS_ENV)
    if env:
        return Path(env)
    for candidate in (
        Path.cwd() / "benchmarks" / "configs",
        Path(__file__).resolve().parents[2] / "benchmarks" / "configs",
    ):
        if (candidate / DEFAULTS_FILE).is_file():
            return candidate
    return None


def list_configs() -> list[Path]:
    """The shipped config files, defaults first, then the others by name."""
    folder = config_dir()
    if folder is None:
        return []
    files = sorted(folder.glob("*.yaml"))
    return sorted(files, key=lambda p: (p.name != DEFAULTS_FILE, p.name))


def resolve_config_path(name: str | os.PathLike[str]) -> Path:
    """A config file from a path or a shipped name (``fewshot`` -> ``benchmarks/configs/fewshot.yaml``).

    Raises:
        ConfigError: no such file; the message lists the shipped configs.
    """
    path = Path(name)
    if path.is_file():
        return path
    folder = config_dir()
    if folder is not None and path.suffix == "" and len(path.parts) == 1:
        shipped = folder / f"{path.name}.yaml"
        if shipped.is_file():
            return shipped
    known = ", ".join(p.stem for p in list_configs()) or "(no shipped configs found)"
    raise ConfigError(f"config {str(name)!r} not found: give a YAML file or a shipped name ({known})")


def _no_alias_loader() -> Any:
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """A safe loader that refuses aliases (``*name``).

        Configs are plain data, and aliases can nest into a document of billions of nodes from a few hundred bytes.
        """

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed in configs")
            return super().compose_node(parent, index)

    return NoAliasLoader


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_no_alias_loader())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_short(str(exc), 300)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; a config is YAML text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values, got {type(data).__name__}")
    return data


def _short(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (config messages stay bounded whatever the value)."""
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} chars)"


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overlay`` onto ``base``: mappings merge recursively, anything else is replaced.

    Args:
        base: the earlier layer.
        overlay: the later layer (wins).

    Returns:
        A new mapping; neither input is changed.
    """
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}``; the value is read as YAML (``[0, 1]``, ``true``).

    Raises:
        ConfigError: no ``=`` or an empty key.
    """
    import yaml

    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {text!r}: write key.path=value, e.g. fewshot.seeds=[0,1]")
    try:
        value = yaml.load(raw, Loader=_no_alias_loader()) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML: {exc}") from None
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def _lookup(data: Any, loc: Sequence[int | str]) -> tuple[bool, Any]:
    for part in loc:
        in_map = isinstance(data, Mapping) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if in_map or in_list:
            data = data[part]
        else:
            return False, None
    return True, data


def _key(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _who_set(layers: Sequence[ConfigLayer], loc: Sequence[int | str]) -> str | None:
    for layer in reversed(layers):
        found, _ = _lookup(layer.data, loc)
        if found:
            return layer.label
    # A list element is set by whoever set the list.
    if loc and isinstance(loc[-1], int):
        return _who_set(layers, loc[:-1])
    return None


def _rule_text(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    replacements = {
        "Input should be greater than or equal to": "must be >=",
        "Input should be greater than": "must be >",
        "Input should be less than or equal to": "must be <=",
        "Input should be less than": "must be <",
        "Input should be": "must be",
        "Extra inputs are not permitted": "unknown key",
        "Field required": "required",
    }
    for old, new in replacements.items():
        if msg.startswith(old):
            return new + msg[len(old) :]
    return msg


def _format_errors(exc: ValidationError, merged: Mapping[str, Any], layers: Sequence[ConfigLayer]) -> str:
    lines = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        ctx = err.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, RuleError):
            key, value, rule = cause.key, cause.value, cause.rule
            where = _who_set(layers, key.split("."))
        else:
            key = _key(loc)
            found, value = _lookup(merged, loc)
            if not found:
                value = "(missing)"
            rule = _rule_text(err["msg"])
            if err["type"] == "extra_forbidden":
                parent = loc[:-1]
                fields = _fields_at(parent)
                rule = f"unknown key; known keys here: {', '.join(fields)}" if fields else "unknown key"
            where = _who_set(layers, loc)
        if value == "(missing)":
            hint = " (an experiment config sets it: sources, cross_origin, fewshot, similarity, perf)"
            lines.append(f"{key} is missing: {rule}{hint if key == 'experiment' else ''}")
            continue
        shown = _short(json.dumps(value, default=str) if not isinstance(value, str) else repr(value), 200)
        origin = f" (set in {where})" if where else ""
        lines.append(f"{key} = {shown}{origin}: {rule}")
    return "invalid benchmark config:\n  " + "\n  ".join(lines)


def _fields_at(loc: Sequence[int | str]) -> list[str]:
    model: Any = Config
    for part in loc:
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        model = info.annotation
    fields = getattr(model, "model_fields", None)
    return sorted(fields) if fields else []


def _check_train(config: Config, layers: Sequence[ConfigLayer]) -> None:
    """Validate the training options against tpv.engine.TrainConfig (its errors name the rule)."""
    from dataclasses import fields, is_dataclass

    from tpv.engine.config import TrainConfig

    known = {f.name for f in fields(TrainConfig)} if is_dataclass(TrainConfig) else set()
    for section, options in (("train", config.train), ("fewshot.train", config.fewshot.train)):
        if known:
            for key, value in options.items():
                if key not in known:
                    where = _who_set(layers, [*section.split("."), key])
                    raise ConfigError(
                        f"invalid benchmark config:\n  {section}.{key} = {json.dumps(value, default=str)}"
                        f"{f' (set in {where})' if where else ''}: unknown TrainConfig option; known options: "
                        f"{', '.join(sorted(known))}"
                    )
    for section, options in (("train", config.train_options()), ("fewshot.train", config.train_options(fewshot=True))):
        try:
            TrainConfig(**options)
        except ConfigError as exc:
            raise ConfigError(f"invalid benchmark config:\n  {section}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid benchmark config:\n  {section}: {exc}") from None


def validate(layers: Sequence[ConfigLayer], *, check_train: bool = True) -> Config:
    """Merge layers in order and validate the result.

    Args:
        layers: config layers, earliest first.
        check_train: also validate the training options against ``tpv.engine.TrainConfig``.

    Returns:
        The validated config.

    Raises:
        ConfigError: every broken rule, one line each, naming the key, the value, the file that set it and the rule.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer.data)
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, merged, layers)) from None
    if check_train:
        _check_train(config, layers)
    return config


def load_config(
    *sources: str | os.PathLike[str] | Mapping[str, Any],
    overrides: Sequence[str] = (),
    defaults: bool = True,
    check_train: bool = True,
) -> tuple[Config, list[ConfigLayer]]:
    """Read, merge and validate a config chain.

    Args:
        *sources: config files or shipped names (``fewshot``), or mappings (for tests), earliest first.
        overrides: ``key.path=value`` strings applied last.
        defaults: start from the shipped ``defaults.yaml`` (when found).
        check_train: also validate the training options against ``tpv.engine.TrainConfig``.

    Returns:
        ``(config, layers)``: the validated config and the layers it was made of (for provenance).

    Raises:
        ConfigError: a file is missing or not YAML, or a rule is broken (see :func:`validate`).
    """
    layers: list[ConfigLayer] = []
    folder = config_dir()
    if defaults and folder is not None and (folder / DEFAULTS_FILE).is_file():
        layers.append(ConfigLayer(DEFAULTS_FILE, _read_yaml(folder / DEFAULTS_FILE)))
    for src in sources:
        if isinstance(src, Mapping):
            layers.append(ConfigLayer("(mapping)", src))
            continue
        path = resolve_config_path(src)
        if (
            layers
            and layers[0].label == DEFAULTS_FILE
            and folder is not None
            and path.resolve() == (folder / DEFAULTS_FILE).resolve()
        ):
            continue
        layers.append(ConfigLayer(path.name, _read_yaml(path)))
    for text in overrides:
        layers.append(ConfigLayer("--set", parse_override(text)))
    if not any("name" in layer.data for layer in layers):
        stems = [Path(layer.label).stem for layer in layers if layer.label.endswith((".yaml", ".yml"))]
        stems = [s for s in stems if s != Path(DEFAULTS_FILE).stem]
        if stems:
            layers.insert(len(layers) - len(overrides), ConfigLayer("(name from files)", {"name": "-".join(stems)}))
    return validate(layers, check_train=check_train), layers


def dump_config(config: Config, layers: Sequence[ConfigLayer] = ()) -> str:
    """The resolved config as YAML, headed by a comment naming the layers it was merged from."""
    import yaml

    head = "# resolved tpv bench config"
    if layers:
        head += "; merged from: " + " <- ".join(layer.label for layer in layers)
    body = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None, width=120)
    return f"{head}\n{body}"
