"""Prompt datasets from every source TRL users have: files, saved datasets, hub ids, in memory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from rlzoo.data import load_prompts, looks_like_hub_id, source_problem
from rlzoo.errors import ConfigError, DataError

ROWS = [{"prompt": "1+2=", "answer": "3"}, {"prompt": "4+4=", "answer": "8"}]
# GSM8K's exact schema: the prompt is 'question', the solution ends with '#### <final answer>'
GSM8K = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
                 "in May. How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
               "altogether in April and May.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
                 "babysitting. How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned "
               "0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _write(path: Path, rows: list) -> Path:
    """``rows`` as a file of the format its extension names."""
    if path.suffix == ".jsonl":
        return _jsonl(path, rows)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        ds = datasets.Dataset.from_list(rows)
        (ds.to_csv if path.suffix == ".csv" else ds.to_parquet)(str(path))
    return path


# -- sources -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["p.jsonl", "p.json", "p.csv", "p.parquet"])
def test_every_file_format(tmp_path, name) -> None:
    ds = load_prompts(_write(tmp_path / name, ROWS))
    assert isinstance(ds, datasets.Dataset)
    # CSV cells are typed as pandas (and datasets' csv loader) infer them: "3" reads as 3
    expected = [r | {"answer": int(r["answer"])} for r in ROWS] if name.endswith(".csv") else ROWS
    assert ds.column_names == ["prompt", "answer"] and list(ds) == expected


def test_json_lines_in_a_json_file_as_datasets_writes_them(tmp_path) -> None:
    path = tmp_path / "p.json"
    datasets.Dataset.from_list(ROWS).to_json(str(path))  # JSON Lines, whatever the extension
    assert list(load_prompts(path)) == ROWS


def test_jsonl_blank_lines_and_fields_missing_in_some_rows(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b", "level": 2}\n')
    assert list(load_prompts(path)) == [{"prompt": "a", "level": None}, {"prompt": "b", "level": 2}]


def test_save_to_disk_dataset_and_dataset_dict(tmp_path) -> None:
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "one"))
    assert list(load_prompts(tmp_path / "one")) == ROWS
    train, test = datasets.Dataset.from_list(ROWS), datasets.Dataset.from_list(ROWS[:1])
    datasets.DatasetDict(train=train, test=test).save_to_disk(str(tmp_path / "dict"))
    assert len(load_prompts(str(tmp_path / "dict"))) == 2
    assert list(load_prompts(tmp_path / "dict", split="test")) == ROWS[:1]


def test_saved_dataset_dict_without_the_split_lists_its_splits(tmp_path) -> None:
    ds = datasets.Dataset.from_list(ROWS)
    datasets.DatasetDict(train=ds, test=ds).save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(ConfigError, match=r"dict' has splits train, test; there is no split 'validation'"):
        load_prompts(tmp_path / "dict", split="validation")


def test_folder_of_data_files_reads_through_load_dataset(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")  # not the user's cache
    _jsonl((tmp_path / "repo").mkdir() or tmp_path / "repo" / "train.jsonl", ROWS)
    _jsonl(tmp_path / "repo" / "test.jsonl", ROWS[:1])
    assert list(load_prompts(tmp_path / "repo", split="test")) == ROWS[:1]


def test_in_memory_dataset_and_dataset_dict() -> None:
    ds = datasets.Dataset.from_list(ROWS)
    assert list(load_prompts(ds)) == ROWS
    assert list(load_prompts(datasets.DatasetDict(test=ds), split="test")) == ROWS
    with pytest.raises(ConfigError, match=r"the DatasetDict passed in has splits test; there is no split 'train'"):
        load_prompts(datasets.DatasetDict(test=ds))


def test_gsm8k_schema_with_prompt_column(tmp_path) -> None:
    ds = load_prompts(_write(tmp_path / "train.parquet", GSM8K), prompt_column="question")
    assert ds.column_names == ["prompt", "answer"]  # the other columns stay, for the reward functions
    assert ds[0]["prompt"] == GSM8K[0]["question"] and ds[1]["answer"].endswith("\n#### 10")


# -- shaping -----------------------------------------------------------------------------------


def test_chat_without_and_with_a_system_prompt(tmp_path) -> None:
    path = _write(tmp_path / "gsm8k.jsonl", GSM8K)
    question = GSM8K[0]["question"]
    assert load_prompts(path, prompt_column="question", chat=True)[0]["prompt"] == [
        {"role": "user", "content": question}]
    ds = load_prompts(path, prompt_column="question", chat=True, system_prompt="Think step by step.")
    assert ds[0]["prompt"] == [{"role": "system", "content": "Think step by step."},
                               {"role": "user", "content": question}]
    assert ds.column_names == ["prompt", "answer"] and ds[0]["answer"] == GSM8K[0]["answer"]


def test_system_prompt_prefixes_a_plain_text_prompt() -> None:
    ds = load_prompts(datasets.Dataset.from_list(ROWS), system_prompt="Add the numbers.")
    assert ds[0]["prompt"] == "Add the numbers.\n\n1+2="


def test_message_prompts_pass_through_and_gain_a_system_message_only_if_they_have_none(tmp_path) -> None:
    user = [{"role": "user", "content": "1+2="}]
    system = [{"role": "system", "content": "Be terse."}, *user]
    path = _jsonl(tmp_path / "chat.jsonl", [{"prompt": user, "answer": "3"}, {"prompt": system, "answer": "3"}])
    assert [r["prompt"] for r in load_prompts(path)] == [user, system]
    assert [r["prompt"] for r in load_prompts(path, chat=True)] == [user, system]
    shaped = load_prompts(path, system_prompt="Answer with a number.")
    assert [r["prompt"] for r in shaped] == [[{"role": "system", "content": "Answer with a number."}, *user], system]


# -- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ConfigError, match=rf"dataset '{missing}' does not exist \(dataset is a .json/.jsonl"):
        load_prompts(missing)


def test_unknown_extension(tmp_path) -> None:
    (tmp_path / "p.txt").write_text("1+2=\n")
    with pytest.raises(ConfigError, match=r"p.txt': unknown file type '.txt'; rlzoo reads .json, .jsonl, .csv, .parquet"):
        load_prompts(tmp_path / "p.txt")


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "empty.csv", "empty.parquet", "header.csv"])
def test_empty_dataset(tmp_path, name) -> None:
    path = tmp_path / name
    if name == "empty.json":
        path.write_text("[]")
    elif name == "empty.parquet":
        datasets.Dataset.from_dict({"prompt": []}).to_parquet(str(path))
    else:
        path.write_text("prompt,answer\n" if name == "header.csv" else "")
    with pytest.raises(DataError, match=rf"dataset '.*{name}': no rows"):
        load_prompts(path)


def test_empty_in_memory_dataset() -> None:
    with pytest.raises(DataError, match=r"the Dataset passed in: no rows"):
        load_prompts(datasets.Dataset.from_dict({"prompt": []}))


@pytest.mark.parametrize("name", ["gsm8k.jsonl", "gsm8k.parquet", "gsm8k.csv"])
def test_missing_prompt_column_lists_the_columns_and_suggests_prompt_column(tmp_path, name) -> None:
    with pytest.raises(ConfigError, match=r"has no column 'prompt'; its columns are question, answer; pass prompt_column="):
        load_prompts(_write(tmp_path / name, GSM8K))


def test_prompt_column_clashing_with_a_prompt_column(tmp_path) -> None:
    rows = [{"prompt": "x", "question": "y"}]
    with pytest.raises(ConfigError, match=r"both a 'prompt' column and prompt_column 'question'"):
        load_prompts(_write(tmp_path / "p.parquet", rows), prompt_column="question")


def test_malformed_jsonl_line_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b",}\n')
    with pytest.raises(DataError, match=rf"dataset '{path}', line 3: invalid JSON \(Expecting property name"):
        load_prompts(path)


def test_jsonl_line_that_is_not_an_object(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n["b"]\n')
    with pytest.raises(DataError, match=r"p.jsonl', line 2: expected a JSON object, got list"):
        load_prompts(path)


def test_malformed_json_names_line_and_column(tmp_path) -> None:
    path = tmp_path / "p.json"
    path.write_text('[\n  {"prompt": "a"},\n  {"prompt" "b"}\n]')
    with pytest.raises(DataError, match=r"p.json', line 3, column 13: invalid JSON \(Expecting ':' delimiter\)"):
        load_prompts(path)


def test_json_that_is_not_a_list(tmp_path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"data": []}')
    with pytest.raises(DataError, match=r"expected a list of objects \(or JSON Lines.*got an object with keys \['data'\]"):
        load_prompts(path)


def test_binary_file_with_a_json_name(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    datasets.Dataset.from_list(ROWS).to_parquet(str(path))
    with pytest.raises(DataError, match=r"p.jsonl': not UTF-8 text"):
        load_prompts(path)


@pytest.mark.parametrize(
    ("prompt", "got"),
    [(7, "int: 7"), ([], "list: \\[\\]"), (["1+2="], "list: \\['1\\+2='\\]"), ([{"role": "user"}], "list: ")],
)
def test_prompt_neither_string_nor_messages_names_the_row(tmp_path, prompt, got) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "ok"}, {"prompt": prompt}])
    with pytest.raises(DataError, match=rf"p.jsonl', row 1 \(line 2\): the prompt must be a string or a non-empty list.*got {got}"):
        load_prompts(path)


def test_missing_prompt_in_one_row_names_the_row(tmp_path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [{"question": "ok"}, {"text": "no"}])
    with pytest.raises(DataError, match=r"row 1 \(line 2\): no 'question' field \(fields: text\)"):
        load_prompts(path, prompt_column="question")


def test_empty_csv_cell_is_a_bad_prompt_with_its_row(tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("question,answer\nq1,1\n,2\n")
    with pytest.raises(DataError, match=r"p.csv', row 1: the prompt \(column 'question'\) must be.*got NoneType"):
        load_prompts(path, prompt_column="question")


def test_mixed_types_in_a_column(tmp_path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "answer": 3}, {"prompt": "b", "answer": "x"}])
    with pytest.raises(DataError, match=r"the rows do not form a table .*a field must hold one type in every row"):
        load_prompts(path)


def test_a_file_has_only_the_train_split(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"is one file, so its one split is 'train'; there is no split 'test'"):
        load_prompts(_write(tmp_path / "p.jsonl", ROWS), split="test")


def test_hub_ids_and_local_paths_are_told_apart(tmp_path) -> None:
    for name in ("openai/gsm8k", "gsm8k", "HuggingFaceH4/MATH-500"):
        assert looks_like_hub_id(name) and source_problem(name) is None
    for name in ("/missing.jsonl", "data/x.parquet", "./x", "a/b/c", "../x", "~/x"):
        assert not looks_like_hub_id(name)
        assert source_problem(name, "eval_dataset") == (
            f"eval_dataset '{name}' does not exist (eval_dataset is a .json/.jsonl/.csv/.parquet file, "
            "a save_to_disk folder, or a hub id like 'openai/gsm8k')")
    assert "a file has no subsets" in source_problem(str(_write(tmp_path / "p.jsonl", ROWS)), subset="main")


def test_unknown_hub_id_offline_fails_at_once_saying_how_to_download(tmp_path) -> None:
    # a fresh process with an empty hub cache: HF_HUB_OFFLINE=1 must fail fast, never wait on the network
    script = (
        "from rlzoo.data import load_prompts\n"
        "from rlzoo.errors import ConfigError\n"
        "try:\n"
        "    load_prompts('rlzoo-test-nobody/made-up-dataset', split='train')\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root,
                         timeout=60, check=True).stdout
    assert "dataset 'rlzoo-test-nobody/made-up-dataset' is not a local file or folder" in out
    assert "HF_HUB_OFFLINE=1" in out and "Download it first where there is network" in out
    assert ("datasets.load_dataset('rlzoo-test-nobody/made-up-dataset', split='train')"
            ".save_to_disk('data/rlzoo-test-nobody_made-up-dataset')") in out
