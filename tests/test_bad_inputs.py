"""Faults and hostile files from the bad-input audit: reads from one open file, writes that clean up, no blocking."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import tpv
from tpv._fs import atomic_dir, atomic_write_bytes, clean_stale_siblings, open_regular, recover_dir
from tpv.errors import AdapterError, ConfigError, FormatError, OutputExistsError, TrainingError


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """An origin and two vectors on disk (the audit's setup)."""
    o = tpv.Origin.gaussian(num_virtual_tokens=4, token_dim=8, seed=0, base_model="m")
    paths = {"origin": tmp_path / "origin.safetensors", "a": tmp_path / "a.safetensors"}
    tpv.save(o, paths["origin"])
    tpv.save(tpv.TaskPromptVector.from_prompts(o.tensor + 1, o, task="a"), paths["a"])
    return paths


def _variant(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    dst.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    return dst


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- reading -------------------------------------------------------------------------------------------------------

WRITER = r"""
import sys, torch, tpv
o = tpv.Origin.gaussian(num_virtual_tokens=4, token_dim=8, seed=0)
A = tpv.TaskPromptVector.from_tensor(torch.full((4, 8), 1.0, dtype=torch.float64), origin_id=o.id, task="A")
B = tpv.TaskPromptVector.from_tensor(torch.full((4, 8), -1.0, dtype=torch.float64), origin_id=o.id, task="B")
tpv.save(A, sys.argv[1]); print("READY", flush=True)
while True:
    tpv.save(B, sys.argv[1], overwrite=True); tpv.save(A, sys.argv[1], overwrite=True)
"""


def test_load_never_mixes_two_files_under_concurrent_replace(tmp_path: Path) -> None:
    """A load racing an atomic replace returns one whole file: terms and numbers from the same version."""
    dest = tmp_path / "race.safetensors"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(dest)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "READY"
        loads, end = 0, time.monotonic() + 3.0
        while time.monotonic() < end:
            v = tpv.load(dest)
            loads += 1
            assert (next(iter(v.terms)), float(v.tensor[0, 0])) in (("A", 1.0), ("B", -1.0))
        assert loads > 50
    finally:
        writer.kill()
        writer.wait()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_fifo_input_is_refused_without_blocking(tmp_path: Path) -> None:
    """inspect/load of a FIFO answer at once that it is not a regular file (no writer ever opens it)."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    for fn in (tpv.inspect, tpv.load):
        with pytest.raises(FormatError, match="not a regular file"):
            fn(fifo)
    assert time.monotonic() - start < 5


def test_folder_input_is_named(tmp_path: Path) -> None:
    """A folder given as a file says so."""
    with pytest.raises(FormatError, match="is a folder"):
        open_regular(tmp_path)


BAD_HEADERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "offsets of strings": lambda h: h["vector"].update(data_offsets=["0", "8"]),
    "shape holding a string": lambda h: h["vector"].update(shape=[4, "8"]),
    "format version a list": lambda h: h["__metadata__"].update({"tpv.format_version": [1]}),
    "tensor entry a number": lambda h: h.update(vector=5),
    "huge shape over few bytes": lambda h: h["vector"].update(shape=[2**40, 8]),
    "terms NaN": lambda h: h["__metadata__"].update({"tpv.terms": '{"a": NaN}'}),
    "terms a list": lambda h: h["__metadata__"].update({"tpv.terms": "[1, 2]"}),
    "metadata value a number": lambda h: h["__metadata__"].update({"tpv.token_dim": 8}),
}


@pytest.mark.parametrize("case", BAD_HEADERS)
def test_malformed_headers_are_format_errors(files: dict[str, Path], tmp_path: Path, case: str) -> None:
    """Every malformed header field is one FormatError from inspect and from load, never a raw exception."""
    bad = _variant(files["a"], tmp_path / "bad.safetensors", BAD_HEADERS[case])
    for fn in (tpv.inspect, tpv.load):
        with pytest.raises(FormatError, match=str(bad).replace("\\", "\\\\")):
            fn(bad)


# -- writing -------------------------------------------------------------------------------------------------------


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path: Path) -> None:
    """The next write removes temp siblings of a dead process, keeps a live writer's, and leaves none of its own."""
    dest = tmp_path / "v.safetensors"
    dead = tmp_path / f".v.safetensors.{_dead_pid()}.abcd.tmp"
    live = tmp_path / f".v.safetensors.{os.getppid()}.efgh.tmp"
    dead.write_bytes(b"x" * 100)
    live.write_bytes(b"y")
    atomic_write_bytes(dest, b"new")
    assert not dead.exists() and live.exists() and dest.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dest.name, live.name])


def test_killed_save_then_new_save_leaves_no_temp_file(tmp_path: Path) -> None:
    """A save SIGKILLed while writing leaves at most its temp file, which the next save removes."""
    dest = tmp_path / "big.safetensors"
    code = (
        "import sys, torch, tpv\n"
        "o = tpv.Origin.gaussian(num_virtual_tokens=4, token_dim=8, seed=0)\n"
        "v = tpv.TaskPromptVector.from_tensor(torch.zeros(4000, 4000), origin_id=o.id, task='a')\n"
        "print('GO', flush=True)\n"
        "while True: tpv.save(v, sys.argv[1])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(dest)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "GO"
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    o = tpv.Origin.gaussian(num_virtual_tokens=4, token_dim=8, seed=0)
    tpv.save(o, dest, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == [dest.name]


def test_overwrite_keeps_the_mode(tmp_path: Path, files: dict[str, Path]) -> None:
    """An overwritten file keeps its permission bits."""
    os.chmod(files["a"], 0o640)
    tpv.save(tpv.load(files["a"]), files["a"], overwrite=True)
    assert stat.S_IMODE(files["a"].stat().st_mode) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_overwrite_keeps_the_owner(files: dict[str, Path]) -> None:
    """As root, an overwritten file keeps its owner and group (a service account's file stays its own)."""
    os.chown(files["a"], 12345, 23456)
    tpv.save(tpv.load(files["a"]), files["a"], overwrite=True)
    st = files["a"].stat()
    assert (st.st_uid, st.st_gid) == (12345, 23456)


def test_long_file_names_fit_the_temp_name(tmp_path: Path) -> None:
    """A legal 250-byte file name is written (the temp sibling's name is shortened, not the output's)."""
    dest = tmp_path / ("v" * 238 + ".safetensors")
    atomic_write_bytes(dest, b"ok")
    assert dest.read_bytes() == b"ok"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_special_file_outputs_are_refused(tmp_path: Path, files: dict[str, Path]) -> None:
    """An output that exists and is a FIFO is refused, never replaced; a folder output is named as one."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match="not a regular file"):
        tpv.save(tpv.load(files["a"]), fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    with pytest.raises(FormatError, match="is a folder"):
        tpv.save(tpv.load(files["a"]), tmp_path)
    with pytest.raises(FormatError, match="parent of this path is a file"):
        tpv.save(tpv.load(files["a"]), files["a"] / "x.safetensors")


def test_symlink_output_is_written_through(tmp_path: Path, files: dict[str, Path]) -> None:
    """Saving onto a symlink replaces its target and keeps the link."""
    link = tmp_path / "link.safetensors"
    link.symlink_to(files["origin"])
    tpv.save(tpv.load(files["a"]), link, overwrite=True)
    assert link.is_symlink() and tpv.inspect(files["origin"]).kind == "vector"


def test_atomic_dir_over_a_regular_file_leaves_nothing_behind(tmp_path: Path) -> None:
    """Replacing a regular file by a folder removes the old file (no hidden .old left)."""
    out = tmp_path / "out"
    out.write_text("old")
    with atomic_dir(out) as tmp:
        (tmp / "f").write_text("new")
    assert (out / "f").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_interrupted_folder_swap_is_recovered_on_read(tmp_path: Path) -> None:
    """A kill between the two renames leaves only the old folder aside; recover_dir and the next swap restore it."""
    out = tmp_path / "checkpoint"
    aside = tmp_path / f".checkpoint.{_dead_pid()}.abcd1234.old"
    aside.mkdir()
    (aside / "state.json").write_text("{}")
    clean_stale_siblings(out)  # a lone .old is kept for recovery, even from a dead process
    assert aside.is_dir()
    assert recover_dir(out) and (out / "state.json").read_text() == "{}" and not aside.exists()
    assert not recover_dir(out)


def test_resume_after_a_kill_in_the_swap_gap_continues(tiny: Any, tmp_path: Path) -> None:
    """--resume finds the checkpoint a kill left aside, and resume with nothing to resume is an error."""
    from tpv.engine import train
    from tpv.engine.loop import TrainEvent

    words = (" negative", " positive")
    data = [("good", 1), ("bad", 0), ("great", 1), ("awful", 0)]
    opts = {"steps": 6, "save_every": 2, "num_virtual_tokens": 2, "batch_size": 4, "progress": False, "lr": 0.01}

    class StopError(Exception):
        pass

    def crash(event: TrainEvent) -> None:
        if event.kind == "checkpoint" and event.step == 4:
            raise StopError

    model, tok = tiny("llama")
    with pytest.raises(StopError):
        train(model, tok, data, label_words=words, out_dir=tmp_path / "run", callback=crash, **opts)
    os.replace(tmp_path / "run" / "checkpoint", tmp_path / "run" / f".checkpoint.{_dead_pid()}.abcd1234.old")
    model, tok = tiny("llama")
    resumed = train(model, tok, data, label_words=words, out_dir=tmp_path / "run", resume=True, **opts)
    assert resumed.resumed_from == 4
    model, tok = tiny("llama")
    with pytest.raises(TrainingError, match="holds no checkpoint"):
        train(model, tok, data, label_words=words, out_dir=tmp_path / "empty", resume=True, **opts)
    with pytest.raises(ConfigError, match="contradict"):
        train(model, tok, data, label_words=words, out_dir=tmp_path / "run", resume=True, overwrite=True, **opts)


def test_broken_checkpoint_json_is_one_format_error(tmp_path: Path) -> None:
    """A checkpoint whose state.json is a list or lacks keys is a FormatError naming the file and the fix."""
    from tpv.engine.checkpoint import CheckpointState, read_checkpoint, write_checkpoint

    state = CheckpointState(step=2, params={"p": torch.zeros(2)}, best_params=None, optimizer={"state": {},
                            "param_groups": []}, rng={}, info={})  # fmt: skip
    write_checkpoint(tmp_path, state)
    meta = tmp_path / "checkpoint" / "state.json"
    for broken in ("[1, 2]", '{"format": "tpv-checkpoint", "version": 1}', "not json"):
        meta.write_text(broken)
        with pytest.raises(FormatError, match=r"state\.json|checkpoint"):
            read_checkpoint(tmp_path)


# -- configs are data ----------------------------------------------------------------------------------------------


def test_yaml_aliases_are_refused_fast(tmp_path: Path) -> None:
    """A 'billion laughs' config is refused at its first alias, in one short line."""
    from tpv.bench.config import load_config

    lines = ["experiment: sources", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join([*lines, "description: *a8"]) + "\n")
    start = time.monotonic()
    with pytest.raises(ConfigError, match="aliases") as info:
        load_config(path)
    assert time.monotonic() - start < 5 and len(str(info.value)) < 400
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"experiment: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(binary)


def test_pickled_model_folders_are_refused_in_one_line(tmp_path: Path) -> None:
    """A model folder holding only pytorch_model.bin is refused before anything is unpickled."""
    from tpv.errors import ModelError
    from tpv.models import load_model

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelError, match="safetensors files only"):
        load_model(str(tmp_path))


@pytest.mark.parametrize(
    ("text", "message"),
    [("1_0,2", "comma-separated numbers"), ("1,inf", "comma-separated numbers"), ("", "comma-separated numbers")],
)
def test_weights_are_plain_numbers(text: str, message: str) -> None:
    """--weights refuses digit grouping and non-finite values instead of misreading them."""
    from tpv.cli.merge import parse_weights

    with pytest.raises(ConfigError, match=message):
        parse_weights(text)
    assert parse_weights("1, 0.5,-2e-1") == [1.0, 0.5, -0.2]


@pytest.mark.parametrize(
    ("text", "message"),
    [("0:1:0", "step > 0"), ("1:0:0.1", "stop >= start"), ("0:1:0.00001", "at most 10,000"), ("0:a:1", "like 0,0.5")],
)
def test_grid_errors_keep_their_specific_message(text: str, message: str) -> None:
    """Each malformed --grid gets its own message, not the generic one."""
    from tpv.cli.merge import parse_grid

    with pytest.raises(ConfigError, match=message):
        parse_grid(text)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--std", "inf"], "--std must be a positive finite number"), (["--seed", str(2**64)], "--seed must be"),
     (["--submodules", "3"], "--submodules must be 1"), (["--dim", "1000000", "--tokens", "1000000"], "far larger")],
)  # fmt: skip
def test_origin_new_refuses_by_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    """`tpv origin new` names the option that was wrong (not the tensor, not the allocator) and writes nothing."""
    from typer.testing import CliRunner

    from tpv.cli import app

    out = tmp_path / "o.safetensors"
    result = CliRunner().invoke(app, ["origin", "new", "--dim", "8", "--tokens", "4", *args, "-o", str(out)])
    assert result.exit_code != 0 and message in str(result.exception) + result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("sentence,label\nfine,NaN\n", "neither an index"), ("sentence,label\nfine,Infinity\n", "neither an index"),
     ('sentence,label\n"fine,1\nok,0\n', "a quote is never closed"), ("sentence,label\n,1\nok,0\n", "empty or null")],
)  # fmt: skip
def test_task_data_files_answer_clearly(tmp_path: Path, content: str, message: str) -> None:
    """NaN/Infinity labels, an unterminated quote and an empty text are TaskErrors naming the problem."""
    from tpv.errors import TaskError
    from tpv.tasks import load_task

    path = tmp_path / "data.csv"
    path.write_text(content)
    with pytest.raises(TaskError, match=message):
        load_task("sst2", data_files=str(path))


def test_task_csv_with_a_bom_reads_its_first_column(tmp_path: Path) -> None:
    """A UTF-8 BOM does not rename the first column."""
    from tpv.tasks.loaders import read_rows

    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffsentence,label\nfine,1\n".encode())
    assert read_rows(path) == [{"sentence": "fine", "label": "1"}]


# -- a fuzzer of safetensors headers ---------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["data_offsets", "shape", "dtype", "tpv.format_version", "tpv.kind", "tpv.terms", "tpv.token_dim",
          "tpv.num_virtual_tokens", "tpv.origin_id", "tpv.base_model", "tpv.seed", "tpv.init_params",
          "whole entry"]  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES, cut=st.integers(0, 400), truncate=st.booleans())
def test_fuzzed_headers_raise_only_format_errors(
    tmp_path_factory: pytest.TempPathFactory, field: str, value: Any, cut: int, truncate: bool
) -> None:
    """Random JSON in any header field, or a random truncation: inspect and load raise FormatError or succeed."""
    folder = tmp_path_factory.mktemp("fuzz")
    o = tpv.Origin.gaussian(num_virtual_tokens=2, token_dim=4, seed=0, base_model="m")
    src = tpv.save(tpv.TaskPromptVector.from_prompts(o.tensor + 1, o, task="a"), folder / "a.safetensors")
    kind = "origin" if field in ("tpv.seed", "tpv.init_params") else "vector"
    if kind == "origin":
        src = tpv.save(o, folder / "o.safetensors")

    def edit(h: dict[str, Any]) -> None:
        if field == "whole entry":
            h[kind] = value
        elif field.startswith("tpv."):
            h["__metadata__"][field] = value if isinstance(value, str) else json.dumps(value)
        else:
            h[kind][field] = value

    bad = _variant(Path(src), folder / "bad.safetensors", edit)
    if truncate:
        bad.write_bytes(bad.read_bytes()[: min(cut, bad.stat().st_size)])
    for fn in (tpv.inspect, tpv.load):
        with contextlib.suppress(FormatError):
            fn(bad)


@pytest.mark.parametrize(
    ("content", "message"),
    [("[1, 2]", "not an object"), ('{"task": 5}', "'task' is not a string"), ("{nope", "not a readable run record"),
     ('{"task": "sst2", "label_words": 5}', "'label_words' is not a list")],
)  # fmt: skip
def test_eval_of_a_broken_run_record_is_one_line(tmp_path: Path, files: dict[str, Path], content: str,
                                                 message: str) -> None:  # fmt: skip
    """`tpv eval RUN` on a run.json that is not a run record answers with one ConfigError, before any model load."""
    import shutil

    from typer.testing import CliRunner

    from tpv.cli import app

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(files["origin"], run / "origin.safetensors")
    (run / "run.json").write_text(content)
    result = CliRunner().invoke(app, ["eval", str(run)])
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)
    bad_split = CliRunner().invoke(app, ["eval", "--origin", str(files["origin"]), "--task", "sst2", "--split", "dev"])
    assert isinstance(bad_split.exception, ConfigError) and "--split 'dev'" in str(bad_split.exception)


DIR_WRITER = r"""
import sys, time
from tpv._fs import atomic_dir
from tpv.errors import FormatError
end = time.monotonic() + 2.0
errors = 0
while time.monotonic() < end:
    try:
        with atomic_dir(sys.argv[1]) as tmp:
            (tmp / "state.json").write_text(sys.argv[2])
    except FormatError:
        errors += 1
print(errors)
"""


def test_two_processes_swapping_one_folder_never_raise_raw_errors(tmp_path: Path) -> None:
    """Two writers swapping the same folder for 2 s: no raw OSError, and the folder is always one writer's whole."""
    dest = tmp_path / "checkpoint"
    procs = [subprocess.Popen([sys.executable, "-c", DIR_WRITER, str(dest), name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]  # fmt: skip
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert (dest / "state.json").read_text() in ("a", "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_terms_as_pairs_and_meta_tensors_are_named() -> None:
    """terms given as a list of pairs, and a meta-device tensor, are InvalidVectorErrors saying what to do."""
    from tpv.errors import InvalidVectorError

    o = tpv.Origin.gaussian(num_virtual_tokens=2, token_dim=4, seed=0)
    with pytest.raises(InvalidVectorError, match=r"wrap it in dict"):
        tpv.TaskPromptVector.from_tensor(torch.zeros(2, 4), origin_id=o.id, terms=[("a", 1.0)])  # type: ignore[arg-type]
    with pytest.raises(InvalidVectorError, match="meta device"):
        tpv.TaskPromptVector.from_tensor(torch.zeros(2, 4, device="meta"), origin_id=o.id, task="a")


def test_train_init_text_has_its_option(tmp_path: Path) -> None:
    """`tpv train --init text` without --init-text names the missing option before any model is loaded."""
    from typer.testing import CliRunner

    from tpv.cli import app

    result = CliRunner().invoke(app, ["train", "rotten_tomatoes", "--out", str(tmp_path / "r"), "--init", "text",
                                      "--model", str(tmp_path / "no-model")])  # fmt: skip
    assert isinstance(result.exception, ConfigError) and "init_text" in str(result.exception)
    assert not (tmp_path / "r").exists()


# -- one overwrite rule --------------------------------------------------------------------------------------------


def test_api_writers_refuse_an_existing_output_without_overwrite(tmp_path: Path, files: dict[str, Path]) -> None:
    """tpv.save and save_adapter share one rule: an existing output is replaced only with overwrite=True."""
    before = files["a"].read_bytes()
    v = tpv.load_vector(files["a"])
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        tpv.save(v * 2, files["a"])
    assert files["a"].read_bytes() == before
    tpv.save(v * 2, files["a"], overwrite=True)
    assert torch.equal(tpv.load_vector(files["a"]).tensor, (v * 2).tensor)
    origin = tpv.load_origin(files["origin"])
    tpv.save_adapter(origin, tmp_path / "adapter")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        tpv.save_adapter(origin, tmp_path / "adapter")
    tpv.save_adapter(origin, tmp_path / "adapter", overwrite=True)
    assert isinstance(OutputExistsError("x"), FileExistsError)


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from tpv.cli import app

    return CliRunner().invoke(app, list(args))


def _failed_with(result: Any, message: str) -> bool:
    return result.exit_code != 0 and message in str(result.exception) + result.output


def test_cli_writers_refuse_existing_outputs_and_never_replace_an_input(tmp_path: Path, files: dict[str, Path]) -> None:
    """combine, origin new and fuse apply refuse an existing -o without --overwrite, and an input even with it."""
    a, origin = str(files["a"]), str(files["origin"])
    before = files["a"].read_bytes()
    assert _failed_with(_cli("combine", a, "--overwrite", "-o", a), "also an input")
    assert _failed_with(_cli("combine", a, "-o", origin), "--overwrite")
    assert _failed_with(_cli("origin", "new", "--dim", "8", "--tokens", "4", "-o", a), "--overwrite")
    assert _failed_with(_cli("fuse", "apply", str(tmp_path / "no.map"), a, "--origin", origin, "-o", origin), "input")
    assert files["a"].read_bytes() == before
    out = tmp_path / "sum.safetensors"
    assert _cli("combine", a, a, "-o", str(out)).exit_code == 0
    assert _failed_with(_cli("combine", a, "-o", str(out)), "--overwrite")
    assert _cli("combine", a, "--overwrite", "-o", str(out)).exit_code == 0
    assert dict(tpv.load_vector(out).terms) == {"a": 1.0}


def test_cli_options_are_checked_before_any_model_loads(tmp_path: Path, files: dict[str, Path]) -> None:
    """Bad options and outputs fail at once: the model named here does not exist, so a late check would say so."""
    taken = str(files["a"])
    assert _failed_with(_cli("fuse", "fit", "no-such-model", "other", "--few-words", "some"), "few_words")
    assert _failed_with(_cli("fuse", "fit", "no-such-model", "other", "-o", taken), "--overwrite")
    assert _failed_with(_cli("train", "rotten_tomatoes", "--model", "no-such-model", "--out", taken), "is a file")
    assert _failed_with(_cli("demo", "--model", "no-such-model", "--out", str(tmp_path)), "--overwrite")
    run = str(tmp_path / "run")
    assert _failed_with(_cli("train", "rotten_tomatoes", "--model", "no-such-model", "--out", run, "--resume",
                             "--overwrite"), "contradict")  # fmt: skip
    assert _failed_with(_cli("transfer", taken, "--origin", str(files["origin"]), "--source-model", "no-such-model",
                             "--target-model", "other", "-o", taken), "also an input")  # fmt: skip


def test_combine_names_its_own_options(tmp_path: Path, files: dict[str, Path]) -> None:
    """Mixed dtypes point at --dtype (a CLI user cannot call .to()); a huge dare seed is refused by --seed."""
    half = tmp_path / "half.safetensors"
    tpv.save(tpv.load_vector(files["a"]).to(torch.bfloat16), half)
    a, out = str(files["a"]), str(tmp_path / "m.safetensors")
    assert _failed_with(_cli("combine", a, str(half), "-o", out), "--dtype float32")
    assert _cli("combine", a, str(half), "--dtype", "float32", "-o", out).exit_code == 0
    assert tpv.load_vector(out).dtype == torch.float32
    assert _failed_with(_cli("combine", a, "--method", "dare", "--density", "0.5", "--seed", str(2**64), "-o",
                             str(tmp_path / "d.safetensors")), "--seed must be")  # fmt: skip


def test_unwritable_metadata_is_named_before_writing(tmp_path: Path) -> None:
    """A 60 MiB term name or a lone surrogate in base_model: one FormatError naming the field, no file."""
    o = tpv.Origin.gaussian(num_virtual_tokens=2, token_dim=4, seed=0)
    huge = tpv.TaskPromptVector.from_tensor(torch.zeros(2, 4), origin_id=o.id, task="x" * (60 << 20))
    with pytest.raises(FormatError, match=r"tpv\.terms"):
        tpv.save(huge, tmp_path / "h.safetensors")
    bad = tpv.Origin.gaussian(num_virtual_tokens=2, token_dim=4, seed=0, base_model="model\udc80")
    with pytest.raises(FormatError, match=r"tpv\.base_model"):
        tpv.save(bad, tmp_path / "b.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_adapter_config_fields_of_the_wrong_type_are_named(tmp_path: Path) -> None:
    """num_transformer_submodules "1" (a string) names the field and its type, not a contradiction of 1 and 1."""
    o = tpv.Origin.gaussian(num_virtual_tokens=4, token_dim=8, seed=0)
    folder = tpv.save_adapter(o, tmp_path / "adapter")
    cfg_path = folder / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["num_transformer_submodules"] = "1"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match=r"num_transformer_submodules must be a positive integer.*'1' \(str\)"):
        tpv.from_adapter(folder)


@pytest.mark.parametrize("value", ["four", "0", "1e9"])
def test_fuse_map_metadata_is_checked(tmp_path: Path, value: str) -> None:
    """A map whose max_subtokens is not a small integer is one FormatError naming the key."""
    from safetensors.torch import save_file

    from tpv.fuse.cache import FORMAT_VERSION, KIND, load_map

    meta = {"tpv.kind": KIND, "tpv.format_version": str(FORMAT_VERSION), "tpv.fuse.max_subtokens": value,
            "tpv.fuse.word_source": "wordnet", "tpv.fuse.source": "{}", "tpv.fuse.target": "{}",
            "tpv.fuse.words_per_k": "{}", "tpv.fuse.solvers": "{}", "tpv.fuse.settings": "{}"}  # fmt: skip
    path = tmp_path / "map.safetensors"
    save_file({"G_1": torch.zeros(2, 3, 1)}, str(path), metadata=meta)
    with pytest.raises(FormatError, match=r"tpv\.fuse\.max_subtokens"):
        load_map(path)


def test_a_tiny_task_file_warns_about_its_empty_splits(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One labelled row: the data loads, and its summary (and the log) say which splits are empty and why."""
    from tpv.tasks import load_task

    path = tmp_path / "one.csv"
    path.write_text("sentence,label\nfine movie,1\n")
    data = load_task("sst2", data_files=path)
    assert data.sizes() == {"train": 1, "validation": 0, "test": 0}
    assert len(data.warnings) == 1 and "validation and test" in data.warnings[0]
    assert "warning: the validation and test split(s)" in data.summary()
    assert "too few to carve" in caplog.text
