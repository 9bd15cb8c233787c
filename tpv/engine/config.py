"""The training configuration: one frozen dataclass, every field documented and validated.

Like PEFT's configs, each field carries its help text in ``metadata["help"]`` (the CLI and the docs read it), and a
bad value raises :class:`~tpv.errors.ConfigError` naming the option, the value and the rule it broke.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from tpv.errors import ConfigError

__all__ = [
    "AUTO_LR",
    "DeviceName",
    "InitName",
    "LossName",
    "LrRule",
    "OptimizerName",
    "Precision",
    "ScheduleName",
    "TrainConfig",
]

Precision = Literal["auto", "fp32", "bf16"]
DeviceName = Literal["auto", "cpu", "cuda"]
OptimizerName = Literal["adamw", "adafactor", "sgd"]
ScheduleName = Literal["linear", "constant", "cosine"]
LossName = Literal["label-words", "full-vocab"]
InitName = Literal["first-n-vocab", "sample-vocab", "gaussian", "text"]
LrRule = Literal["auto", "range-test"]

AUTO_LR: dict[str, float] = {"adamw": 0.1, "adafactor": 0.1, "sgd": 0.1}
"""``lr="auto"``, per optimizer. AdamW and SGD: the peak learning rate is this factor times the RMS of the model's
input embeddings (:func:`tpv.engine.lr.embedding_scale`), since an AdamW step moves every coordinate by about
``lr`` whatever the gradient's size, and a clipped SGD step by at most ``lr`` in norm. Adafactor (torch's) already
scales its step by the parameter's RMS, so its factor is the learning rate itself. Chosen by the calibration study
(``tpv bench run calibration``; ``docs/training.md``, "Choosing hyperparameters") for AdamW and Adafactor; the SGD
entry is **not** calibrated: measured on SmolLM2, SGD at ``lr="auto"`` stays at chance (the guard warns), so give
SGD a rate or use ``lr="range-test"``."""

DEFAULT_VIRTUAL_TOKENS = 50


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and switches of one prompt-tuning run (see ``docs/training.md``).

    Every field is validated when the config is made; ``TrainConfig(lr=-1)`` raises
    ``ConfigError("TrainConfig.lr=-1: must be a positive number")``. :meth:`to_dict` gives the JSON written to
    ``run.json``; :meth:`from_dict` reads it back.
    """

    steps: int = field(
        default=200, metadata=_help("Optimizer steps to run (each over batch_size x grad_accum examples).")
    )
    batch_size: int = field(default=8, metadata=_help("Training examples per forward pass (per process)."))
    grad_accum: int = field(
        default=1, metadata=_help("Forward/backward passes whose gradients are summed before one optimizer step.")
    )
    lr: float | LrRule = field(
        default="auto",
        metadata=_help(
            "Peak learning rate: a number, 'auto' (AUTO_LR[optimizer] x the RMS of the model's input embeddings, "
            "so the step fits the model's embedding scale: 0.0136 on SmolLM2-135M, 0.103 on Gemma-3-270M with AdamW) "
            "or 'range-test' (a short learning-rate range test on the training data before the run). The resolved "
            "value is recorded in run.json. The literature's 0.3 (Lester et al.) is Adafactor's relative step; with "
            "AdamW on SmolLM2 it blows the prompt up to ~14x its origin's norm."
        ),
    )
    optimizer: OptimizerName = field(
        default="adamw",
        metadata=_help("'adamw' (the paper's), 'adafactor' (Lester et al.'s) or 'sgd'; only the prompt is optimized."),
    )
    weight_decay: float = field(default=1e-5, metadata=_help("Decoupled weight decay of the prompt (AdamW/Adafactor)."))
    warmup: int = field(default=0, metadata=_help("Steps of linear learning-rate warmup from 0 to lr."))
    schedule: ScheduleName = field(
        default="linear", metadata=_help("Learning rate after warmup: 'linear' decay to 0, 'cosine' to 0, 'constant'.")
    )
    max_grad_norm: float | None = field(
        default=1.0, metadata=_help("Clip the gradient's global norm to this value; None turns clipping off.")
    )
    eval_every: int = field(
        default=50,
        metadata=_help(
            "Score the validation set every this many steps (and after the last) and keep the best prompt; "
            "0 scores only after the last step."
        ),
    )
    eval_examples: int | None = field(
        default=200,
        metadata=_help("Validation examples scored at each evaluation (the first N, fixed); None scores them all."),
    )
    eval_batch_size: int = field(default=32, metadata=_help("Examples per forward pass when scoring."))
    patience: int | None = field(
        default=None,
        metadata=_help("Early stopping: stop after this many evaluations without improvement; None never stops."),
    )
    save_every: int | None = field(
        default=None,
        metadata=_help(
            "Write a resumable checkpoint into out_dir every this many steps; None uses eval_every (or 50), "
            "0 never checkpoints."
        ),
    )
    seed: int = field(default=0, metadata=_help("Seed of the data order and of dropout (the origin has its own)."))
    precision: Precision = field(
        default="auto",
        metadata=_help(
            "'fp32', 'bf16' (autocast; the prompt and the optimizer stay float32) or 'auto': bf16 where the "
            "hardware runs it natively (CUDA with bf16, CPUs with AVX512-BF16/AMX), else fp32."
        ),
    )
    device: DeviceName = field(default="auto", metadata=_help("'cpu', 'cuda' or 'auto' (CUDA when available)."))
    max_length: int = field(
        default=256,
        metadata=_help(
            "Most input tokens per example, virtual tokens not counted; longer inputs lose their middle, so the "
            "instruction at the start and the answer cue at the end are kept."
        ),
    )
    num_virtual_tokens: int | None = field(
        default=None,
        metadata=_help(
            f"Soft prompt length of a new origin (None: {DEFAULT_VIRTUAL_TOKENS}); with an init given, None takes "
            "its length and any other value must match it."
        ),
    )
    init: InitName = field(
        default="first-n-vocab",
        metadata=_help(
            "How a new origin is drawn when no init is given: 'first-n-vocab' (the paper's), 'sample-vocab', "
            "'gaussian' or 'text' (needs init_text)."
        ),
    )
    init_text: str | None = field(default=None, metadata=_help("The text of a 'text' init."))
    origin_seed: int = field(
        default=0,
        metadata=_help("Seed of a new origin; keep it fixed across tasks so their vectors share one origin."),
    )
    loss: LossName = field(
        default="full-vocab",
        metadata=_help(
            "'full-vocab': cross-entropy over the whole vocabulary at the answer position (target: the label word's "
            "first token); 'label-words': cross-entropy over the label words' first tokens only (what rank "
            "classification scores). Measured on SmolLM2 / Rotten Tomatoes, 20 steps from a first-n-vocab origin: "
            "full-vocab 0.75 validation accuracy, label-words 0.52 (benchmarks/results/engine.md). Sequence "
            "classification always uses the head's cross-entropy."
        ),
    )
    group_by_length: bool = field(
        default=True,
        metadata=_help("Batch examples of similar length together (less padding); batch order stays random."),
    )
    train_head: bool = field(
        default=True,
        metadata=_help(
            "Sequence classification only: train PEFT's copy of the classifier head with the prompt (PEFT's "
            "default; a freshly initialized head is random). The head is saved beside the vector, not in it."
        ),
    )
    log_every: int = field(default=10, metadata=_help("Report the running training loss every this many steps."))
    range_test_steps: int = field(
        default=40,
        metadata=_help(
            "lr='range-test': steps of the test (the learning rate grows geometrically from 1e-4 to 1 x the "
            "embedding RMS; the prompt and optimizer are reset afterwards)."
        ),
    )

    def __post_init__(self) -> None:
        _int(self, "steps", minimum=1)
        _int(self, "batch_size", minimum=1)
        _int(self, "grad_accum", minimum=1)
        if self.lr not in get_args(LrRule):
            if isinstance(self.lr, str):
                _fail(self, "lr", f"must be a positive number or one of {', '.join(repr(o) for o in get_args(LrRule))}")
            _num(self, "lr", positive=True)
        _choice(self, "optimizer", OptimizerName)
        _num(self, "weight_decay", positive=False)
        _int(self, "warmup", minimum=0)
        if self.warmup >= self.steps and self.warmup > 0:
            _fail(self, "warmup", f"must be smaller than steps ({self.steps})")
        _choice(self, "schedule", ScheduleName)
        if self.max_grad_norm is not None:
            _num(self, "max_grad_norm", positive=True)
        _int(self, "eval_every", minimum=0)
        _int(self, "eval_examples", minimum=1, optional=True)
        _int(self, "eval_batch_size", minimum=1)
        _int(self, "patience", minimum=1, optional=True)
        _int(self, "save_every", minimum=0, optional=True)
        _int(self, "seed", minimum=0)
        _choice(self, "precision", Precision)
        _choice(self, "device", DeviceName)
        _int(self, "max_length", minimum=4)
        _int(self, "num_virtual_tokens", minimum=1, optional=True)
        _choice(self, "init", InitName)
        if self.init == "text" and not (isinstance(self.init_text, str) and self.init_text.strip()):
            _fail(self, "init_text", "must be a non-empty string when init='text'")
        if self.init_text is not None and not isinstance(self.init_text, str):
            _fail(self, "init_text", "must be a string or None")
        _int(self, "origin_seed", minimum=0)
        _choice(self, "loss", LossName)
        _bool(self, "group_by_length")
        _bool(self, "train_head")
        _int(self, "log_every", minimum=1)
        _int(self, "range_test_steps", minimum=5)

    # -- helpers ------------------------------------------------------------------------------------------------

    @property
    def checkpoint_every(self) -> int:
        """Steps between checkpoints (``save_every`` resolved; 0 means never)."""
        if self.save_every is not None:
            return self.save_every
        return self.eval_every or 50

    @property
    def virtual_tokens(self) -> int:
        """Length of a new origin (``num_virtual_tokens`` or the default, 50)."""
        return self.num_virtual_tokens or DEFAULT_VIRTUAL_TOKENS

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"TrainConfig has no option {unknown[0]!r}; options: {', '.join(self.field_names())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-serializable dict (field order)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a config from a dict such as ``run.json``'s ``config``; unknown keys are refused."""
        names = set(cls.field_names())
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"TrainConfig has no option {unknown[0]!r}; options: {', '.join(cls.field_names())}")
        return cls(**dict(data))

    @classmethod
    def field_names(cls) -> list[str]:
        """The option names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of one option."""
        for f in dataclasses.fields(cls):
            if f.name == name:
                return str(f.metadata.get("help", ""))
        raise ConfigError(f"TrainConfig has no option {name!r}; options: {', '.join(cls.field_names())}")


# -- validation -------------------------------------------------------------------------------------------------


def _fail(cfg: TrainConfig, name: str, rule: str) -> None:
    raise ConfigError(f"TrainConfig.{name}={getattr(cfg, name)!r}: {rule}")


def _int(cfg: TrainConfig, name: str, *, minimum: int, optional: bool = False) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        _fail(cfg, name, f"must be {rule}" + (" or None" if optional else ""))


def _num(cfg: TrainConfig, name: str, *, positive: bool) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        _fail(cfg, name, "must be a positive number" if positive else "must be a number >= 0")


def _choice(cfg: TrainConfig, name: str, kind: Any) -> None:
    options = get_args(kind)
    if getattr(cfg, name) not in options:
        _fail(cfg, name, f"must be one of {', '.join(repr(o) for o in options)}")


def _bool(cfg: TrainConfig, name: str) -> None:
    if not isinstance(getattr(cfg, name), bool):
        _fail(cfg, name, "must be True or False")
