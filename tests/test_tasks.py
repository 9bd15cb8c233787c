"""Task registry, specs, loaders (local fixture files and a stand-in for the hub) and the ``tpv tasks`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tpv.errors import ConfigError, TaskError
from tpv.tasks import (
    Example,
    TaskData,
    TaskGroup,
    TaskSpec,
    availability,
    carve_held_out,
    dedupe,
    get_group,
    get_task,
    list_groups,
    list_tasks,
    load_task,
    read_rows,
    register_task,
    split_like_paper,
)
from tpv.tasks import registry as registry_module
from tpv.tasks.offline import OFFLINE_SPECS

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"

GLUE = ("mnli", "qnli", "qqp", "sst2", "stsb", "mrpc", "rte", "cola")
SUPERGLUE = ("boolq", "cb", "superglue_rte", "wic", "copa")
PAPER = (
    "mnli", "qnli", "scitail", "snli", "dbpedia", "trec_coarse", "ag_news", "yahoo_answers",
    "sst2", "yelp_polarity", "sst5", "imdb",
)  # fmt: skip


def _spec(**overrides: Any) -> TaskSpec:
    fields: dict[str, Any] = {
        "name": "toy",
        "group": "test",
        "source": "local",
        "text_fields": ("text",),
        "template": "Text: {text}\nLabel:",
        "label_words": (" no", " yes"),
        "label_names": ("no", "yes"),
        "metric": "accuracy",
    }
    fields.update(overrides)
    return TaskSpec(**fields)


def _examples(n: int, classes: int = 2, prefix: str = "t") -> list[Example]:
    return [Example(f"{prefix}{i}", i % classes) for i in range(n)]


# --- registry ---------------------------------------------------------------------------------------------------


def test_registry_covers_glue_superglue_and_the_paper() -> None:
    """Every GLUE, SuperGLUE and paper task the issue names is registered, each from the hub."""
    names = {spec.name for spec in list_tasks()}
    assert set(GLUE) | set(SUPERGLUE) | set(PAPER) <= names
    for name in (*GLUE, *SUPERGLUE, *PAPER):
        spec = get_task(name)
        assert spec.source == "hub" and spec.hub_path


def test_paper_groups_name_two_sources_and_two_targets() -> None:
    """The paper's three groups have its sources and targets."""
    assert get_group("paper-nli").sources == ("mnli", "qnli")
    assert get_group("paper-nli").targets == ("scitail", "snli")
    assert get_group("paper-topic").sources == ("dbpedia", "trec_coarse")
    assert get_group("paper-topic").targets == ("ag_news", "yahoo_answers")
    assert get_group("paper-sentiment").sources == ("sst2", "yelp_polarity")
    assert get_group("paper-sentiment").targets == ("sst5", "imdb")
    assert set(get_group("glue").tasks) == set(GLUE)


def test_every_group_member_is_registered() -> None:
    """Each group's members resolve to registered specs, and no task is both source and target of a group."""
    for group in list_groups():
        for name in group.tasks:
            get_task(name)
        assert not set(group.sources) & set(group.targets)


BUILTIN = [*registry_module.HUB_SPECS, *OFFLINE_SPECS]


def test_every_builtin_spec_is_consistent() -> None:
    """Built-in specs: label words start with a space, templates end with a cue, provenance is filled in."""
    for spec in BUILTIN:
        assert spec.template.rstrip().endswith(":"), spec.name
        assert all(w.startswith(" ") and w.strip() for w in spec.label_words), spec.name
        assert spec.description and spec.licence and spec.size and spec.balance and spec.install, spec.name
        assert spec.is_regression == (spec.metric in ("pearson", "spearman"))


def test_get_task_ignores_case_and_punctuation() -> None:
    """'SST-2' and 'Rotten-Tomatoes' find the registered names."""
    assert get_task("SST-2").name == "sst2"
    assert get_task("Rotten-Tomatoes").name == "rotten_tomatoes"


def test_unknown_task_lists_close_names() -> None:
    """An unknown name raises TaskError naming close matches."""
    with pytest.raises(TaskError, match="rotten_tomatoes"):
        get_task("rotten_tomatos")


def test_register_task_refuses_a_taken_name() -> None:
    """Registering over an existing name needs replace=True."""
    with pytest.raises(ConfigError, match="already registered"):
        register_task(_spec(name="sst2"))


def test_register_task_adds_and_replaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new spec is found by name; replace=True swaps it."""
    monkeypatch.setattr(registry_module, "_TASKS", dict(registry_module._TASKS))
    register_task(_spec(name="my_toy"))
    assert get_task("my_toy").metric == "accuracy"
    register_task(_spec(name="my_toy", metric="macro_f1"), replace=True)
    assert get_task("my_toy").metric == "macro_f1"


def test_list_tasks_by_group() -> None:
    """list_tasks(group) returns a group's members, or the tasks whose group field matches."""
    assert [s.name for s in list_tasks("superglue")] == list(SUPERGLUE)
    with pytest.raises(TaskError, match="unknown group"):
        list_tasks("no-such-group")


# --- spec validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"metric": "bleu"}, "metric"),
        ({"label_words": ("no", " yes")}, "leading space"),
        ({"label_words": (" no",), "label_names": ("no",)}, "at least 2"),
        ({"label_names": ("no", "yes", "maybe")}, "one word per label"),
        ({"template": "Text: {txt}\nLabel:"}, "txt"),
        ({"label_words": (" yes", " yes")}, "repeat"),
        ({"source": "hub"}, "hub_path"),
        ({"metric": "pearson"}, "regression"),
    ],
)
def test_spec_validation_names_the_broken_rule(overrides: dict[str, Any], message: str) -> None:
    """A bad field raises ConfigError whose message names the problem."""
    with pytest.raises(ConfigError, match=message):
        _spec(**overrides)


def test_render_truncates_long_fields_keeping_both_ends() -> None:
    """max_chars keeps the head and the tail of a long field and the template's cue."""
    spec = _spec(max_chars=40)
    text = spec.render({"text": "start " + "middle " * 50 + "the end"})
    assert text.startswith("Text: start") and text.endswith("the end\nLabel:")
    assert len(text) <= len("Text: \nLabel:") + 40


def test_group_refuses_a_task_in_both_roles() -> None:
    """A TaskGroup cannot list one task as source and target."""
    with pytest.raises(ConfigError, match="both"):
        TaskGroup("g", "d", sources=("a",), targets=("a",))


# --- reading files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["sst2_train.csv", "scitail_train.jsonl", "cola_train.json", "stsb_train.tsv", "snli_train.parquet"],
)
def test_read_rows_reads_every_format(name: str) -> None:
    """csv, jsonl, json, tsv and parquet fixtures read into dict rows."""
    rows = read_rows(FIXTURES / name)
    assert rows and all(isinstance(row, dict) and "label" in row for row in rows)


def test_read_rows_errors_are_one_clear_task_error(tmp_path: Path) -> None:
    """Missing, unknown-format and malformed files raise TaskError naming the file."""
    with pytest.raises(TaskError, match="does not exist"):
        read_rows(tmp_path / "nope.csv")
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(TaskError, match="unknown format"):
        read_rows(tmp_path / "x.xml")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(TaskError, match="line 2"):
        read_rows(tmp_path / "bad.jsonl")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(TaskError, match=r"bad\.parquet"):
        read_rows(tmp_path / "bad.parquet")


# --- loading local files ---------------------------------------------------------------------------------------


def test_load_sst2_from_local_files_splits_validation_in_half() -> None:
    """A small dataset keeps its training set and halves its validation set into validation and test."""
    files = {"train": FIXTURES / "sst2_train.csv", "validation": FIXTURES / "sst2_validation.csv"}
    data = load_task("sst2", data_files=files, seed=0)
    assert isinstance(data, TaskData)
    assert data.sizes() == {"train": 20, "validation": 4, "test": 4}
    assert data.train[0].text.startswith("Sentence: ") and data.train[0].text.endswith("\nSentiment:")
    assert {ex.label for ex in data.train} == {0, 1}
    held = {ex.text for ex in data.validation} | {ex.text for ex in data.test}
    assert len(held) == 8


def test_label_names_in_files_map_to_indices() -> None:
    """SciTail's string labels ('entails', 'neutral') become indices of the spec's label names."""
    files = {"train": FIXTURES / "scitail_train.jsonl", "validation": FIXTURES / "scitail_validation.jsonl"}
    data = load_task("scitail", data_files=files)
    spec = get_task("scitail")
    assert Counter(spec.label_names[int(ex.label)] for ex in data.train) == {"entails": 3, "neutral": 3}


def test_unlabelled_rows_are_dropped() -> None:
    """SNLI rows with label -1 (no gold label) are dropped; a train-only file gets a carved held-out set."""
    data = load_task("snli", data_files=FIXTURES / "snli_train.parquet")
    texts = [ex.text for ex in (*data.train, *data.validation, *data.test)]
    assert len(texts) == 6 and not any("skates down" in t for t in texts)


def test_regression_labels_are_floats() -> None:
    """STS-B scores load as floats; a regression task has no label words."""
    data = load_task("stsb", data_files={"train": FIXTURES / "stsb_train.tsv"})
    assert all(isinstance(ex.label, float) for ex in data.train)
    assert get_task("stsb").label_words == ()


def test_three_files_are_used_as_given() -> None:
    """Given train, validation and test files, no split is redrawn."""
    files = {
        "train": FIXTURES / "cola_train.json",
        "validation": FIXTURES / "cola_train.json",
        "test": FIXTURES / "cola_train.json",
    }
    data = load_task("cola", data_files=files, seed=3)
    assert data.sizes() == {"train": 6, "validation": 6, "test": 6}
    assert [ex.text for ex in data.test] == [ex.text for ex in data.train]


def test_local_spec_loads_its_own_files() -> None:
    """A spec with source 'local' reads its local_files."""
    spec = _spec(
        name="toy_local",
        text_fields=("sentence",),
        template="Sentence: {sentence}\nAnswer:",
        label_names=("unacceptable", "acceptable"),
        local_files=(("train", str(FIXTURES / "cola_train.json")),),
    )
    data = load_task(spec)
    assert sum(data.sizes().values()) == 6
    assert availability(spec)[0] is True


def test_same_seed_same_split_other_seed_other_split() -> None:
    """Loading is deterministic under a seed; another seed draws another split."""
    files = {"train": FIXTURES / "sst2_train.csv", "validation": FIXTURES / "sst2_validation.csv"}
    a, b = load_task("sst2", data_files=files, seed=0), load_task("sst2", data_files=files, seed=0)
    c = load_task("sst2", data_files=files, seed=1)
    assert a == b
    assert [ex.text for ex in a.train] != [ex.text for ex in c.train]


def test_max_examples_is_stratified() -> None:
    """max_examples caps every split and keeps both classes."""
    files = {"train": FIXTURES / "sst2_train.csv", "validation": FIXTURES / "sst2_validation.csv"}
    data = load_task("sst2", data_files=files, max_examples=6)
    assert len(data.train) == 6
    assert Counter(ex.label for ex in data.train) == {0: 4, 1: 2}  # 13:7 in the file, largest remainder


def test_bad_rows_raise_task_error(tmp_path: Path) -> None:
    """A missing field, an unknown label name or an out-of-range index raises TaskError naming the row."""
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nfine,1\n")
    with pytest.raises(TaskError, match="no field 'sentence'"):
        load_task("sst2", data_files=bad)
    bad.write_text("sentence,label\nfine,excellent\n")
    with pytest.raises(TaskError, match="row 1"):
        load_task("sst2", data_files=bad)
    bad.write_text("sentence,label\nfine,7\n")
    with pytest.raises(TaskError, match="out of range"):
        load_task("sst2", data_files=bad)


def test_bad_arguments_raise_config_error() -> None:
    """Bad data_files keys, seeds or max_examples raise ConfigError."""
    with pytest.raises(ConfigError, match="unknown split"):
        load_task("sst2", data_files={"train": FIXTURES / "sst2_train.csv", "dev": "x"})
    with pytest.raises(ConfigError, match="train"):
        load_task("sst2", data_files={"validation": FIXTURES / "sst2_validation.csv"})
    with pytest.raises(ConfigError, match="max_examples"):
        load_task("sst2", data_files=FIXTURES / "sst2_train.csv", max_examples=0)
    with pytest.raises(ConfigError, match="seed"):
        load_task("sst2", data_files=FIXTURES / "sst2_train.csv", seed="0")  # type: ignore[arg-type]


# --- the paper's split rule ------------------------------------------------------------------------------------


def test_large_training_sets_give_1000_to_validation() -> None:
    """Over 10k training examples: 1000 move to validation and the held-out set is the test set, untouched."""
    train, held = _examples(10_001), _examples(300, prefix="h")
    tr, va, te = split_like_paper(train, held, seed=0)
    assert (len(tr), len(va), len(te)) == (9_001, 1_000, 300)
    assert te == held
    assert {e.text for e in tr} | {e.text for e in va} == {e.text for e in train}


def test_small_training_sets_split_validation_in_half() -> None:
    """Up to 10k training examples: training kept whole, the held-out set halved."""
    tr, va, te = split_like_paper(_examples(10_000), _examples(301, prefix="h"), seed=0)
    assert (len(tr), len(va), len(te)) == (10_000, 150, 151)
    assert not {e.text for e in va} & {e.text for e in te}


def test_carve_is_stratified_and_seed_free() -> None:
    """carve_held_out keeps the class balance and depends only on the texts."""
    pool = _examples(1_000, classes=4)
    rest, held = carve_held_out(pool, salt="x")
    assert len(held) == 200 and Counter(e.label for e in held) == dict.fromkeys(range(4), 50)
    assert carve_held_out(list(reversed(pool)), salt="x")[1] == held
    assert len(rest) + len(held) == len(pool)


def test_dedupe_drops_repeats_and_conflicts() -> None:
    """A repeated text keeps one copy; a text with two labels is dropped."""
    examples = [Example("a", 0), Example("a", 0), Example("b", 0), Example("b", 1), Example("c", 1)]
    assert dedupe(examples) == [Example("a", 0), Example("c", 1)]


# --- the hub loader (with a stand-in ``datasets``: no network in tests) ------------------------------------------


class _FakeDataset:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.column_names = list(rows[0]) if rows else []

    def select_columns(self, columns: list[str]) -> _FakeDataset:
        return _FakeDataset([{c: row[c] for c in columns} for row in self.rows])

    def to_dict(self) -> dict[str, list[Any]]:
        return {c: [row[c] for row in self.rows] for c in self.column_names}


def _fake_datasets(monkeypatch: pytest.MonkeyPatch, splits: dict[str, list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def load_dataset(path: str, name: str | None = None, split: str | None = None) -> _FakeDataset:
        calls.append((path, name, split))
        if split not in splits:
            raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")
        return _FakeDataset(splits[split])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hub_loader_calls_load_dataset_with_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub task asks datasets.load_dataset for its path, subset and splits, and renders the rows."""
    splits = {
        "train": read_rows(FIXTURES / "sst2_train.csv"),
        "validation": read_rows(FIXTURES / "sst2_validation.csv"),
    }
    for rows in splits.values():
        for row in rows:
            row["label"] = int(row["label"])
    calls = _fake_datasets(monkeypatch, splits)
    data = load_task("sst2", seed=0)
    assert calls == [("nyu-mll/glue", "sst2", "train"), ("nyu-mll/glue", "sst2", "validation")]
    assert data.sizes() == {"train": 20, "validation": 4, "test": 4}


def test_hub_loader_large_dataset_uses_held_out_as_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """AG News (train over 10k, held-out split 'test'): 1000 training rows validate, the test split tests."""
    train = [{"text": f"news {i}", "label": i % 4} for i in range(10_010)]
    test = [{"text": f"held {i}", "label": i % 4} for i in range(40)]
    _fake_datasets(monkeypatch, {"train": train, "test": test})
    data = load_task("ag_news", seed=0)
    assert data.sizes() == {"train": 9_010, "validation": 1_000, "test": 40}
    assert all(ex.text.startswith("Article: held") for ex in data.test)
    assert load_task("ag_news", seed=1).test == data.test


def test_hub_failure_is_one_task_error_with_the_offline_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: the error names the dataset and says to pass data_files."""
    _fake_datasets(monkeypatch, {})
    with pytest.raises(TaskError, match=r"nyu-mll/glue \(cola\).*data_files"):
        load_task("cola")


def test_hub_without_datasets_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the datasets package, a hub task says to pip install datasets."""
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(TaskError, match="pip install datasets"):
        load_task("cola")
    assert availability(get_task("cola")) == (False, "needs the datasets package and internet: pip install datasets")


def test_hub_missing_column_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub split without the spec's fields raises TaskError listing the columns it has."""
    _fake_datasets(monkeypatch, {"train": [{"txt": "a", "label": 0}], "validation": [{"txt": "b", "label": 1}]})
    with pytest.raises(TaskError, match="no column"):
        load_task("sst2")


def test_docs_page_lists_every_builtin_task() -> None:
    """docs/tasks.md has a table row for every built-in task, with its label words."""
    page = (Path(__file__).parent.parent / "docs" / "tasks.md").read_text()
    for spec in BUILTIN:
        row = next((line for line in page.splitlines() if line.startswith(f"| `{spec.name}` |")), None)
        assert row is not None, spec.name
        assert all(f"`{word.strip()}`" in row for word in spec.label_words), spec.name


def test_import_is_light() -> None:
    """Importing tpv.tasks imports neither datasets nor transformers."""
    code = "import sys, tpv.tasks; print(sorted(m for m in ('datasets', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- CLI --------------------------------------------------------------------------------------------------------


def _cli() -> Any:
    from tpv.cli.tasks import app

    return app


def test_cli_list_json_has_every_task() -> None:
    """`tpv tasks list --json` lists every task with group, data source and availability."""
    result = CliRunner().invoke(_cli(), ["list", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert {r["name"] for r in records} == {s.name for s in list_tasks()}
    sst2 = next(r for r in records if r["name"] == "sst2")
    assert sst2["group"] == "glue" and sst2["data"].startswith("hub: nyu-mll/glue")
    assert sst2["available"] in (None, False)


def test_cli_list_table_and_group_filter() -> None:
    """`tpv tasks list --group offline-pairs` prints only that group's tasks."""
    result = CliRunner().invoke(_cli(), ["list", "--group", "offline-pairs"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "wordnet_wic" in result.output and "sst2" not in result.output


def test_cli_show_prints_the_spec() -> None:
    """`tpv tasks show sst2` prints the template and label words."""
    result = CliRunner().invoke(_cli(), ["show", "sst2"])
    assert result.exit_code == 0
    assert "Sentiment:" in result.output and "' negative'" in result.output


def test_cli_known_errors_are_one_line_and_exit_2() -> None:
    """An unknown task or group prints one error line and exits with status 2."""
    for args in (["show", "rotten_tomatos"], ["list", "--group", "nope"]):
        result = CliRunner().invoke(_cli(), args)
        assert result.exit_code == 2
        assert result.output.strip().count("\n") == 0 and result.output.startswith("error")


def test_cli_every_command_help_has_an_example() -> None:
    """Each command's --help shows an example."""
    for command in ("list", "show"):
        result = CliRunner().invoke(_cli(), [command, "--help"])
        assert result.exit_code == 0 and "Example: tpv tasks" in result.output
