"""Tests of tpv.fuse: the t-product algebra, map fitting, the gradient bridge, the cache, moving prompts, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import tpv
from tpv.errors import ConfigError, FormatError, IncompatibleVectorsError
from tpv.fuse import (
    EmbeddingSpace,
    FuseMap,
    LabelWordLoss,
    MapMismatchError,
    Member,
    NotEnoughWordsError,
    SingularSystemError,
    align_words,
    apply,
    bridge_prompt,
    fit,
    fit_map,
    load_map,
    map_prompt,
    optimize_prompt,
    pull_back,
    push_forward,
    read_map_info,
    resolve_words,
    save_map,
    source_gradient,
    wordnet_words,
)
from tpv.fuse.fit import group_words, read_word_list, solve_map, stack_embeddings
from tpv.fuse.tproduct import block_circulant, t_identity, t_pinv, t_product, t_transpose, unfold

# -- helpers ------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Run this module's tiny models on one torch thread (2 threads spin-wait badly on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "so", "pe", "di", "fu", "ba", "ze")
WORDS = sorted(
    {a + b for a in SYLLABLES for b in SYLLABLES}
    | {a + b + c for a in SYLLABLES[:6] for b in SYLLABLES[6:] for c in SYLLABLES[:4]}
)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    """Deterministic float64 normal tensor."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def bpe_tokenizer(vocab_size: int, metaspace: bool) -> Any:
    """A small BPE tokenizer trained on WORDS (metaspace: SentencePiece-like; else whitespace-split)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(BPE(unk_token="<unk>"))
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
    else:
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    letters = sorted(set("".join(SYLLABLES)))
    trainer = BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<pad>"], initial_alphabet=letters, show_progress=False
    )
    corpus = [" ".join(WORDS[i::7]) for i in range(7)] * (3 if metaspace else 1)
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")


@pytest.fixture(scope="module")
def toks() -> tuple[Any, Any]:
    """Two different tiny BPE tokenizers: a SentencePiece-like source and a finer whitespace-split target."""
    return bpe_tokenizer(120, metaspace=True), bpe_tokenizer(40, metaspace=False)


def space(name: str, tok: Any, dim: int, seed: int) -> EmbeddingSpace:
    """An embedding space with random float32 embeddings."""
    return EmbeddingSpace(name, tok, rand(len(tok), dim, seed=seed).float())


@pytest.fixture(scope="module")
def pair(toks: tuple[Any, Any]) -> tuple[EmbeddingSpace, EmbeddingSpace]:
    """Source (width 6) and target (width 5) spaces over the two tokenizers."""
    return space("src", toks[0], 6, 1), space("tgt", toks[1], 5, 2)


@pytest.fixture(scope="module")
def fmap(pair: tuple[EmbeddingSpace, EmbeddingSpace]) -> FuseMap:
    """A map fitted on the tiny pair with K = 3."""
    return fit_map(pair[0], pair[1], words=WORDS, max_subtokens=3, min_words=8)


shapes = st.tuples(*(st.integers(1, 4) for _ in range(4)), st.integers(1, 5), st.integers(0, 10**6))
close = {"rtol": 1e-9, "atol": 1e-9}

# -- the tensor algebra -------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(shapes)
def test_t_product_is_the_block_circulant_product(s: tuple[int, ...]) -> None:
    """A *_t B equals fold(bcirc(A) @ unfold(B)), the definition."""
    n1, n2, n4, _, n3, seed = s
    a, b = rand(n1, n2, n3, seed=seed), rand(n2, n4, n3, seed=seed + 1)
    ref = (block_circulant(a) @ unfold(b)).reshape(n3, n1, n4).permute(1, 2, 0)
    torch.testing.assert_close(t_product(a, b), ref, **close)


@settings(max_examples=20, deadline=None)
@given(shapes)
def test_t_product_is_associative(s: tuple[int, ...]) -> None:
    """(A *_t B) *_t C == A *_t (B *_t C)."""
    n1, n2, n4, n5, n3, seed = s
    a, b, c = rand(n1, n2, n3, seed=seed), rand(n2, n4, n3, seed=seed + 1), rand(n4, n5, n3, seed=seed + 2)
    torch.testing.assert_close(t_product(t_product(a, b), c), t_product(a, t_product(b, c)), **close)


@settings(max_examples=20, deadline=None)
@given(shapes)
def test_identity_tensor_is_neutral(s: tuple[int, ...]) -> None:
    """I *_t A == A == A *_t I."""
    n1, n2, _, _, n3, seed = s
    a = rand(n1, n2, n3, seed=seed)
    torch.testing.assert_close(t_product(t_identity(n1, n3), a), a, **close)
    torch.testing.assert_close(t_product(a, t_identity(n2, n3)), a, **close)


@settings(max_examples=20, deadline=None)
@given(shapes)
def test_t_pinv_satisfies_the_penrose_equations(s: tuple[int, ...]) -> None:
    """A P A = A, P A P = P, (A P)^T = A P and (P A)^T = P A under the t-product."""
    n1, n2, _, _, n3, seed = s
    a = rand(n1, n2, n3, seed=seed)
    p = t_pinv(a)
    ap, pa = t_product(a, p), t_product(p, a)
    torch.testing.assert_close(t_product(ap, a), a, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(t_product(pa, p), p, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(t_transpose(ap), ap, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(t_transpose(pa), pa, rtol=1e-7, atol=1e-7)


def test_t_pinv_of_an_invertible_tensor_is_its_inverse() -> None:
    """For a square full-rank tensor, A *_t pinv(A) is the identity tensor."""
    a = rand(4, 4, 3, seed=3) + 4 * t_identity(4, 3)
    torch.testing.assert_close(t_product(a, t_pinv(a)), t_identity(4, 3), **close)


@settings(max_examples=20, deadline=None)
@given(shapes)
def test_t_transpose_is_the_adjoint(s: tuple[int, ...]) -> None:
    """<A *_t B, C> == <A, C *_t B^T> and (A *_t B)^T == B^T *_t A^T."""
    n1, n2, n4, _, n3, seed = s
    a, b, c = rand(n1, n2, n3, seed=seed), rand(n2, n4, n3, seed=seed + 1), rand(n1, n4, n3, seed=seed + 2)
    lhs = (t_product(a, b) * c).sum()
    rhs = (a * t_product(c, t_transpose(b))).sum()
    torch.testing.assert_close(lhs, rhs, **close)
    torch.testing.assert_close(t_transpose(t_product(a, b)), t_product(t_transpose(b), t_transpose(a)), **close)


def test_t_product_rejects_mismatched_shapes() -> None:
    """Inner sizes or tube lengths that differ raise ConfigError naming both shapes."""
    with pytest.raises(ConfigError, match=r"\(2, 3, 4\) and \(2, 3, 4\)"):
        t_product(rand(2, 3, 4), rand(2, 3, 4))
    with pytest.raises(ConfigError, match="third-order"):
        t_product(rand(2, 3), rand(3, 2))


# -- fitting ------------------------------------------------------------------------------------------------------


def test_groups_stack_source_words_padded_to_k(pair: tuple[EmbeddingSpace, EmbeddingSpace]) -> None:
    """Group k holds words the target splits into k tokens; source ids are truncated or padded with -1."""
    src, tgt = pair
    groups = group_words(WORDS, src, tgt, max_subtokens=3)
    assert set(groups) == {1, 2, 3} and all(len(g) > 0 for g in groups.values())
    for k, g in groups.items():
        assert g.source_ids.shape == g.target_ids.shape == (len(g), k)
        for word, s_row, t_row in zip(g.words, g.source_ids.tolist(), g.target_ids.tolist()):
            assert t_row == tgt.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            s_full = src.tokenizer(" " + word, add_special_tokens=False)["input_ids"][:k]
            assert s_row == s_full + [-1] * (k - len(s_full))
    x = stack_embeddings(groups[3].source_ids, src.embeddings)
    assert x.shape == (len(groups[3]), 6, 3)
    padded = groups[3].source_ids < 0
    assert bool((x.permute(0, 2, 1)[padded] == 0).all())


def test_fit_equals_pinv_t_times_target(pair: tuple[EmbeddingSpace, EmbeddingSpace], fmap: FuseMap) -> None:
    """Each full-rank G_k equals t_product(t_pinv(X_source), X_target) on its group."""
    groups = group_words(WORDS, *pair, max_subtokens=3)
    assert fmap.solvers == {1: "ridge(1e-03)", 2: "pinv", 3: "pinv"}  # group 1: 9 words, 3 distinct source tokens
    for k in (2, 3):
        g = groups[k]
        xs, xt = stack_embeddings(g.source_ids, pair[0].embeddings), stack_embeddings(g.target_ids, pair[1].embeddings)
        torch.testing.assert_close(fmap.maps[k].double(), t_product(t_pinv(xs), xt), rtol=1e-4, atol=1e-5)
    assert fmap.words_per_k == {k: len(g) for k, g in groups.items()}
    assert fmap.source_dim == 6 and fmap.target_dim == 5 and fmap.max_subtokens == 3


def test_fit_recovers_a_planted_map(toks: tuple[Any, Any]) -> None:
    """With one tokenizer on both sides and E_t = E_s @ W, G_k is W in slice 0 and zero elsewhere."""
    src = space("a", toks[1], 4, 5)
    w = rand(4, 3, seed=6).float()
    tgt = EmbeddingSpace("b", toks[1], src.embeddings @ w)
    m = fit_map(src, tgt, words=WORDS, max_subtokens=2, min_words=8)
    for k in (1, 2):
        torch.testing.assert_close(m.maps[k][:, :, 0], w, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(m.maps[k][:, :, 1:], torch.zeros(4, 3, k - 1), rtol=0, atol=1e-4)


def test_singular_system_falls_back_to_ridge() -> None:
    """Fewer words than source dimensions: the face is solved by ridge, and the solver says so."""
    g, solver = solve_map(rand(3, 8, 2), rand(3, 5, 2))
    assert solver == "ridge(1e-03)" and g.shape == (8, 5, 2)
    _, forced = solve_map(rand(40, 4, 1), rand(40, 5, 1), ridge=0.1)
    assert forced == "ridge(1e-01)"


def test_singular_system_without_information_raises() -> None:
    """All-zero or non-finite source embeddings raise SingularSystemError."""
    with pytest.raises(SingularSystemError, match="no information"):
        solve_map(torch.zeros(10, 4, 2, dtype=torch.float64), rand(10, 3, 2))
    bad = rand(10, 4, 1)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(SingularSystemError, match="NaN"):
        solve_map(bad, rand(10, 3, 1))


def test_too_few_words_raises_with_counts(pair: tuple[EmbeddingSpace, EmbeddingSpace]) -> None:
    """A word length below min_words raises NotEnoughWordsError listing every count and the fixes."""
    with pytest.raises(NotEnoughWordsError, match=r"k=1: 9, k=2: 189, k=3: 90\).*min_words$"):
        fit_map(*pair, words=WORDS, max_subtokens=3, min_words=10**5, few_words="positionwise")
    with pytest.raises(NotEnoughWordsError, match=r"for k = 4 .*k=4: 0\).*few_words='positionwise'"):
        fit_map(*pair, words=WORDS, max_subtokens=4, min_words=5)


def test_positionwise_fallback_uses_g1(pair: tuple[EmbeddingSpace, EmbeddingSpace]) -> None:
    """few_words='positionwise' builds short groups' maps from G_1 (slice 0) and records it."""
    counts = {k: len(g) for k, g in group_words(WORDS, *pair, max_subtokens=4).items()}
    k_short = max(counts, key=lambda k: (counts[k] < counts[1], k))
    assert counts[k_short] < counts[1]
    m = fit_map(*pair, words=WORDS, max_subtokens=4, min_words=counts[k_short] + 1, few_words="positionwise")
    assert m.solvers[k_short] == "positionwise(G_1)"
    torch.testing.assert_close(m.maps[k_short][:, :, 0], m.maps[1][:, :, 0])
    assert bool((m.maps[k_short][:, :, 1:] == 0).all())


def test_fit_rejects_bad_options(pair: tuple[EmbeddingSpace, EmbeddingSpace]) -> None:
    """Bad option values raise ConfigError naming the option."""
    with pytest.raises(ConfigError, match="max_subtokens"):
        fit_map(*pair, words=WORDS, max_subtokens=0)
    with pytest.raises(ConfigError, match="few_words"):
        fit_map(*pair, words=WORDS, few_words="maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="same model"):
        fit(pair[0], pair[0], words=WORDS, cache=False)


def test_word_lists(tmp_path: Path) -> None:
    """Word lists come from a list, a file or WordNet, and name their source; a missing file is a ConfigError."""
    assert resolve_words(["b", "a", "a", " "]).words == ("a", "b")
    path = tmp_path / "words.txt"
    path.write_text("movie\nfilm\n\ntwo words\n")
    wl = read_word_list(path)
    assert wl.words == ("film", "movie") and str(path) in wl.source
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_words(tmp_path / "nope.txt")
    with pytest.raises(ConfigError, match="WordNet"):
        wordnet_words(tmp_path)
    if Path("/usr/share/wordnet/index.noun").is_file():
        wn = wordnet_words()
        assert len(wn.words) > 50_000 and "movie" in wn.words and "WordNet 3.0" in wn.source
        assert all(" " not in w and "_" not in w for w in wn.words)


# -- cache ----------------------------------------------------------------------------------------------------------


def test_cache_round_trip(tmp_path: Path, fmap: FuseMap) -> None:
    """save_map/load_map give back the same tensors and metadata; the header reads without tensors."""
    path = save_map(fmap, tmp_path / "m.safetensors")
    back = load_map(path)
    assert set(back.maps) == set(fmap.maps)
    for k in fmap.maps:
        assert torch.equal(back.maps[k], fmap.maps[k])
    assert dict(back.source) == dict(fmap.source) and dict(back.target) == dict(fmap.target)
    assert dict(back.words_per_k) == dict(fmap.words_per_k) and dict(back.solvers) == dict(fmap.solvers)
    assert dict(back.settings) == dict(fmap.settings) and back.word_source == fmap.word_source
    info = read_map_info(path)
    assert info["tpv.kind"] == "fuse-map" and info["tpv.fuse.source"]["model"] == "src"
    sidecar = json.loads(Path(str(path) + ".json").read_text())
    assert sidecar["tpv.fuse.words_per_k"] == {str(k): v for k, v in fmap.words_per_k.items()}


def test_fit_uses_the_cache_and_refuses_a_mismatch(tmp_path: Path, pair: tuple[EmbeddingSpace, EmbeddingSpace]) -> None:
    """A second fit loads the cached map; changed embeddings under the same name raise MapMismatchError."""
    first = fit(*pair, words=WORDS, max_subtokens=2, min_words=8, cache=tmp_path)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and files[0].name.startswith("src--to--tgt--")
    again = fit(*pair, words=WORDS, max_subtokens=2, min_words=8, cache=tmp_path)
    assert again.created == first.created and torch.equal(again.maps[2], first.maps[2])
    changed = EmbeddingSpace("tgt", pair[1].tokenizer, pair[1].embeddings + 1)
    with pytest.raises(MapMismatchError, match="target embedding_sha256"):
        fit(pair[0], changed, words=WORDS, max_subtokens=2, min_words=8, cache=tmp_path)
    redone = fit(pair[0], changed, words=WORDS, max_subtokens=2, min_words=8, cache=tmp_path, refit=True)
    redone.check(pair[0], changed)
    other = fit(*pair, words=WORDS, max_subtokens=3, min_words=8, cache=tmp_path)
    assert other.max_subtokens == 3 and len(list(tmp_path.glob("*.safetensors"))) == 2


def test_map_mismatch_names_the_tokenizer(fmap: FuseMap, toks: tuple[Any, Any]) -> None:
    """A map checked against another tokenizer raises MapMismatchError naming the field."""
    other = space("src", toks[1], 6, 1)
    with pytest.raises(MapMismatchError, match="source tokenizer_sha256"):
        fmap.check(other, fmap.target)


def test_load_refuses_pickle_and_other_files(tmp_path: Path) -> None:
    """A pickle file, a non-map tpv file and a garbage file raise FormatError; nothing is unpickled."""
    pkl = tmp_path / "m.safetensors"
    pkl.write_bytes(b"\x80\x04\x95" + b"\x00" * 20)
    with pytest.raises(FormatError, match="pickle"):
        load_map(pkl)
    origin_file = tpv.save(tpv.Origin.gaussian(2, 3, seed=0), tmp_path / "o.safetensors")
    with pytest.raises(FormatError, match="not a FUSE map"):
        load_map(origin_file)
    junk = tmp_path / "j.safetensors"
    junk.write_bytes(b"hello world, not a safetensors file")
    with pytest.raises(FormatError, match="not a valid safetensors"):
        load_map(junk)
    with pytest.raises(FormatError, match="no map file"):
        load_map(tmp_path / "missing.safetensors")


# -- the bridge -----------------------------------------------------------------------------------------------------

TEXT = "kalo mine rutaso pedi fuba dika zeka lomi"


def test_alignment_covers_every_token(toks: tuple[Any, Any]) -> None:
    """Segments partition both token sequences in order, and each segment's text is whole words."""
    al = align_words(TEXT, *toks)
    assert al.source_ids == tuple(toks[0](TEXT, add_special_tokens=False)["input_ids"])
    s_pos = t_pos = 0
    for seg in al.segments:
        assert seg.source_start == s_pos and seg.target_start == t_pos
        s_pos, t_pos = seg.source_end, seg.target_end
        assert seg.text in TEXT.split()
    assert s_pos == len(al.source_ids) and t_pos == len(al.target_ids)
    assert [s.text for s in al.segments] == TEXT.split()


def test_bridge_gradient_passes_gradcheck(toks: tuple[Any, Any], fmap: FuseMap) -> None:
    """The linear bridge's backward is the exact gradient of its forward (torch.autograd.gradcheck)."""
    al = align_words("baka rutaso zeka", *toks)
    assert {s.target_len for s in al.segments} == {1, 2, 3}
    m64 = FuseMap(**{**fmap.__dict__, "maps": {k: g.double() for k, g in fmap.maps.items()}})
    x = rand(len(al.source_ids), 6, seed=9).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: bridge_prompt(t, al, m64), (x,))


def test_bridge_gradient_is_the_chain_rule_through_g(
    toks: tuple[Any, Any], fmap: FuseMap, pair: tuple[EmbeddingSpace, EmbeddingSpace]
) -> None:
    """Straight-through: forward returns the true target embeddings, backward the gradient through push_forward."""
    al = align_words(TEXT, *toks)
    x = pair[0].embeddings[list(al.source_ids)].double().requires_grad_(True)
    y_true = pair[1].embeddings[list(al.target_ids)].double()
    c = rand(len(al.target_ids), 5, seed=4)
    y = bridge_prompt(x, al, fmap, target_embeds=y_true)
    assert torch.equal(y.detach(), y_true)
    (g_bridge,) = torch.autograd.grad((y * c).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    (g_chain,) = torch.autograd.grad((push_forward(x2, al, fmap) * c).sum(), x2)
    torch.testing.assert_close(g_bridge, g_chain)
    torch.testing.assert_close(pull_back(c, al, fmap), g_chain)


def test_bridge_gives_no_gradient_beyond_k(toks: tuple[Any, Any], pair: tuple[EmbeddingSpace, EmbeddingSpace]) -> None:
    """Stated fallback: segments longer than K target tokens get zero gradient."""
    m1 = fit_map(*pair, words=WORDS, max_subtokens=1, min_words=8)
    al = align_words(TEXT, *toks)
    g = pull_back(torch.ones(len(al.target_ids), 5, dtype=torch.float64), al, m1)
    for seg in al.segments:
        part = g[seg.source_start : seg.source_end]
        assert bool((part == 0).all()) == (seg.target_len > 1)


def test_bridge_rejects_bad_shapes(toks: tuple[Any, Any], fmap: FuseMap) -> None:
    """A source tensor that does not fit the alignment raises ConfigError."""
    al = align_words(TEXT, *toks)
    with pytest.raises(ConfigError, match="x_source must have shape"):
        bridge_prompt(torch.zeros(1, 6), al, fmap)


# -- moving soft prompts and vectors ------------------------------------------------------------------------------


def test_apply_moves_prompts_origins_and_vectors(fmap: FuseMap) -> None:
    """A prompt maps by G_1; moving commutes with origin + tau; the moved vector belongs to the moved origin."""
    origin = tpv.Origin.gaussian(4, 6, seed=0)
    tau = tpv.TaskPromptVector.from_prompts(origin.tensor + rand(4, 6, seed=2).float(), origin, task="t")
    torch.testing.assert_close(map_prompt(fmap, origin.tensor), origin.tensor @ fmap.maps[1][:, :, 0])
    o2 = apply(fmap, origin)
    t2 = apply(fmap, tau, origin=origin)
    assert o2.token_dim == 5 and o2.base_model == "tgt" and t2.origin_id == o2.id and dict(t2.terms) == {"t": 1.0}
    moved_prompt = apply(fmap, tau.apply_to(origin))
    torch.testing.assert_close(t2.apply_to(o2), moved_prompt, rtol=1e-5, atol=1e-5)
    two = map_prompt(fmap, origin.tensor, word_length=2)
    x = origin.tensor.double().reshape(2, 2, 6).permute(0, 2, 1)
    torch.testing.assert_close(two, fmap.map_words(x).permute(0, 2, 1).reshape(4, 5).float())


def test_apply_errors(fmap: FuseMap) -> None:
    """Missing or wrong origin, wrong width, bad word length and another model's item each raise one clear error."""
    origin = tpv.Origin.gaussian(4, 6, seed=0)
    tau = tpv.TaskPromptVector.from_prompts(origin.tensor + 1, origin, task="t")
    with pytest.raises(ConfigError, match="needs the origin"):
        apply(fmap, tau)  # type: ignore[call-overload]
    with pytest.raises(IncompatibleVectorsError, match="tuned from origin"):
        apply(fmap, tau, origin=tpv.Origin.gaussian(4, 6, seed=1))
    with pytest.raises(ConfigError, match="width 7"):
        map_prompt(fmap, torch.zeros(4, 7))
    with pytest.raises(ConfigError, match="word_length"):
        map_prompt(fmap, torch.zeros(4, 6), word_length=9)
    with pytest.raises(ConfigError, match="cannot be cut"):
        map_prompt(fmap, torch.zeros(3, 6), word_length=2)
    foreign = tpv.Origin(torch.zeros(4, 6), base_model="gemma3-270m")
    with pytest.raises(IncompatibleVectorsError, match="maps from 'src'"):
        apply(fmap, foreign)


# -- the search on tiny models --------------------------------------------------------------------------------------


@pytest.fixture
def tiny_members(tiny: Any) -> tuple[EmbeddingSpace, list[Member]]:
    """A tiny Llama (source) and a tiny Gemma-3 with a k=1 map between them, scored on a toy sentiment set."""
    from tiny_models import WORDS as TINY_WORDS

    llama, tok_l = tiny("llama", seed=0)
    gemma, tok_g = tiny("gemma3", seed=0)
    src = EmbeddingSpace.from_model(llama, tok_l, name="tiny-llama")
    tgt = EmbeddingSpace.from_model(gemma, tok_g, name="tiny-gemma3")
    m = fit_map(src, tgt, words=[w for w in TINY_WORDS if w.isalpha()], max_subtokens=1, min_words=8)
    texts = ["the movie was great", "awful boring film", "i loved it", "dull and bad plot"]
    labels = [1, 0, 1, 0]
    members = [
        Member("llama", src, LabelWordLoss(llama, tok_l, texts, labels, template=" {text} sentiment:"), 0.5),
        Member("gemma3", tgt, LabelWordLoss(gemma, tok_g, texts, labels, template=" {text} sentiment:"), 0.5, m),
    ]
    return src, members


def test_label_word_loss_agrees_between_ids_and_embeddings(tiny_members: tuple[EmbeddingSpace, list[Member]]) -> None:
    """The differentiable loss on prompt embeddings equals the loss on prompt ids (Gemma's scale included)."""
    _, members = tiny_members
    for m in members:
        ids = m.space.tokenizer("what is the sentiment", add_special_tokens=False)["input_ids"]
        by_embeds = m.loss.loss_from_embeds(m.space.embeddings[ids])
        torch.testing.assert_close(by_embeds.float(), m.loss.losses([ids])[0].float(), rtol=1e-4, atol=1e-5)


def test_search_improves_a_joint_objective(tiny_members: tuple[EmbeddingSpace, list[Member]]) -> None:
    """A short greedy and a beam search never end worse than the start, and return a prompt that round-trips."""
    src, members = tiny_members
    grad = source_gradient(members, src, src.tokenizer("what is the sentiment", add_special_tokens=False)["input_ids"])
    assert grad.shape == (4, 32) and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
    records: list[dict[str, Any]] = []
    res = optimize_prompt(members, src, "what is the sentiment", steps=2, topk=8, candidates=6, on_step=records.append)
    assert res.objective <= res.history[0]["objective"] and len(records) == 2
    assert src.tokenizer(res.text, add_special_tokens=False)["input_ids"] == res.ids
    assert set(res.member_losses) == {"llama", "gemma3"}
    beam = optimize_prompt(members, src, "what is the sentiment", steps=1, topk=8, candidates=4, beam_width=3)
    assert beam.objective <= beam.history[0]["objective"]
    with pytest.raises(ConfigError, match="steps"):
        optimize_prompt(members, src, "what", steps=-1)


# -- CLI --------------------------------------------------------------------------------------------------------------


def test_cli_help_has_examples() -> None:
    """Each `tpv fuse` command's --help shows an example."""
    from tpv.cli.fuse import app

    runner = CliRunner()
    for cmd in ("fit", "apply"):
        result = runner.invoke(app, [cmd, "--help"])
        assert result.exit_code == 0 and "Example" in result.output and f"tpv fuse {cmd}" in result.output


def test_cli_fit_and_apply(tmp_path: Path, tiny: Any) -> None:
    """`tpv fuse fit` writes a map for two model folders; `tpv fuse apply` moves an origin and a vector with it."""
    from tiny_models import WORDS as TINY_WORDS

    from tpv.cli.fuse import app

    folders = []
    for kind in ("llama", "gemma3"):
        model, tok = tiny(kind, seed=0)
        folder = tmp_path / kind
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        folders.append(str(folder))
    words = tmp_path / "words.txt"
    words.write_text("\n".join(w for w in TINY_WORDS if w.isalpha()))
    runner = CliRunner()
    map_file = tmp_path / "map.safetensors"
    args = ["fit", *folders, "--words", str(words), "--max-subtokens", "1", "--min-words", "8", "--no-cache"]
    result = runner.invoke(app, [*args, "-o", str(map_file), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["words_per_k"]["1"] > 8 and map_file.is_file()
    origin = tpv.Origin.gaussian(3, 32, seed=0)
    tau = tpv.TaskPromptVector.from_prompts(origin.tensor * 2, origin, task="t")
    o_file, t_file = tpv.save(origin, tmp_path / "o.safetensors"), tpv.save(tau, tmp_path / "t.safetensors")
    result = runner.invoke(
        app, ["apply", str(map_file), str(t_file), "--origin", str(o_file), "-o", str(tmp_path / "g.st")]
    )
    assert result.exit_code == 0, result.output
    moved, moved_origin = tpv.load_vector(tmp_path / "g.st"), tpv.load_origin(tmp_path / "g.origin.st")
    assert moved.token_dim == 24 and moved.origin_id == moved_origin.id
    result = runner.invoke(app, ["apply", str(map_file), str(t_file), "-o", str(tmp_path / "x.st")])
    assert result.exit_code == 2 and "--origin" in result.output
    result = runner.invoke(app, ["fit", *folders, "--words", str(words), "--min-words", "8", "--no-cache"])
    assert result.exit_code == 2 and "NotEnoughWordsError" in result.output


def test_shared_types_keep_their_old_names() -> None:
    """One embedding-space type, one error tree, distinct result names; the old import paths still work."""
    import tpv.errors
    import tpv.fuse
    import tpv.models
    import tpv.transfer
    from tpv.fuse.errors import FuseError as OldFuseError
    from tpv.transfer.anchors import AnchorError as OldAnchorError

    assert tpv.fuse.EmbeddingSpace is tpv.transfer.ModelSpace is tpv.spaces.EmbeddingSpace
    assert OldFuseError is tpv.errors.FuseError and OldAnchorError is tpv.errors.AnchorError
    for name in ("NotEnoughWordsError", "SingularSystemError", "MapMismatchError"):
        assert getattr(tpv.fuse, name) is getattr(tpv.errors, name)
        assert issubclass(getattr(tpv.errors, name), tpv.errors.FuseError)
    assert issubclass(tpv.errors.AnchorError, tpv.errors.ModelError)
    assert tpv.fuse.SearchResult is tpv.fuse.BridgeResult
    assert tpv.transfer.SearchResult is tpv.transfer.CodeSearchResult
    emb = torch.randn(5, 3)
    assert tpv.spaces.EmbeddingSpace("m", emb).tokenizer is None  # transfer with given anchors needs none
    tok = bpe_tokenizer(300, metaspace=False)
    space = tpv.fuse.EmbeddingSpace("m", tok, emb)  # the former tpv.fuse order (name, tokenizer, embeddings)
    assert space.embeddings is emb and space.tokenizer is tok
    assert tpv.transfer.ModelSpace("m", emb, tok).tokenizer is tok  # the former tpv.transfer order
