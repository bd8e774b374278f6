"""Prompt datasets the way TRL users already have them: a file, a saved dataset, a hub id, or in memory.

:func:`load_prompts` turns any of them into a ``datasets.Dataset`` whose rows have a ``prompt``
(a string, or a list of ``{"role", "content"}`` chat messages); every other column stays, for the
reward functions. Sources:

- a local ``.json`` (a list of objects, or JSON Lines as ``Dataset.to_json`` writes them),
  ``.jsonl``, ``.csv`` or ``.parquet`` file: one split, ``"train"`` (CSV cells are typed as pandas
  and datasets' csv loader infer them: ``3`` is a number);
- a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``, or any other folder
  of data files ``datasets.load_dataset`` can read (a downloaded hub repository);
- a hub id (``openai/gsm8k``; ``subset`` is the hub's subset, what ``datasets`` calls the config
  name: ``main``), read through ``datasets.load_dataset(name, subset, split=split)``. Nothing is
  downloaded with ``HF_HUB_OFFLINE=1``: an id that is not cached fails at once, saying how to get it;
- a ``Dataset``, or a ``DatasetDict`` (then ``split`` picks one).

Prompt shaping, in this order:

1. ``prompt_column`` (e.g. GSM8K's ``question``) is renamed to ``prompt``;
2. ``chat=True`` turns a string prompt into ``[{"role": "user", "content": text}]``; a prompt that
   already is a list of messages passes through whatever ``chat`` says;
3. ``system_prompt`` goes in front of the prompt in the form the prompt has: a message list gets
   ``{"role": "system", "content": system_prompt}`` first (unless it already has a system
   message, which is kept), a plain-text prompt becomes ``system_prompt + "\\n\\n" + text`` (for
   base models without a chat template; use ``chat=True`` for a real system message).

Every problem is a :class:`~rlzoo.errors.ConfigError` (the source cannot be found or read as asked:
missing file, unknown extension, unknown split, missing column, hub id not available) or a
:class:`~rlzoo.errors.DataError` (the content is wrong: malformed JSON with file and line, no rows, a
prompt that is neither a string nor a message list, with its row), raised before any model loads.
"""

import json
import os
import re
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict

from rlzoo.errors import ConfigError, DataError

FILE_FORMATS = (".json", ".jsonl", ".csv", ".parquet")
"""The file extensions :func:`load_prompts` reads."""

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?", re.ASCII)
_KINDS = "a .json/.jsonl/.csv/.parquet file, a save_to_disk folder, or a hub id like 'openai/gsm8k'"


def looks_like_hub_id(source: str) -> bool:
    """``owner/name`` or a plain ``name`` that is not a local path and has no data-file extension."""
    return (
        _HUB_ID.fullmatch(source) is not None
        and not source.lower().endswith(FILE_FORMATS)
        and ".." not in source
        and not Path(source).exists()
    )


def source_problem(
    source: str, what: str = "dataset", *, split: str = "train", subset: str | None = None
) -> str | None:
    """What is wrong with ``source`` that can be told without reading it (None: nothing yet).

    A hub id passes here; whether the hub (or its cache) has it is found out by :func:`load_prompts`.
    """
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() not in FILE_FORMATS:
            return (
                f"{what} '{source}': unknown file type '{path.suffix or '(none)'}'; rlzoo reads {', '.join(FILE_FORMATS)} "
                "files (convert it, e.g. with pandas, or save it with datasets' save_to_disk)"
            )
        if subset is not None:
            return f"{what} '{source}': a file has no subsets; drop subset '{subset}' (it is for hub datasets)"
        if split != "train":
            return (
                f"{what} '{source}' is one file, so its one split is 'train'; there is no split '{split}' "
                "(name the evaluation data as a file of its own, e.g. --eval-dataset test.jsonl)"
            )
        return None
    if path.is_dir() or looks_like_hub_id(source):
        return None
    return f"{what} '{source}' does not exist ({what} is {_KINDS})"


def load_prompts(
    source: str | os.PathLike | Dataset | DatasetDict,
    *,
    split: str = "train",
    subset: str | None = None,
    prompt_column: str = "prompt",
    system_prompt: str | None = None,
    chat: bool = False,
) -> Dataset:
    """Prompt rows from ``source``, with a ``prompt`` field shaped as the module docstring says.

    Args:
        source: a local file or folder, a hub id, or a ``Dataset``/``DatasetDict``.
        split: which split; a lone file or a single ``Dataset`` has ``"train"`` (and a saved one
            also the split it was saved from).
        subset: the hub subset (config name), for hub ids and folders of data files only.
        prompt_column: the column that holds the prompt (e.g. ``question``); renamed to ``prompt``.
        system_prompt: a system message (message-list prompts) or a text prefix (string prompts).
        chat: render string prompts as a one-message chat (``[{"role": "user", ...}]``).

    Raises:
        ConfigError: the source cannot be found or read as asked.
        DataError: its content is malformed (the file and line, or the row, are named).
    """
    if isinstance(source, DatasetDict | Dataset):
        label = f"the {type(source).__name__} passed in"
        if subset is not None:
            raise ConfigError(f"{label}: subset '{subset}' applies to hub ids and folders of data files; drop it")
        ds = _pick_split(source, split, label)
        checked = False
    else:
        source = os.fspath(source)
        label = f"dataset '{source}'"
        ds, checked = _read(source, split, subset, label, prompt_column)
    return _shape(ds, label, prompt_column, system_prompt, chat, checked=checked)


# -- reading ---------------------------------------------------------------------------------------


def _read(source: str, split: str, subset: str | None, label: str, column: str) -> tuple[Dataset, bool]:
    """The dataset behind a path or hub id, and whether its prompts were already checked row by row."""
    problem = source_problem(source, split=split, subset=subset)
    if problem is not None:
        raise ConfigError(problem)
    path = Path(source).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".json", ".jsonl"):
            return _from_rows(_json_rows(path, label), label, column), True
        return (_read_csv if suffix == ".csv" else _read_parquet)(path, label), False
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        try:
            saved = datasets.load_from_disk(str(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{label}: a save_to_disk folder that cannot be read: {exc}") from exc
        if subset is not None:
            raise ConfigError(f"{label}: a save_to_disk folder has no subsets; drop subset '{subset}'")
        return _pick_split(saved, split, label), False
    return _load_dataset(source, subset, split, label, path.is_dir()), False


def _json_rows(path: Path, label: str) -> list[tuple[str, Any]]:
    """(where, row) pairs from a .json list or JSON Lines; 'where' names the line for JSON Lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{label}: not UTF-8 text ({exc}); is it really {path.suffix}?") from exc
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":  # "Extra data": several documents, i.e. JSON Lines
                raise DataError(
                    f"{label}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})"
                ) from exc
        else:
            if not isinstance(doc, list):
                what = f"an object with keys {sorted(doc)}" if isinstance(doc, dict) else type(doc).__name__
                raise DataError(
                    f"{label}: expected a list of objects (or JSON Lines, one object a line), got {what}"
                )
            return [(f"item {i}", row) for i, row in enumerate(doc)]
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{label}, line {lineno}: invalid JSON ({exc.msg}, column {exc.colno}); every line must be "
                f"one JSON object: {_clip(line)}"
            ) from exc
        rows.append((f"line {lineno}", row))
    return rows


def _from_rows(rows: list[tuple[str, Any]], label: str, column: str) -> Dataset:
    """A table from JSON rows, after checking every row is an object with a well-formed prompt."""
    if not rows:
        raise DataError(f"{label}: no rows")
    keys: dict[str, None] = {}
    for where, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{label}, {where}: expected a JSON object, got {type(row).__name__}: {_clip(row)}")
        keys |= dict.fromkeys(row)
    if column not in keys:
        raise _missing_column(label, column, list(keys))
    for i, (where, row) in enumerate(rows):
        if column not in row:
            raise DataError(f"{label}, row {i} ({where}): no '{column}' field (fields: {', '.join(row)})")
        if not _is_prompt(row[column]):
            raise _bad_prompt(label, f"row {i} ({where})", column, row[column])
    try:
        return Dataset.from_dict({k: [row.get(k) for _, row in rows] for k in keys})
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataError(
            f"{label}: the rows do not form a table ({exc}); a field must hold one type in every row"
        ) from exc


def _read_csv(path: Path, label: str) -> Dataset:
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{label}: no rows (the file is empty)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{label}: not a readable CSV file: {exc}") from exc
    return Dataset.from_pandas(frame, preserve_index=False)


def _read_parquet(path: Path, label: str) -> Dataset:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{label}: not a readable parquet file: {exc}") from exc
    return Dataset(table)


def _load_dataset(source: str, subset: str | None, split: str, label: str, folder: bool) -> Dataset:
    """``datasets.load_dataset`` for a hub id or a folder of data files, its failures made actionable."""
    try:
        ds = datasets.load_dataset(source, subset, split=split)
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        if folder:
            raise ConfigError(
                f"{label}: a folder that is neither a save_to_disk dataset nor data files datasets can "
                f"read as split '{split}': {exc}"
            ) from exc
        if isinstance(exc, ConnectionError) or (_offline() and isinstance(exc, FileNotFoundError)):
            args = f"'{source}'" + (f", '{subset}'" if subset else "") + f", split='{split}'"
            local = f"data/{source.replace('/', '_')}"
            raise ConfigError(
                f"{label} is not a local file or folder, and as a hub id it is not in the datasets cache "
                f"while the hub cannot be reached (HF_HUB_OFFLINE=1 or no network): {exc}. Download it "
                f"first where there is network: python -c \"import datasets; datasets.load_dataset({args})"
                f".save_to_disk('{local}')\" and name that folder instead (--dataset {local}); or run once "
                "with network and without HF_HUB_OFFLINE, so that datasets caches it"
            ) from exc
        raise ConfigError(f"{label} is not a local file or folder, and datasets cannot load it as a hub id: {exc}") from exc
    if not isinstance(ds, Dataset):
        raise ConfigError(f"{label}: datasets returned a {type(ds).__name__}, expected one split as a Dataset")
    return ds


def _offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return flag in ("1", "true", "yes", "on") or bool(datasets.config.HF_HUB_OFFLINE)


def _pick_split(ds: Dataset | DatasetDict, split: str, label: str) -> Dataset:
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise ConfigError(
                f"{label} has splits {', '.join(ds)}; there is no split '{split}' "
                "(choose one with split=..., --dataset-split or --eval-split)"
            )
        return ds[split]
    if split not in ("train", str(ds.split)):
        raise ConfigError(
            f"{label} is a single Dataset (split 'train'), not a DatasetDict; there is no split '{split}'"
        )
    return ds


# -- shaping ---------------------------------------------------------------------------------------


def _shape(
    ds: Dataset, label: str, column: str, system_prompt: str | None, chat: bool, *, checked: bool
) -> Dataset:
    """Rename the prompt column, check every prompt, apply ``chat`` and ``system_prompt``."""
    if len(ds) == 0:
        raise DataError(f"{label}: no rows")
    if column not in ds.column_names:
        raise _missing_column(label, column, ds.column_names)
    if column != "prompt":
        if "prompt" in ds.column_names:
            raise ConfigError(
                f"{label} has both a 'prompt' column and prompt_column '{column}'; drop or rename one "
                "(or leave prompt_column at 'prompt')"
            )
        ds = ds.rename_column(column, "prompt")
    prompts = list(ds["prompt"])
    if not checked:
        for i, prompt in enumerate(prompts):
            if not _is_prompt(prompt):
                raise _bad_prompt(label, f"row {i}", column, prompt)
    if not chat and system_prompt is None:
        return ds
    shaped = [_render(p, system_prompt, chat) for p in prompts]
    order = ds.column_names
    return ds.remove_columns("prompt").add_column("prompt", shaped).select_columns(order)


def _render(prompt: str | list[dict[str, Any]], system_prompt: str | None, chat: bool) -> Any:
    if isinstance(prompt, str) and not chat:
        return prompt if system_prompt is None else f"{system_prompt}\n\n{prompt}"
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system_prompt is not None and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def _is_prompt(value: Any) -> bool:
    """A string, or a non-empty list of messages with string ``role`` and ``content``."""
    if isinstance(value, str):
        return True
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    )


def _missing_column(label: str, column: str, columns: list[str]) -> ConfigError:
    hint = (
        "pass prompt_column=<the column with the prompts> (--prompt-column, or prompt_column in the config file)"
    )
    return ConfigError(f"{label} has no column '{column}'; its columns are {', '.join(columns) or 'none'}; {hint}")


def _bad_prompt(label: str, where: str, column: str, value: Any) -> DataError:
    named = "prompt" if column == "prompt" else f"prompt (column '{column}')"
    return DataError(
        f"{label}, {where}: the {named} must be a string or a non-empty list of "
        f"{{'role': ..., 'content': ...}} messages with string values, got {type(value).__name__}: {_clip(value)}"
    )


def _clip(value: Any, width: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
