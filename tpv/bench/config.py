"""Benchmark configs: a defaults file plus per-experiment overlays, deep-merged, validated, written beside results.

A config is a chain of YAML files. The shipped ``defaults.yaml`` comes first, then each file given, in order;
later files override earlier ones key by key (mappings merge recursively, lists and scalars are replaced), and
``--set key.path=value`` overrides come last::

    defaults.yaml  <-  fewshot.yaml  <-  gpu.yaml  <-  --set fewshot.seeds=[0,1]

The merged mapping is validated by pydantic models (unknown keys are refused); any broken rule becomes one
:class:`~tpv.errors.ConfigError` that names the key, the value, the file that set it and the rule, e.g.
``fewshot.shots[2] = -5 (set in fewshot.yaml): must be >= 0``. The resolved config (every value, defaults
included) is written as ``config.yaml`` beside every result, so a result always says exactly how it was made.

Shipped configs live in ``benchmarks/configs/`` of the repository (override with ``$TPV_BENCH_CONFIGS``); a
name without a suffix (``fewshot``) is looked up there, anything else is a path.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tpv.errors import ConfigError

__all__ = [
    "CONFIGS_ENV",
    "Config",
    "ConfigLayer",
    "ExperimentName",
    "InitName",
    "config_dir",
    "deep_merge",
    "dump_config",
    "list_configs",
    "load_config",
    "parse_override",
    "resolve_config_path",
]

CONFIGS_ENV = "TPV_BENCH_CONFIGS"
DEFAULTS_FILE = "defaults.yaml"

ExperimentName = Literal["sources", "cross_origin", "fewshot", "similarity", "perf", "calibration"]
"""The experiments a config can run (see :mod:`tpv.bench.experiments`)."""

InitName = Literal["random", "spot_best", "spot_multi", "tpv", "tpv_best"]
"""Few-shot initializations: the random origin; the best single source prompt (SPoT); the multi-task mixture
prompt (SPoT multi); the paper's TPV combination ``origin + tau_A + tau_B``; tpv's best (searched coefficients or
a merge method, chosen on the target's validation examples)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ModelSection(_Section):
    """The model prompts are tuned on."""

    name: str = Field(
        "smollm2-135m", description="tpv model name (smollm2-135m, gemma3-270m, minilm-l6), local folder or hub id."
    )
    task_type: Literal["causal-lm", "seq2seq", "seq-cls"] = Field("causal-lm", description="How the model is loaded.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Parameter dtype.")
    device: str = Field("cpu", description="cpu, cuda, cuda:N, mps or auto.")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value in ("cpu", "cuda", "mps", "auto") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("must be cpu, cuda, cuda:N, mps or auto")


class PromptSection(_Section):
    """The soft prompts and the origins they are tuned from."""

    num_virtual_tokens: int = Field(50, ge=1, description="Virtual tokens per prompt.")
    init: Literal["first-n-vocab", "sample-vocab", "gaussian"] = Field(
        "first-n-vocab", description="How an origin is drawn (tpv.adapters.make_origin)."
    )
    init_params: dict[str, float | int | str] = Field(
        default_factory=dict, description="Extra arguments of the init, e.g. {n: 5000} for first-n-vocab."
    )
    origins: list[int] = Field([0, 1, 2], min_length=1, description="Origin seeds: one random init per seed.")

    @field_validator("origins")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("origin seeds must be distinct")
        if any(v < 0 for v in value):
            raise ValueError("origin seeds must be >= 0")
        return value


class DataSection(_Section):
    """How much of each task is used (the CPU budget is spent here)."""

    max_train: int | None = Field(2000, ge=1, description="Cap on training examples of a source task (null: all).")
    max_validation: int = Field(100, ge=1, description="Validation examples (model selection, init selection).")
    max_test: int = Field(200, ge=1, description="Test examples scored for every reported number.")
    seed: int = Field(0, ge=0, description="Seed of the task splits and the caps.")


class TasksSection(_Section):
    """Which tasks: offline groups (each names its sources and targets) or explicit lists."""

    groups: list[str] = Field(
        default_factory=lambda: ["offline-sentiment"], description="Task groups whose sources and targets are used."
    )
    sources: list[str] | None = Field(None, description="Source tasks (default: the groups' sources).")
    targets: list[str] | None = Field(None, description="Target tasks (default: the groups' targets).")

    @model_validator(mode="after")
    def _some(self) -> TasksSection:
        if not self.groups and not self.sources:
            raise ValueError("give at least one group or a list of sources")
        return self


class FewShotSection(_Section):
    """Few-shot initialization (the paper's Table 2 and few-shot curves)."""

    shots: list[int] = Field([0, 5, 10, 25, 50, 100], min_length=1, description="Examples per class.")
    seeds: list[int] = Field(
        [0, 1, 2], min_length=1, description="Seeds: seed s uses origin s and few-shot draw s (each must be an origin)."
    )
    inits: list[InitName] = Field(
        ["random", "spot_best", "spot_multi", "tpv", "tpv_best"], min_length=1, description="Initializations compared."
    )
    search: Literal["scalar", "per_task"] = Field(
        "per_task", description="tpv_best coefficient search: one lambda, or one per source vector (coordinate)."
    )
    grid: list[float] = Field(
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5], min_length=1, description="Coefficient values tried by the search."
    )
    merge_methods: list[str] = Field(
        ["ties", "mean"], description="Merge methods (tpv.merge) also tried by tpv_best; [] for none."
    )
    selection_examples: int = Field(
        64, ge=1, description="Target validation examples that choose spot_best and tpv_best."
    )
    compare: list[InitName] = Field(
        ["tpv", "tpv_best"], description="Inits tested against the best SPoT (Welch t-test, Bonferroni)."
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the train section for few-shot training."
    )
    use_validation: bool = Field(
        False,
        description="Score target validation examples while few-shot training and keep the best prompt (else the "
        "last): off by default, so a k-shot run sees k examples per class and nothing else.",
    )

    @field_validator("shots")
    @classmethod
    def _shots(cls, value: list[int]) -> list[int]:
        if any(v < 0 for v in value):
            raise ValueError("shots must be >= 0")
        if len(set(value)) != len(value):
            raise ValueError("shots must be distinct")
        return sorted(value)

    @field_validator("merge_methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        from tpv.merge import MERGE_METHODS

        bad = [m for m in value if m not in MERGE_METHODS or m == "per_token"]
        if bad:
            known = ", ".join(m for m in MERGE_METHODS if m != "per_token")
            raise ValueError(f"unknown merge method(s) {bad}; use {known}")
        return value


class CrossOriginSection(_Section):
    """Cross-origin transfer (the paper's Table 1)."""

    tasks: list[str] | None = Field(None, description="Tasks whose vectors are moved (default: the sources).")


class SimilaritySection(_Section):
    """Cosine-similarity heatmaps (the paper's Figure 2)."""

    prompts: bool = Field(True, description="Also compare the tuned prompts (not only the vectors).")
    include_mixture: bool = Field(False, description="Add the multi-task mixture prompts' vectors.")


class PerfSection(_Section):
    """Speed benchmarks gathered into one table."""

    benchmarks: list[str] = Field(
        ["engine", "search"],
        min_length=1,
        description="Scripts to run: NAME runs SCRIPTS_DIR/bench_NAME.py --out STEM [args].",
    )
    scripts_dir: str | None = Field(None, description="Folder of the scripts (default: the repository's benchmarks/).")
    args: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra command-line arguments per benchmark, e.g. {engine: [--steps, '5']}."
    )
    timeout_s: int = Field(3600, ge=1, description="Time limit of one benchmark script.")
    gather: bool = Field(
        False,
        description="Read each benchmark's JSON from results_files (written by an earlier run of its script, e.g. on "
        "a quieter machine) instead of running the script.",
    )
    results_files: dict[str, str] = Field(
        default_factory=lambda: {
            "engine": "benchmarks/results/engine.json",
            "search": "benchmarks/results/search_batched.json",
        },
        description="gather: the JSON file of each benchmark (relative to the repository root).",
    )
    estimate_s: dict[str, float] = Field(
        default_factory=lambda: {"engine": 600.0, "search": 600.0}, description="Expected seconds per benchmark."
    )

    @field_validator("benchmarks")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        import re

        bad = [v for v in value if not re.fullmatch(r"[a-z][a-z0-9_]*", v)]
        if bad:
            raise ValueError(f"benchmark names are lowercase words (bench_NAME.py); got {bad}")
        return value


CalibrationPart = Literal["untuned", "sweep", "default", "lora", "variants"]


class CalibrationVariant(_Section):
    """One setting of the calibration study: training options and prompt options changed from the base."""

    train: dict[str, Any] = Field(default_factory=dict, description="tpv.engine.TrainConfig fields changed.")
    prompt: dict[str, Any] = Field(
        default_factory=dict, description="Origin options changed: init (first-n-vocab, ...), init_params."
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(value) - {"init", "init_params"})
        if bad:
            raise ValueError(f"prompt options of a variant are init and init_params; got {bad}")
        return value


class CalibrationSection(_Section):
    """The prompt-tuning calibration study: learning-rate sweep, defaults over seeds, variants, references."""

    tasks: list[str] = Field(
        default_factory=lambda: ["rotten_tomatoes", "rotten_tomatoes_ab", "vader_words", "wordnet_noun_supersense"],
        min_length=1,
        description="Source tasks measured (at least one whose label words the model does not tie to the classes).",
    )
    parts: list[CalibrationPart] = Field(
        default_factory=lambda: list(get_args(CalibrationPart)),
        min_length=1,
        description="Which cells to plan: untuned origins, the lr sweep, the defaults over seeds, the LoRA "
        "reference, the variants.",
    )
    lrs: list[float] = Field(
        default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3],
        min_length=1,
        description="The learning-rate sweep (AdamW unless train.optimizer says otherwise).",
    )
    sweep_tasks: list[str] | None = Field(None, description="Tasks of the sweep (default: all tasks).")
    sweep_seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="Origin seeds of the sweep.")
    variants: dict[str, CalibrationVariant] = Field(
        default_factory=dict, description="Named settings run at sweep_seeds on variant_tasks (one factor each)."
    )
    variant_tasks: list[str] | None = Field(None, description="Tasks of the variants (default: all tasks).")
    lora: dict[str, Any] = Field(
        default_factory=lambda: {"r": 8, "alpha": 16, "lr": 0.001},
        description="The LoRA reference: r, alpha, lr (on q/k/v/o projections), same data, steps and scoring.",
    )


class StatsSection(_Section):
    """Statistics of the comparisons."""

    alpha: float = Field(0.05, gt=0, lt=1, description="Family-wise significance level (Bonferroni).")


class RuntimeSection(_Section):
    """Measured speeds that turn a plan into a time estimate (dry runs, the ETA)."""

    seconds_per_step: float = Field(2.4, gt=0, description="Seconds per training step.")
    eval_examples_per_second: float = Field(6.6, gt=0, description="Examples scored per second.")
    model_load_seconds: float = Field(1.0, ge=0, description="Seconds to load the model once per cell.")
    threads: int | None = Field(None, ge=1, description="torch threads per cell (null: torch's default).")


class Config(_Section):
    """A benchmark run: one experiment and every setting it uses."""

    name: str = Field(
        "bench",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Names the report folder; default: the config files' names joined by '-' (fewshot-gpu).",
    )
    description: str = Field("", description="One sentence: what this config measures.")
    experiment: ExperimentName = Field(description="Which experiment runs; set by an experiment config.")
    model: ModelSection = Field(default_factory=ModelSection)  # type: ignore[arg-type]
    prompt: PromptSection = Field(default_factory=PromptSection)  # type: ignore[arg-type]
    data: DataSection = Field(default_factory=DataSection)  # type: ignore[arg-type]
    tasks: TasksSection = Field(default_factory=TasksSection)  # type: ignore[arg-type]
    train: dict[str, Any] = Field(default_factory=dict, description="tpv.engine.TrainConfig fields.")
    fewshot: FewShotSection = Field(default_factory=FewShotSection)  # type: ignore[arg-type]
    cross_origin: CrossOriginSection = Field(default_factory=CrossOriginSection)  # type: ignore[arg-type]
    similarity: SimilaritySection = Field(default_factory=SimilaritySection)  # type: ignore[arg-type]
    perf: PerfSection = Field(default_factory=PerfSection)  # type: ignore[arg-type]
    calibration: CalibrationSection = Field(default_factory=CalibrationSection)  # type: ignore[arg-type]
    stats: StatsSection = Field(default_factory=StatsSection)  # type: ignore[arg-type]
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.experiment == "cross_origin" and len(self.prompt.origins) < 2:
            raise _RuleError("prompt.origins", self.prompt.origins, "cross_origin needs at least 2 origins")
        if self.experiment == "fewshot":
            missing = [s for s in self.fewshot.seeds if s not in self.prompt.origins]
            if missing:
                raise _RuleError(
                    "fewshot.seeds",
                    self.fewshot.seeds,
                    f"every few-shot seed must be an origin seed (prompt.origins = {self.prompt.origins}); "
                    f"{missing} are not",
                )
            stray = [c for c in self.fewshot.compare if c not in self.fewshot.inits]
            if stray:
                raise _RuleError("fewshot.compare", self.fewshot.compare, f"{stray} are not in fewshot.inits")
        return self

    def train_options(self, *, fewshot: bool = False) -> dict[str, Any]:
        """The training options of a cell: ``train``, overlaid with ``fewshot.train`` for few-shot cells."""
        out = dict(self.train)
        if fewshot:
            out.update(self.fewshot.train)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON-ready data."""
        return self.model_dump(mode="json")


class _RuleError(ValueError):
    """A cross-field rule broken inside a model validator (carries the key it is about)."""

    def __init__(self, key: str, value: object, rule: str) -> None:
        super().__init__(rule)
        self.key = key
        self.value = value
        self.rule = rule


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
        if isinstance(cause, _RuleError):
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
