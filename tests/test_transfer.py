"""Tests of tpv.transfer: relative-code invariances, anchors across tokenizer styles, linear maps, refusals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import tpv
from tpv.errors import ConfigError, ModelError
from tpv.transfer import (
    AnchorError,
    ModelSpace,
    SearchConfig,
    Source,
    count_shared_anchors,
    encode,
    find_shared_anchors,
    fit_linear_map,
    keep_top_k,
    run_transfer,
    search_target_prompt,
    transfer,
)
from tpv.transfer.anchors import detect_style, normalize_token
from tpv.transfer.relative import PROJECTIONS
from tpv.transfer.search import make_match

GEN = torch.Generator().manual_seed(0)
WORDS = (
    "movie", "film", "good", "bad", "great", "awful", "story", "acting", "plot", "review", "negative", "positive",
    "the", "and", "but", "very", "really", "boring", "fun", "loved",
)  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny tensors: one intra-op thread avoids thread hand-off costs that dominate on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _orthogonal(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q  # (n, n)


# -- relative encoding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_relative_code_survives_rotation_and_rescale(name: str) -> None:
    """A shared rotation/reflection and a positive rescale of the space leave every registered code unchanged."""
    x = torch.randn(5, 8, generator=GEN, dtype=torch.float64)  # (rows, dim)
    anchors = torch.randn(30, 8, generator=GEN, dtype=torch.float64)  # (n, dim)
    q = _orthogonal(8, 1)
    want = encode(x, anchors=anchors, projection=name)  # (rows, n)
    for s in (0.01, 3.7, 250.0):
        got = encode(s * x @ q, anchors=s * anchors @ q, projection=name)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    assert want.shape == (5, 30)


def test_centered_code_survives_translation_and_cosine_survives_row_rescale() -> None:
    """centered-cosine ignores a shared shift; plain cosine ignores rescaling each prompt row on its own."""
    x = torch.randn(4, 6, generator=GEN, dtype=torch.float64)
    anchors = torch.randn(20, 6, generator=GEN, dtype=torch.float64)
    shift = torch.randn(1, 6, generator=GEN, dtype=torch.float64) * 5
    torch.testing.assert_close(
        encode(x + shift, anchors=anchors + shift, projection="centered-cosine"),
        encode(x, anchors=anchors, projection="centered-cosine"),
    )
    rows = torch.tensor([[0.5], [2.0], [9.0], [1.0]], dtype=torch.float64)
    torch.testing.assert_close(encode(rows * x, anchors=anchors), encode(x, anchors=anchors))


def test_keep_top_k_keeps_k_largest_per_row() -> None:
    """keep_top_k zeroes all but the k largest entries of each row and returns the matching mask."""
    code = torch.tensor([[0.125, -0.875, 0.5, 0.25], [0.75, 0.25, -0.125, 0.0]])
    masked, mask = keep_top_k(code, 2)
    assert mask.sum(dim=1).tolist() == [2.0, 2.0]
    assert torch.equal(masked, torch.tensor([[0.0, 0.0, 0.5, 0.25], [0.75, 0.25, 0.0, 0.0]]))
    _, mask_abs = keep_top_k(code, 1, absolute=True)
    assert mask_abs[0].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert torch.equal(keep_top_k(code, None)[0], code)


def test_unknown_projection_is_refused() -> None:
    """An unregistered projection name raises ConfigError listing the registered ones."""
    with pytest.raises(ConfigError, match="cosine"):
        encode(torch.ones(1, 2), anchors=torch.ones(3, 2), projection="euclid")


# -- anchors ----------------------------------------------------------------------------------------------------


def _hf(tok: Any, **specials: str) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, **specials)


def byte_bpe_tokenizer() -> Any:
    """A byte-level BPE tokenizer (GPT-2/SmolLM2 style: ``Ġword``), trained on a repeated word list."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([" " + " ".join(WORDS)] * 50, trainer=trainer)
    return _hf(tok, eos_token="<|endoftext|>")


def sentencepiece_tokenizer(words: tuple[str, ...] = WORDS) -> Any:
    """A SentencePiece-style unigram tokenizer (T5/Gemma style: ``▁word``), built from an explicit vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    letters = sorted({ch for w in words for ch in w})
    pieces = [("<unk>", 0.0), ("▁", -2.0)] + [("▁" + w, -1.0) for w in words] + [(ch, -5.0) for ch in letters]
    tok = Tokenizer(models.Unigram(pieces, unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    return _hf(tok, unk_token="<unk>")


def wordpiece_tokenizer(words: tuple[str, ...] = WORDS) -> Any:
    """A WordPiece tokenizer (BERT style: ``##`` continuations), built from an explicit vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    letters = sorted({ch for w in words for ch in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words, *letters, *("##" + ch for ch in letters), "##ing"]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(dict.fromkeys(vocab))}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return _hf(tok, unk_token="[UNK]", pad_token="[PAD]")


def test_normalize_token_strips_each_style_marker() -> None:
    """Ġ and ▁ word starts normalize to the bare word; ## and unmarked BPE/SP pieces are continuations."""
    assert normalize_token("Ġmovie", "byte-bpe") == "movie"
    assert normalize_token("movie", "byte-bpe") is None
    assert normalize_token("▁movie", "sentencepiece") == "movie"
    assert normalize_token("ie", "sentencepiece") is None
    assert normalize_token("movie", "wordpiece") == "movie"
    assert normalize_token("##ie", "wordpiece") is None
    assert normalize_token("Ġ", "byte-bpe") is None


def test_styles_are_detected_and_anchors_shared_across_three_styles() -> None:
    """BPE, SentencePiece and WordPiece tokenizers agree on anchors, each with the id it really produces."""
    bpe, sp, wp = byte_bpe_tokenizer(), sentencepiece_tokenizer(), wordpiece_tokenizer()
    assert [detect_style(t.get_vocab()) for t in (bpe, sp, wp)] == ["byte-bpe", "sentencepiece", "wordpiece"]
    anchors = find_shared_anchors(bpe, sp, wp, min_anchors=10)
    assert set(anchors.words) == set(WORDS)
    assert anchors.styles == ("byte-bpe", "sentencepiece", "wordpiece")
    i = anchors.words.index("movie")
    assert anchors.token_ids[0][i] == bpe.convert_tokens_to_ids("Ġmovie")
    assert anchors.token_ids[1][i] == sp.convert_tokens_to_ids("▁movie")
    assert anchors.token_ids[2][i] == wp.convert_tokens_to_ids("movie")
    assert count_shared_anchors(bpe, sp) == len(WORDS)


def test_anchors_from_raw_tokenizers_library_objects() -> None:
    """A raw tokenizers.Tokenizer works as well as its transformers wrapper."""
    sp, wp = sentencepiece_tokenizer(), wordpiece_tokenizer()
    raw = find_shared_anchors(sp.backend_tokenizer, wp.backend_tokenizer, min_anchors=10)
    wrapped = find_shared_anchors(sp, wp, min_anchors=10)
    assert raw.words == wrapped.words and raw.token_ids[0] == wrapped.token_ids[0]


def test_anchor_restriction_weighting_and_subset() -> None:
    """only= keeps the given words, weights= weights them, max_anchors= keeps a seeded subset with weighted words."""
    sp, wp = sentencepiece_tokenizer(), wordpiece_tokenizer()
    labels = find_shared_anchors(sp, wp, only=(" negative", " positive"))
    assert labels.words == ("negative", "positive")
    weighted = find_shared_anchors(sp, wp, weights={"positive": 10.0}, min_anchors=5)
    assert weighted.weights is not None and weighted.weights[weighted.words.index("positive")] == 10.0
    small = find_shared_anchors(sp, wp, weights={"positive": 10.0}, max_anchors=5, min_anchors=5, seed=3)
    assert len(small) == 5 and "positive" in small.words
    assert (
        small.words
        == find_shared_anchors(sp, wp, weights={"positive": 10.0}, max_anchors=5, min_anchors=5, seed=3).words
    )


def test_too_few_shared_anchors_is_one_clear_error() -> None:
    """Tokenizers sharing fewer words than min_anchors, or missing a requested word, raise AnchorError."""
    a = sentencepiece_tokenizer(("movie", "film", "good"))
    b = wordpiece_tokenizer(("movie", "bad", "awful"))
    with pytest.raises(AnchorError, match="share only 1 single-token words") as info:
        find_shared_anchors(a, b)
    assert isinstance(info.value, tpv.TPVError)
    with pytest.raises(AnchorError, match="good"):
        find_shared_anchors(a, b, only=["good"])


# -- linear maps ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ds", "dt"), [(6, 6), (6, 9)])
def test_procrustes_recovers_a_known_orthogonal_map_exactly(ds: int, dt: int) -> None:
    """Anchors related by an orthogonal map (target padded-wider) give back that map, scale 1, residual 0."""
    x = torch.randn(40, ds, generator=GEN, dtype=torch.float64)
    q = _orthogonal(dt, 2)[:ds]  # (ds, dt): rows of an orthogonal matrix, an isometry into the wider space
    shift = torch.randn(dt, generator=GEN, dtype=torch.float64)
    m = fit_linear_map(x, x @ q + shift, method="procrustes")
    torch.testing.assert_close(m.weight, q, atol=1e-10, rtol=0)
    assert math.isclose(m.scale, 1.0, abs_tol=1e-10) and m.residual < 1e-10
    p = torch.randn(3, ds, generator=GEN, dtype=torch.float64)
    torch.testing.assert_close(m(p), p @ q + shift)


@pytest.mark.parametrize(("ds", "dt"), [(6, 6), (8, 5), (5, 8)])
def test_lstsq_recovers_any_linear_map_exactly(ds: int, dt: int) -> None:
    """Least squares on enough anchors recovers an arbitrary affine map (any widths)."""
    x = torch.randn(50, ds, generator=GEN, dtype=torch.float64)
    w = torch.randn(ds, dt, generator=GEN, dtype=torch.float64)
    b = torch.randn(dt, generator=GEN, dtype=torch.float64)
    m = fit_linear_map(x, x @ w + b, method="lstsq")
    torch.testing.assert_close(m.weight, w)
    torch.testing.assert_close(m.apply_difference(torch.eye(ds, dtype=torch.float64)), w)


def test_scaled_procrustes_recovers_a_rescale() -> None:
    """Scaled Procrustes recovers a rotation times a global scale (different embedding norms)."""
    x = torch.randn(30, 4, generator=GEN, dtype=torch.float64)
    q = _orthogonal(4, 5)
    m = fit_linear_map(x, 25.0 * x @ q, method="procrustes")
    assert math.isclose(m.scale, 25.0, rel_tol=1e-9)
    torch.testing.assert_close(m.weight, 25.0 * q)


# -- target search ----------------------------------------------------------------------------------------------


def test_search_recovers_rows_of_a_rotated_space() -> None:
    """The target search finds the rotated prompt when the target space is a rotation of the source space."""
    emb = torch.randn(60, 8, generator=GEN)
    q = _orthogonal(8, 7).float()
    prompt = emb[:3] + 0.3 * torch.randn(3, 8, generator=GEN)
    cfg = SearchConfig(steps=400, lr=0.05, norm="source-ratio")
    mean_norm = float(emb.norm(dim=1).mean())
    match = make_match(prompt, emb, emb @ q, config=cfg, source_mean_norm=mean_norm, target_mean_norm=mean_norm)
    result = search_target_prompt([match], config=cfg)
    cos = torch.nn.functional.cosine_similarity(result.prompt, prompt @ q, dim=1)
    assert bool((cos > 0.999).all()) and result.loss < 1e-4
    assert not result.used_target_data and result.score is None


def test_search_keeps_the_best_scored_candidate() -> None:
    """With score_fn the best-scoring checkpoint is returned and the result says target data was used."""
    emb = torch.randn(40, 6, generator=GEN)
    cfg = SearchConfig(steps=100, eval_every=10, lr=0.05)
    match = make_match(emb[:2], emb, emb, config=cfg)
    seen: list[int] = []

    def score(p: torch.Tensor) -> float:
        seen.append(1)
        return 1.0 if len(seen) == 3 else 0.0

    result = search_target_prompt([match], config=cfg, target_stats=(0.0, 1.0), score_fn=score)
    assert result.used_target_data and result.step == 30 and result.score == 1.0
    assert len(result.history) == 10


def test_search_config_refuses_bad_values() -> None:
    """Bad search settings name the field and the rule."""
    with pytest.raises(ConfigError, match="steps"):
        SearchConfig(steps=0)
    with pytest.raises(ConfigError, match="norm"):
        SearchConfig(norm="unit")  # type: ignore[arg-type]


# -- transfer with tiny models ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    from tests.tiny_models import build_tiny

    llama, llama_tok = build_tiny("llama", seed=0)
    gemma, gemma_tok = build_tiny("gemma3", seed=0)
    return {
        "llama": llama,
        "llama_tok": llama_tok,
        "gemma": gemma,
        "gemma_tok": gemma_tok,
        "llama_space": ModelSpace.from_model(llama, llama_tok),
        "gemma_space": ModelSpace.from_model(gemma, gemma_tok),
    }


def _examples() -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for i, (word, y) in enumerate([("good", 1), ("great", 1), ("loved", 1), ("bad", 0), ("awful", 0), ("dull", 0)]):
        for j, noun in enumerate(("movie", "film", "story")):
            texts.append(f"the {noun} was {'very ' * ((i + j) % 2)}{word} . sentiment :")
            labels.append(y)
    return texts, labels


def test_transfer_to_the_same_model_scores_like_the_original(tiny: dict[str, Any]) -> None:
    """Relative transfer of a prompt to its own model gives back its rows and its validation score."""
    from tpv.transfer import validation_scorer

    space = tiny["llama_space"]
    origin = tpv.Origin.sample_vocab(space.embeddings, 4, seed=1)
    prompt = origin.tensor + 0.2 * torch.randn(4, space.dim, generator=GEN)
    texts, labels = _examples()
    score = validation_scorer(tiny["llama"], tiny["llama_tok"], texts, labels, (" negative", " positive"))
    cfg = SearchConfig(steps=300, lr=0.05, norm="source-ratio")
    moved = transfer(prompt, source_model=space, target_model=space, config=cfg)
    assert isinstance(moved, torch.Tensor) and moved.shape == prompt.shape
    assert bool((torch.nn.functional.cosine_similarity(moved, prompt, dim=1) > 0.99).all())
    torch.testing.assert_close(moved.norm(dim=1), prompt.norm(dim=1))
    assert abs(score(moved) - score(prompt)) <= 1 / len(texts)
    same = transfer(prompt, source_model=space, target_model=space, method="linear")
    torch.testing.assert_close(same, prompt, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["relative", "linear", "procrustes"])
def test_vector_transfer_lands_on_the_transferred_origin(tiny: dict[str, Any], method: str, tmp_path: Path) -> None:
    """A vector moves to the target's transferred origin (the one transfer(origin) gives); provenance is saved."""
    src, tgt = tiny["llama_space"], tiny["gemma_space"]
    origin = tpv.Origin.sample_vocab(src.embeddings, 3, seed=0, base_model=src.name)
    tau = tpv.TaskPromptVector.from_prompts(
        origin.tensor + 0.1 * torch.randn(3, src.dim, generator=GEN), origin, task="sst2", base_model=src.name
    )
    cfg = SearchConfig(steps=60, eval_every=20)
    result = run_transfer(tau, source_model=src, target_model=tgt, method=method, origin=origin, config=cfg)  # type: ignore[arg-type]
    vec, t_origin = result.value, result.origin
    assert isinstance(vec, tpv.TaskPromptVector) and t_origin is not None
    assert vec.shape == (3, tgt.dim) and vec.base_model == tgt.name and dict(vec.terms) == {"sst2": 1.0}
    moved_origin = transfer(origin, source_model=src, target_model=tgt, method=method, config=cfg)  # type: ignore[arg-type]
    assert isinstance(moved_origin, tpv.Origin) and moved_origin.id == t_origin.id == vec.origin_id
    if method != "relative":  # affine maps: T(origin + tau) - T(origin) == tau W
        assert result.linear_map is not None
        torch.testing.assert_close(vec.tensor, tau.tensor @ result.linear_map.weight)
    paths = result.save(tmp_path / "v.safetensors")
    info = tpv.inspect(paths[0])
    assert info.provenance["source_model"] == src.name and info.provenance["method"] == method
    assert tpv.inspect(paths[1]).kind == "origin"
    assert tpv.load_vector(paths[0]).apply_to(tpv.load_origin(paths[1])).shape == (3, tgt.dim)


def test_difference_mode_places_the_vector_on_a_given_target_origin(tiny: dict[str, Any]) -> None:
    """vector_mode='difference' moves tau itself onto target_origin (linear: exactly tau W)."""
    src, tgt = tiny["llama_space"], tiny["gemma_space"]
    origin = tpv.Origin.sample_vocab(src.embeddings, 2, seed=0)
    tau = tpv.TaskPromptVector.from_prompts(origin.tensor + 1.0, origin, task="t")
    t_origin = tpv.Origin.sample_vocab(tgt.embeddings, 2, seed=5)
    for method in ("linear", "relative"):
        out = run_transfer(
            tau,
            source_model=src,
            target_model=tgt,
            method=method,  # type: ignore[arg-type]
            origin=origin,
            target_origin=t_origin,
            vector_mode="difference",
            config=SearchConfig(steps=30),
        )
        assert isinstance(out.value, tpv.TaskPromptVector) and out.value.origin_id == t_origin.id
    assert out.provenance["vector_mode"] == "difference"


def test_multi_source_transfer_matches_every_source(tiny: dict[str, Any]) -> None:
    """Two sources give one target prompt; the record names both sources."""
    src, tgt = tiny["llama_space"], tiny["gemma_space"]
    p1 = src.embeddings[5:8].clone()
    p2 = src.embeddings[8:11].clone()
    out = run_transfer(
        p1,
        source_model=src,
        target_model=tgt,
        more_sources=[Source(p2, src)],
        config=SearchConfig(steps=50),
    )
    assert isinstance(out.value, torch.Tensor) and out.value.shape == (3, tgt.dim)
    assert [s["model"] for s in out.provenance["sources"]] == [src.name, src.name]
    lin = transfer(p1, source_model=src, target_model=tgt, method="linear", more_sources=[Source(p2, src)])
    assert isinstance(lin, torch.Tensor) and lin.shape == (3, tgt.dim)


def test_the_package_is_callable_as_transfer(tiny: dict[str, Any]) -> None:
    """tpv.transfer(...) (the package) calls tpv.transfer.transfer, as the issue's interface reads."""
    import tpv.transfer as package

    src, tgt = tiny["llama_space"], tiny["gemma_space"]
    prompt = src.embeddings[:2].clone()
    via_package = tpv.transfer(prompt, source_model=src, target_model=tgt, method="linear")  # type: ignore[operator]
    assert package is tpv.transfer
    torch.testing.assert_close(via_package, transfer(prompt, source_model=src, target_model=tgt, method="linear"))


def test_adapter_output_records_the_source(tiny: dict[str, Any], tmp_path: Path) -> None:
    """save_adapter writes a PEFT adapter for the target whose tpv files and json record the source."""
    import json

    from tpv.adapters import read_adapter

    src, tgt = tiny["llama_space"], tiny["gemma_space"]
    result = run_transfer(src.embeddings[:4].clone(), source_model=src, target_model=tgt, method="procrustes")
    folder = result.save_adapter(tmp_path / "adapter")
    prompt, config = read_adapter(folder)
    assert tuple(prompt.shape) == (4, tgt.dim) and config["peft_type"] == "PROMPT_TUNING"
    assert tpv.inspect(folder / "origin.safetensors").provenance["source_model"] == src.name
    assert json.loads((folder / "tpv_transfer.json").read_text())["target_model"] == tgt.name


# -- refusals ---------------------------------------------------------------------------------------------------


def test_prompt_width_must_match_the_source_model(tiny: dict[str, Any]) -> None:
    """A prompt as wide as another model than the declared source raises ModelError naming both widths."""
    with pytest.raises(ModelError, match=r"24 wide.*32 dimensions"):
        transfer(torch.zeros(2, 24), source_model=tiny["llama_space"], target_model=tiny["gemma_space"])


def test_unknown_model_name_is_one_clear_error() -> None:
    """An unknown model name raises ModelError before any work."""
    with pytest.raises(ModelError, match="unknown model name"):
        transfer(torch.zeros(2, 576), source_model="smollm2-136m", target_model="gemma3-270m")


def test_too_few_anchors_between_models_is_refused(tiny: dict[str, Any]) -> None:
    """Models whose tokenizers share too few words raise AnchorError from transfer."""
    src = tiny["llama_space"]
    other = ModelSpace("other", torch.randn(30, 5, generator=GEN), sentencepiece_tokenizer(("zebra", "quark")))
    with pytest.raises(AnchorError, match="share only 0"):
        transfer(torch.zeros(2, src.dim), source_model=src, target_model=other)


def test_vector_without_its_origin_and_bad_options_are_refused(tiny: dict[str, Any]) -> None:
    """A vector without origin=, an unknown method and multi-source vectors raise ConfigError."""
    src, tgt = tiny["llama_space"], tiny["gemma_space"]
    origin = tpv.Origin.gaussian(2, src.dim)
    tau = tpv.TaskPromptVector.from_prompts(origin.tensor + 1, origin, task="t")
    with pytest.raises(ConfigError, match="origin="):
        transfer(tau, source_model=src, target_model=tgt)
    with pytest.raises(ConfigError, match="method"):
        transfer(origin.tensor, source_model=src, target_model=tgt, method="affine")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="more_sources"):
        transfer(tau, source_model=src, target_model=tgt, origin=origin, more_sources=[Source(origin.tensor, src)])


# -- command line -----------------------------------------------------------------------------------------------


def test_cli_transfer_writes_a_target_adapter_with_provenance(tmp_path: Path) -> None:
    """`tpv transfer` moves an adapter's prompt between two model folders; bad models fail with ModelError."""
    import typer
    from typer.testing import CliRunner

    from tests.tiny_models import build_tiny
    from tpv.adapters import read_adapter, save_adapter
    from tpv.cli.transfer import register

    folders = {}
    for kind in ("llama", "gemma3"):
        model, tok = build_tiny(kind, seed=0)  # type: ignore[arg-type]
        folders[kind] = tmp_path / kind
        model.save_pretrained(folders[kind])
        tok.save_pretrained(folders[kind])
    emb = model.get_input_embeddings().weight  # gemma3's
    prompt = torch.randn(3, 32, generator=GEN)
    save_adapter(prompt, tmp_path / "src-adapter", base_model=str(folders["llama"]))
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    args = ["transfer", str(tmp_path / "src-adapter"), "-o", str(tmp_path / "out"), "--method", "linear"]
    args += ["--source-model", str(folders["llama"]), "--target-model", str(folders["gemma3"])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "shared anchors" in result.output
    moved, _ = read_adapter(tmp_path / "out")
    assert tuple(moved.shape) == (3, emb.shape[1])
    assert tpv.inspect(tmp_path / "out" / "origin.safetensors").provenance["command"] == "tpv transfer"
    swapped = [a if a != str(folders["llama"]) else str(folders["gemma3"]) for a in args[:-2]] + args[-2:]
    swapped[swapped.index(str(tmp_path / "out"))] = str(tmp_path / "out2")
    bad = CliRunner().invoke(app, swapped)
    assert isinstance(bad.exception, ModelError) and "wide" in str(bad.exception)
    help_text = CliRunner().invoke(app, ["transfer", "--help"]).output
    assert "Example" in help_text and "--source-model" in help_text
