"""Tests of tpv.files: self-describing safetensors files, round trips, refusals and atomic writes."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import tpv
from tpv import files

ORIGIN = tpv.Origin.first_n_vocab(torch.randn(100, 8, generator=torch.Generator().manual_seed(0)), 3, seed=2)


def make_vector() -> tpv.TaskPromptVector:
    tuned = ORIGIN.tensor + torch.linspace(-1, 1, 24).reshape(3, 8)
    a = tpv.TaskPromptVector.from_prompts(tuned, ORIGIN, task="sst2", base_model="smollm2-135m")
    b = tpv.TaskPromptVector.from_prompts(tuned * 2, ORIGIN, task="imdb", base_model="smollm2-135m")
    return 0.5 * a - 0.25 * b


def test_vector_round_trip_keeps_bits_terms_and_origin(tmp_path: Path) -> None:
    """save then load gives back the same bits, terms, origin id and metadata."""
    v = make_vector()
    path = tpv.save(v, tmp_path / "v.safetensors")
    back = tpv.load(path)
    assert isinstance(back, tpv.TaskPromptVector)
    assert back == v
    assert dict(back.terms) == {"sst2": 0.5, "imdb": -0.25}
    assert torch.equal(back.apply_to(ORIGIN), v.apply_to(ORIGIN))


def test_origin_round_trip_keeps_init_and_id(tmp_path: Path) -> None:
    """An origin comes back equal, with its init, seed, params and id."""
    tpv.save(ORIGIN, tmp_path / "o.safetensors")
    back = tpv.load_origin(tmp_path / "o.safetensors")
    assert back == ORIGIN and back.id == ORIGIN.id
    assert (back.init, back.seed, back.params["n"]) == ("first-n-vocab", 2, 5000)


def test_inspect_reads_the_header_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """inspect reports the metadata without loading the tensor."""
    v = make_vector()
    path = tpv.save(v, tmp_path / "v.safetensors", provenance={"source": "test"})
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("tensor loaded"))
    info = tpv.inspect(path)
    assert info.kind == "vector" and info.shape == (3, 8) and info.dtype == "float64"
    assert info.origin_id == ORIGIN.id and info.terms == {"imdb": -0.25, "sst2": 0.5}
    assert info.base_model == "smollm2-135m" and info.token_dim == 8 and info.num_virtual_tokens == 3
    assert info.provenance == {"source": "test"} and info.format_version == files.FORMAT_VERSION
    json.dumps(info.to_dict())


def test_metadata_is_namespaced_strings(tmp_path: Path) -> None:
    """Every metadata key is under tpv. and every value a string (safetensors' rule)."""
    from safetensors import safe_open

    path = tpv.save(ORIGIN, tmp_path / "o.safetensors")
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
        assert list(fh.keys()) == ["origin"]
    assert all(k.startswith("tpv.") and isinstance(v, str) for k, v in meta.items())
    assert {"tpv.format_version", "tpv.kind", "tpv.library_version", "tpv.origin_id"} <= set(meta)


def _rewrite_meta(src: Path, dst: Path, **changes: str | None) -> Path:
    from safetensors import safe_open

    with safe_open(str(src), "pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    for k, v in changes.items():
        key = "tpv." + k
        if v is None:
            meta.pop(key, None)
        else:
            meta[key] = v
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"format_version": "2"}, "newer than this tpv reads"),
        ({"kind": "banana"}, "unknown kind"),
        ({"origin_id": None}, "missing tpv.origin_id"),
        ({"terms": "{not json"}, "not valid JSON"),
        ({"token_dim": "9"}, "does not match the tensor width"),
        ({"num_virtual_tokens": "x"}, "must be an integer"),
    ],
)
def test_bad_metadata_is_refused(tmp_path: Path, changes: dict[str, str | None], needle: str) -> None:
    """Newer versions, unknown kinds, missing keys and malformed values raise FormatError naming them."""
    good = tpv.save(make_vector(), tmp_path / "good.safetensors")
    bad = _rewrite_meta(good, tmp_path / "bad.safetensors", **changes)
    with pytest.raises(tpv.FormatError, match=needle):
        tpv.load(bad)


def test_wrong_kind_is_refused(tmp_path: Path) -> None:
    """load_vector on an origin file (and the reverse) raises FormatError."""
    o = tpv.save(ORIGIN, tmp_path / "o.safetensors")
    v = tpv.save(make_vector(), tmp_path / "v.safetensors")
    with pytest.raises(tpv.FormatError, match="expected a tpv vector file, found a origin"):
        tpv.load_vector(o)
    with pytest.raises(tpv.FormatError, match="expected a tpv origin file"):
        tpv.load_origin(v)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    """A file cut short (mid-data or mid-header) raises FormatError saying truncated."""
    path = tpv.save(make_vector(), tmp_path / "v.safetensors")
    data = path.read_bytes()
    for cut in (len(data) - 10, 20, 4):
        p = tmp_path / f"cut{cut}.safetensors"
        p.write_bytes(data[:cut])
        with pytest.raises(tpv.FormatError, match="truncated"):
            tpv.load(p)


def test_pickle_files_are_refused_without_unpickling(tmp_path: Path) -> None:
    """A pickle or torch.save file is refused by its magic bytes and never unpickled."""
    p = tmp_path / "evil.pt"
    p.write_bytes(pickle.dumps({"x": 1}, protocol=4))
    with pytest.raises(tpv.FormatError, match="pickle"):
        tpv.load(p)
    z = tmp_path / "zip.pt"
    z.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(tpv.FormatError, match="never unpickles"):
        tpv.inspect(z)


def test_non_tpv_and_missing_files_are_refused(tmp_path: Path) -> None:
    """A plain safetensors file, a JSON file, a folder and a missing path each raise FormatError."""
    plain = tmp_path / "plain.safetensors"
    save_file({"prompt_embeddings": torch.ones(2, 2)}, str(plain))
    with pytest.raises(tpv.FormatError, match="not a tpv file"):
        tpv.load(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 5) + b"nope!")
    with pytest.raises(tpv.FormatError, match="not JSON"):
        tpv.load(junk)
    with pytest.raises(tpv.FormatError, match="no such file"):
        tpv.load(tmp_path / "missing.safetensors")
    with pytest.raises(tpv.FormatError, match="is a folder"):
        tpv.load(tmp_path)


def test_corrupted_origin_is_detected(tmp_path: Path) -> None:
    """An origin whose values no longer match its recorded id is refused."""
    good = tpv.save(ORIGIN, tmp_path / "o.safetensors")
    bad = _rewrite_meta(good, tmp_path / "bad.safetensors", origin_id="sha256:0000000000000000")
    with pytest.raises(tpv.FormatError, match="corrupted"):
        tpv.load(bad)


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash mid-write leaves the previous file intact and no temp file behind."""
    path = tpv.save(ORIGIN, tmp_path / "o.safetensors")
    before = path.read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("tpv._fs.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        tpv.save(make_vector(), path, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["o.safetensors"]


def test_save_refuses_other_objects(tmp_path: Path) -> None:
    """Saving something that is not a vector or origin raises FormatError."""
    with pytest.raises(tpv.FormatError, match="TaskPromptVector or an Origin"):
        tpv.save(torch.ones(2, 2), tmp_path / "x.safetensors")  # type: ignore[arg-type]


def test_package_never_unpickles() -> None:
    """No module of tpv imports pickle or calls torch.load."""
    root = Path(tpv.__file__).parent
    for src in root.rglob("*.py"):
        text = src.read_text()
        assert "import pickle" not in text and "torch.load(" not in text, src


def test_header_length_resembling_pickle_magic_is_not_refused(tmp_path: Path) -> None:
    """A genuine file whose header length starts with the pickle magic bytes (e.g. 640) still loads."""
    v = tpv.TaskPromptVector.from_tensor(torch.ones(3, 8), origin_id=ORIGIN.id, task="t")
    for pad in range(0, 600):
        path = tpv.save(v, tmp_path / "v.safetensors", provenance={"pad": "x" * pad}, overwrite=True)
        if path.read_bytes()[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
            assert tpv.load(path) == v
            return
    pytest.fail("no padding produced a header length starting with the pickle magic")
