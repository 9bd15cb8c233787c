"""The benchmark config's schema: its sections as pydantic models, their rules and the cross-field checks.

:class:`Config` is what :func:`tpv.bench.config.load_config` returns, after merging the YAML layers; a broken
rule is turned into one :class:`~tpv.errors.ConfigError` line there (key, value, file, rule). Every name here is
also importable from :mod:`tpv.bench.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

__all__ = [
    "CalibrationPart",
    "CalibrationSection",
    "CalibrationVariant",
    "Config",
    "CrossOriginSection",
    "DataSection",
    "ExperimentName",
    "FewShotInit",
    "FewShotSection",
    "ModelSection",
    "PerfSection",
    "PromptSection",
    "RuleError",
    "RuntimeSection",
    "SimilaritySection",
    "StatsSection",
    "TasksSection",
    "TransferMethod",
    "TransferSearchSection",
    "TransferSection",
    "ZeroShotSection",
]

ExperimentName = Literal["sources", "cross_origin", "fewshot", "similarity", "perf", "calibration", "tasks", "transfer"]
"""The experiments a config can run (see :mod:`tpv.bench.experiments`)."""

FewShotInit = Literal["random", "spot_best", "spot_multi", "tpv", "tpv_best"]
"""Few-shot initializations: the random origin; the best single source prompt (SPoT); the multi-task mixture
prompt (SPoT multi); the paper's TPV combination ``origin + tau_A + tau_B``; tpv's best (searched coefficients or
a merge method, chosen on the target's validation examples). (Not :data:`tpv.engine.config.InitName`, the ways
an origin is drawn.)"""


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
    min_test: int | None = Field(
        None,
        ge=1,
        description="Where a task's test split is smaller, top it up to this many with training examples (the "
        "last ones of the seeded shuffle, taken out of training), so small tasks still get a test set of this size; "
        "null: the splits as they are.",
    )
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
    inits: list[FewShotInit] = Field(
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
    compare: list[FewShotInit] = Field(
        ["tpv", "tpv_best"], description="Inits tested against the best SPoT (Welch t-test, Bonferroni)."
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the train section for few-shot training."
    )
    baselines: list[Literal["best_spot", "random"]] = Field(
        ["best_spot"],
        description="What each init of compare is tested against (Welch, Bonferroni over the whole family): the "
        "best SPoT at that target and shot count, and/or the random origin.",
    )
    use_validation: bool = Field(
        False,
        description="Score target validation examples while few-shot training and keep the best prompt (else the "
        "last): off by default, so a k-shot run sees k examples per class and nothing else.",
    )
    selection: Literal["validation", "shots"] = Field(
        "validation",
        description="What chooses spot_best and tpv_best: 'validation' (the first selection_examples target "
        "validation examples, one choice per seed) or 'shots' (only the k training shots of each shot count, at "
        "most selection_examples of them, one choice per seed and k; at k = 0, where there is nothing to choose on, "
        "spot_best is the target's first source and tpv_best is zero_shot_combination).",
    )
    zero_shot_combination: str = Field(
        "norm_sum",
        description="selection 'shots': tpv_best at k = 0, 'tpv' (the sum) or a merge method of the sources' "
        "vectors (norm_sum: the sum at their mean norm; mean; ...).",
    )
    epochs: float | None = Field(
        None,
        gt=0,
        description="The few-shot budget rule: steps = ceil(epochs * shots per class * classes / batch_size), "
        "clipped to [min_steps, max_steps], the same for every init; None: fewshot.train's (or train's) steps.",
    )
    min_steps: int = Field(20, ge=1, description="The budget rule's fewest steps.")
    max_steps: int = Field(200, ge=1, description="The budget rule's most steps.")
    dtvg_warmup_steps: int = Field(
        0,
        ge=0,
        description="selection 'shots', k > 0: tpv_best also tries DTVG-style grouping. A prompt is tuned from the "
        "origin on the k shots for this many steps; its vector is the target vector that "
        "tpv.select.select_sources(method='dtvg') groups the sources by; the candidate is origin + the group's sum. "
        "0: off.",
    )

    @field_validator("shots")
    @classmethod
    def _shots(cls, value: list[int]) -> list[int]:
        if any(v < 0 for v in value):
            raise ValueError("shots must be >= 0")
        if len(set(value)) != len(value):
            raise ValueError("shots must be distinct")
        return sorted(value)

    @field_validator("zero_shot_combination")
    @classmethod
    def _zero_shot(cls, value: str) -> str:
        from tpv.merge import MERGE_METHODS

        if value != "tpv" and (value not in MERGE_METHODS or value == "per_token"):
            known = ", ".join(m for m in MERGE_METHODS if m != "per_token")
            raise ValueError(f"unknown combination {value!r}; use tpv or a merge method: {known}")
        return value

    @model_validator(mode="after")
    def _budget(self) -> FewShotSection:
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) must be <= max_steps ({self.max_steps})")
        if self.dtvg_warmup_steps and self.selection != "shots":
            raise ValueError(
                f"dtvg_warmup_steps ({self.dtvg_warmup_steps}) warms a prompt up on the k shots, so it needs "
                "selection: shots (it is 'validation'); set fewshot.selection=shots or dtvg_warmup_steps=0"
            )
        return self

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
    """Cosine-similarity heatmaps (the paper's Figure 2): nothing to set (vectors and prompts are both compared).

    The keys ``prompts`` and ``include_mixture`` of earlier versions, never used, are still accepted and dropped,
    so the resolved ``config.yaml`` written beside older results still loads.
    """

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if k not in _LEGACY_SIMILARITY_KEYS}
        return data


_LEGACY_SIMILARITY_KEYS = ("prompts", "include_mixture")


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


CalibrationPart = Literal["untuned", "sweep", "default", "lora", "variants", "steps"]


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
    step_budgets: list[PositiveInt] = Field(
        default_factory=list,
        description="The steps study: the defaults trained for each of these step budgets (the schedule spans the "
        "budget), at sweep_seeds on budget_tasks; with the default budget (train.steps) they show convergence.",
    )
    budget_tasks: list[str] | None = Field(None, description="Tasks of the steps study (default: all tasks).")
    lora: dict[str, Any] = Field(
        default_factory=lambda: {"r": 8, "alpha": 16, "lr": 0.001},
        description="The LoRA reference: r, alpha, lr (on q/k/v/o projections), same data, steps and scoring.",
    )


class ZeroShotSection(_Section):
    """Experiment ``tasks``: each task's tuned prompt beside its zero-shot (untuned) prompt."""

    tasks: list[str] | None = Field(None, description="Tasks measured (default: every offline task of tpv.tasks).")
    instructions: bool = Field(
        True,
        description="Also the manual-instruction arm: the task's instruction as a text-init prompt, scored untuned "
        "(zero-shot) and tuned from there.",
    )
    instruction_train: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the train section for the instruction arm's tuning."
    )


TransferMethod = Literal[
    "random",
    "manual",
    "relative",
    "relative_labels",
    "relative_multi",
    "relative_no_target_data",
    "linear",
    "procrustes",
    "fuse",
    "tuned",
]
"""What the target is scored with: a random target prompt, the instruction's embeddings, the source prompt moved
by PTfer's relative search (with target validation data, with label-word anchors weighted, with two sources,
without target data), by least-squares or Procrustes maps on the anchors, by a FUSE map, or a prompt tuned on the
target itself."""


class TransferSearchSection(_Section):
    """The relative (PTfer) target search: :class:`tpv.transfer.SearchConfig` fields."""

    steps: int = Field(600, ge=1, description="Adam steps on the candidate.")
    lr: float = Field(0.005, gt=0, description="Adam learning rate.")
    eval_every: int = Field(150, ge=1, description="Score the candidate on target validation every N steps.")
    norm: Literal["standardize", "source-ratio"] = Field("standardize", description="How rows get their size.")
    top_k: int | None = Field(None, ge=1, description="Match only each row's k largest similarities (null: all).")
    projection: str = Field("cosine", description="Relative projection (tpv.transfer.PROJECTIONS).")


class TransferSection(_Section):
    """Experiment ``transfer``: zero-shot cross-model prompt transfer (source model -> target model)."""

    directions: list[tuple[str, str]] = Field(
        default_factory=lambda: [("smollm2-135m", "gemma3-270m"), ("gemma3-270m", "smollm2-135m")],
        min_length=1,
        description="(source model, target model) pairs: tpv model names or folders.",
    )
    tasks: list[str] = Field(
        default_factory=lambda: ["rotten_tomatoes", "imdb_reviews"], min_length=1, description="Tasks measured."
    )
    methods: list[TransferMethod] = Field(
        default_factory=lambda: list(get_args(TransferMethod)), min_length=1, description="Columns measured."
    )
    init: Literal["text", "first-n-vocab"] = Field(
        "text",
        description="Init of the first seed's tunings: the instruction's embeddings (text) or first-n-vocab; the "
        "other seeds (extra sources of relative_multi) always start from first-n-vocab.",
    )
    instruction: str = Field(
        "Classify the sentiment of this movie review as positive or negative.",
        min_length=1,
        description="The manual prompt (method manual) and the text init.",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1], min_length=1, description="Tuning seeds: the first is the source prompt."
    )
    search: TransferSearchSection = Field(default_factory=TransferSearchSection)  # type: ignore[arg-type]
    label_weight: float = Field(1500.0, gt=0, description="Weight of the label words among the anchors.")
    recipes: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per model name: overrides of the train section for its tunings."
    )
    fuse: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of tpv.fuse.fit (method fuse).")

    @field_validator("directions")
    @classmethod
    def _pairs(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if any(s == t for s, t in value):
            raise ValueError("a direction needs two different models")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or any(v < 0 for v in value):
            raise ValueError("seeds must be distinct and >= 0")
        return value

    @model_validator(mode="after")
    def _multi(self) -> TransferSection:
        if "relative_multi" in self.methods and len(self.seeds) < 2:
            raise ValueError("relative_multi needs at least 2 seeds (the extra sources)")
        return self


class StatsSection(_Section):
    """Statistics of the comparisons."""

    alpha: float = Field(0.05, gt=0, lt=1, description="Family-wise significance level (Bonferroni).")


class RuntimeSection(_Section):
    """How cells run: measured speeds that turn a plan into a time estimate (dry runs, the ETA), threads, packing."""

    seconds_per_step: float = Field(2.4, gt=0, description="Seconds per training step.")
    eval_examples_per_second: float = Field(6.6, gt=0, description="Examples scored per second.")
    model_load_seconds: float = Field(1.0, ge=0, description="Seconds to load the model once per cell.")
    threads: int | None = Field(None, ge=1, description="torch threads per cell (null: torch's default).")
    pack: int = Field(
        1,
        description="Most cells of one kind and model trained together over one loaded model (one tpv.train_many "
        "pack, one Ray task); 1: no packing. Cell ids and stored files do not change; results equal an unpacked "
        "run's up to float rounding. Pays on a GPU; on a CPU packing is rarely faster (docs/many.md).",
    )

    @field_validator("pack", mode="before")
    @classmethod
    def _pack(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                "must be a whole number >= 1: the most cells of one kind and model trained together (1: no packing)"
            )
        return value


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
    zeroshot: ZeroShotSection = Field(default_factory=ZeroShotSection)  # type: ignore[arg-type]
    transfer: TransferSection = Field(default_factory=TransferSection)  # type: ignore[arg-type]
    stats: StatsSection = Field(default_factory=StatsSection)  # type: ignore[arg-type]
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.experiment == "cross_origin" and len(self.prompt.origins) < 2:
            raise RuleError("prompt.origins", self.prompt.origins, "cross_origin needs at least 2 origins")
        if self.experiment == "fewshot":
            missing = [s for s in self.fewshot.seeds if s not in self.prompt.origins]
            if missing:
                raise RuleError(
                    "fewshot.seeds",
                    self.fewshot.seeds,
                    f"every few-shot seed must be an origin seed (prompt.origins = {self.prompt.origins}); "
                    f"{missing} are not",
                )
            stray = [c for c in self.fewshot.compare if c not in self.fewshot.inits]
            if stray:
                raise RuleError("fewshot.compare", self.fewshot.compare, f"{stray} are not in fewshot.inits")
        return self

    def train_options(self, *, fewshot: bool = False) -> dict[str, Any]:
        """The training options of a cell: ``train``, overlaid with ``fewshot.train`` for few-shot cells."""
        out = dict(self.train)
        if fewshot:
            out.update(self.fewshot.train)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON-ready data.

        The sections of the ``tasks`` and ``transfer`` experiments appear only in their own experiment's config,
        ``runtime.pack`` only when it packs (> 1) and the keys added later only when they are set, so the configs
        recorded beside earlier results stay as they were.
        """
        out = self.model_dump(mode="json")
        for section, experiment in _OWN_SECTIONS.items():
            if self.experiment != experiment:
                out.pop(section, None)
        if self.runtime.pack == 1:
            out["runtime"].pop("pack", None)
        for section, keys in _LATER_KEYS.items():
            for key, default in keys.items():
                if out[section].get(key) == default:
                    out[section].pop(key)
        return out


_LATER_KEYS: dict[str, dict[str, Any]] = {
    "fewshot": {
        "baselines": ["best_spot"],
        "selection": "validation",
        "zero_shot_combination": "norm_sum",
        "epochs": None,
        "min_steps": 20,
        "max_steps": 200,
        "dtvg_warmup_steps": 0,
    },
    "data": {"min_test": None},
}
"""Keys added after results were recorded (section -> key -> default): written into the resolved config only when
they differ from these defaults (which reproduce the earlier behaviour)."""

_OWN_SECTIONS = {"zeroshot": "tasks", "transfer": "transfer"}
"""Sections written into the resolved config only when their experiment runs (section -> experiment)."""


class RuleError(ValueError):
    """A cross-field rule broken inside a model validator (carries the key it is about; internal)."""

    def __init__(self, key: str, value: object, rule: str) -> None:
        super().__init__(rule)
        self.key = key
        self.value = value
        self.rule = rule
