"""Experiments: file + command line + overrides validated together; a user's own model and data."""

import json

import pytest
import yaml

from rlzoo.errors import ConfigError
from rlzoo.experiment import EMBEDDED_CONFIG, load_experiment, run_experiment
from tests.trainer.helpers import rows, tiny


def test_overrides_split_between_trainer_and_recipe(tmp_path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"recipe": "dapo", "train": {"steps": 9, "group_size": 4}}))
    exp = load_experiment(config_file=cfg, overrides=["steps=3", "loss.eps_high=0.3"])
    assert exp.embedded and exp.recipe.name == "dapo"
    assert (exp.config.steps, exp.config.group_size) == (3, 4)  # command line beats the file
    assert exp.config.prompts_per_step == EMBEDDED_CONFIG["prompts_per_step"]
    assert exp.recipe.loss["eps_high"] == 0.3


def test_file_problems_reported_together(tmp_path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"recipee": "grpo", "train": {"stepz": 1}, "dataset": "/missing.jsonl"}))
    with pytest.raises(ConfigError) as err:
        load_experiment(config_file=cfg)
    msg = str(err.value)
    assert "unknown key 'recipee'" in msg and "unknown parameter 'stepz'" in msg
    assert "dataset '/missing.jsonl' does not exist" in msg


# Issue 12's number forms as text: what learning_rate (a TrainConfig field) and kl_coef (a recipe
# field) become, or the error that shows how the text parsed (a negative float fails the range
# check; a word stays a string).
PARSED = [("1e-5", 1e-5), ("5E-6", 5e-6), ("1.0e37", 1e37), ("3", 3.0), ("0.5", 0.5)]
REFUSED = [
    ("-1e-4", ["learning_rate=-0.0001 must be > 0", "kl_coef=-0.0001 must be a finite number >= 0"]),
    ("abc", ["parameter 'learning_rate' expects float, got 'abc' (str)", "parameter 'kl_coef' expects float, got 'abc' (str)"]),
]


def _number_sources(tmp_path, text: str) -> dict:
    """The same values through --set and through a YAML file (written as a person types it)."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"recipe: grpo\ntrain:\n  learning_rate: {text}\n  steps: 50\n")
    return {
        "--set": {"recipe": "grpo", "overrides": [f"learning_rate={text}", f"kl_coef={text}", "steps=50"]},
        "file": {"config_file": cfg, "overrides": [f"kl_coef={text}"]},
    }


@pytest.mark.parametrize(("text", "value"), PARSED)
def test_numbers_in_text_parse_as_numbers(tmp_path, text: str, value: float) -> None:
    for source, kwargs in _number_sources(tmp_path, text).items():
        exp = load_experiment(**kwargs)
        assert (exp.config.learning_rate, exp.recipe.kl_coef) == (value, value), source
        assert exp.config.steps == 50 and type(exp.config.steps) is int, source


@pytest.mark.parametrize(("text", "problems"), REFUSED)
def test_numbers_in_text_are_checked_as_numbers(tmp_path, text: str, problems: list[str]) -> None:
    for source, kwargs in _number_sources(tmp_path, text).items():
        with pytest.raises(ConfigError) as err:
            load_experiment(**kwargs)
        assert all(p in str(err.value) for p in problems), (source, str(err.value))


REWARDS_PY = """
def brevity(prompts, completions, **columns):
    return [1.0 / (1 + len(c)) for c in completions]
"""


def test_reward_specs_from_the_file_and_the_command_line(tmp_path) -> None:
    from rlzoo.rewards.answer import AnswerMatch

    rewards = tmp_path / "my_rewards.py"
    rewards.write_text(REWARDS_PY)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"reward_funcs": [{"name": "answer_match", "extract": "boxed"}, f"{rewards}:brevity"]}))
    exp = load_experiment(config_file=cfg)
    match, brevity = exp.reward_funcs
    assert isinstance(match, AnswerMatch) and match.extract == "boxed" and brevity.__name__ == "brevity"
    assert exp.config.reward_weights is None  # no spec has a weight
    exp = load_experiment(config_file=cfg, rewards=[f"{rewards}:brevity@0.5", "answer_match"])  # replaces the file's
    assert exp.reward_funcs[0] is brevity  # the file is loaded once per process
    assert exp.reward_funcs[1] == AnswerMatch() and exp.config.reward_weights == (0.5, 1.0)


def test_reward_problems_are_reported_with_the_others(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        load_experiment(rewards=["nowhere.py:fn", "answer_match@heavy"], overrides=["steps=0"])
    msg = str(err.value)
    assert "reward 'nowhere.py:fn': file 'nowhere.py' does not exist" in msg
    assert "reward 'answer_match@heavy': weight 'heavy' after '@' must be a finite number" in msg
    assert "steps=0 must be >= 1" in msg
    with pytest.raises(ConfigError, match=r"reward weights given twice: @weight in the reward specs and reward_weights=\[2\]"):
        load_experiment(rewards=["answer_match@0.5"], overrides=["reward_weights=[2]"])
    cfg = tmp_path / "run.yaml"
    cfg.write_text("reward_funcs: answer_match\n")
    with pytest.raises(ConfigError, match="reward functions must be a list of specs, got str: 'answer_match'"):
        load_experiment(config_file=cfg)


def test_users_own_model_and_dataset(tmp_path) -> None:
    model, tok = tiny()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(8)))
    exp = load_experiment(
        recipe="rloo",
        model=str(tmp_path / "model"),
        dataset=str(data),
        overrides=["steps=1", "prompts_per_step=4", "group_size=2", "max_completion_length=8", "progress=false",
                   f"output_dir={tmp_path / 'out'}"],
    )
    summary = run_experiment(exp, progress=False)
    assert summary["steps"] == 1 and summary["recipe"]["name"] == "rloo"
    assert (tmp_path / "out" / "summary.json").exists()


def _own_run(tmp_path, steps: int):
    model, tok = tiny()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(8)))
    return load_experiment(
        recipe="grpo", model=str(tmp_path / "model"), dataset=str(data), eval_dataset=str(data),
        overrides=[f"steps={steps}", "prompts_per_step=4", "group_size=2", "max_completion_length=8", "progress=false",
                   "save_every=1", "eval_size=4", f"output_dir={tmp_path / 'out'}"],
    )


def test_a_used_output_dir_is_refused_unless_resumed_or_overwritten(tmp_path) -> None:
    run_experiment(_own_run(tmp_path, 1), progress=False)
    with pytest.raises(ConfigError, match=r"already holds a run .*--resume.*--overwrite"):
        run_experiment(_own_run(tmp_path, 1), progress=False)
    (tmp_path / "out" / "checkpoints" / "stale").mkdir()
    summary = run_experiment(_own_run(tmp_path, 1), progress=False, overwrite=True)
    assert summary["steps"] == 1 and not (tmp_path / "out" / "checkpoints" / "stale").exists()


def test_the_reward_workers_stop_when_training_fails(tmp_path, monkeypatch) -> None:
    from rlzoo.rewards import Scorer
    from rlzoo.trainer import Trainer

    closed = []
    monkeypatch.setattr(Scorer, "close", lambda self: closed.append(self))

    def fail(self, resume=False):
        raise RuntimeError("boom in step 1")

    monkeypatch.setattr(Trainer, "train", fail)
    with pytest.raises(RuntimeError, match="boom"):
        run_experiment(_own_run(tmp_path, 1), progress=False)
    assert len(closed) == 1


def test_a_resumed_run_reports_the_whole_run(tmp_path) -> None:
    first = run_experiment(_own_run(tmp_path, 2), progress=False)
    resumed = run_experiment(_own_run(tmp_path, 3), progress=False, resume=True)
    assert resumed["steps"] == 3 and resumed["before"] == first["before"] != {}
    assert resumed["generated_tokens"] > first["generated_tokens"]  # steps 1-2 counted as well as step 3


# -- datasets: any source rlzoo.data.load_prompts reads, options from the file or the call --------


def _gsm8k_parquet(path, n: int = 8):
    """GSM8K's schema (question, answer ending '#### <n>') with prompts the tiny model can read."""
    import datasets

    datasets.Dataset.from_list(
        [{"question": r["prompt"], "answer": f"The sum is {r['answer']}.\n#### {r['answer']}"} for r in rows(n)]
    ).to_parquet(str(path))
    return path


def test_parquet_with_a_prompt_column_and_options_from_the_file(tmp_path) -> None:
    data = _gsm8k_parquet(tmp_path / "train.parquet")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": str(data), "prompt_column": "question", "chat": True,
                                   "system_prompt": "Add.", "eval_dataset": str(data)}))
    exp = load_experiment(config_file=cfg, model=str(tmp_path), system_prompt="Add the numbers.")
    assert (exp.prompt_column, exp.chat, exp.system_prompt) == ("question", True, "Add the numbers.")
    train, held_out = exp.load_data()
    assert train.column_names == ["prompt", "answer"] and len(held_out) == 8
    assert train[0]["prompt"] == [{"role": "system", "content": "Add the numbers."},
                                  {"role": "user", "content": rows(1)[0]["prompt"]}]


def test_eval_split_alone_is_a_split_of_the_dataset_and_hub_ids_pass_the_checks(tmp_path) -> None:
    exp = load_experiment(model=str(tmp_path), dataset="openai/gsm8k", dataset_subset="main",
                          eval_dataset_split="test", prompt_column="question")
    assert (exp.dataset, exp.dataset_subset, exp.eval_dataset, exp.eval_dataset_split) == (
        "openai/gsm8k", "main", "openai/gsm8k", "test")


def test_dataset_problems_reported_with_the_others(tmp_path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"chat": "yes please", "eval_dataset": "./held_out.jsonl"}))
    with pytest.raises(ConfigError) as err:
        load_experiment(config_file=cfg, model=str(tmp_path), dataset=str(tmp_path / "p.txt"))
    msg = str(err.value)
    assert "chat must be a bool, got 'yes please'" in msg
    assert f"dataset '{tmp_path / 'p.txt'}' does not exist" in msg
    assert "eval_dataset './held_out.jsonl' does not exist" in msg
    with pytest.raises(ConfigError, match=r"prompt_column: for a dataset of your own; name --model and --dataset"):
        load_experiment(prompt_column="question")
    data = _gsm8k_parquet(tmp_path / "train.parquet")
    with pytest.raises(ConfigError, match=r"eval_dataset '.*train.parquet' is one file, so its one split is 'train'"):
        load_experiment(model=str(tmp_path), dataset=str(data), eval_dataset_split="test")


def test_a_lora_run_from_a_config_file_saves_the_adapter_and_the_merged_model(tmp_path) -> None:
    pytest.importorskip("peft")
    model, tok = tiny()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(8)))
    (tmp_path / "run.yaml").write_text(
        f"model: {tmp_path / 'model'}\ndataset: {data}\nrecipe: grpo\n"
        "lora: {r: 4, alpha: 8, merge: true}\n"
        f"train: {{steps: 1, prompts_per_step: 4, group_size: 2, max_completion_length: 8, progress: false, "
        f"output_dir: {tmp_path / 'out'}}}\n"
    )
    run_experiment(load_experiment(config_file=tmp_path / "run.yaml"), progress=False)
    assert (tmp_path / "out" / "final" / "adapter_config.json").exists()
    assert (tmp_path / "out" / "final-merged" / "config.json").exists()
    with pytest.raises(ConfigError, match=r"lora: unknown key\(s\) rank"):
        load_experiment(config_file=tmp_path / "run.yaml", overrides=[], lora={"rank": 4})


def test_a_task_selects_an_embedded_task(tmp_path) -> None:
    exp = load_experiment(task="chain4")
    assert exp.embedded and exp.task_name == "chain4" and "chain4" in exp.describe()
    assert load_experiment().task_name == "arithmetic3"
    assert load_experiment().describe() == "the embedded arithmetic task and its tiny model"
    assert exp.identity()["task"] == "chain4" != load_experiment().identity()["task"]
    cfg = tmp_path / "run.yaml"
    cfg.write_text("task: chain4\nrecipe: grpo\n")
    assert load_experiment(config_file=cfg).task_name == "chain4"
    with pytest.raises(ConfigError) as err:
        load_experiment(task="chian4", model=str(tmp_path), dataset=str(tmp_path / "p.jsonl"))
    msg = str(err.value)
    assert "unknown task 'chian4'; did you mean 'chain4'?" in msg
    assert "task 'chian4' is an embedded task with its own model and data" in msg


def test_the_identity_names_what_decides_a_run(tmp_path) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(2)))
    exp = load_experiment(model=str(tmp_path), dataset=str(data), rewards=["answer_match@0.5"], prompt_column="prompt")
    identity = exp.identity()
    assert identity["task"] is None and identity["model"] == str(tmp_path) and identity["dataset"] == str(data)
    assert identity["reward_funcs"] == ["answer_match@0.5"] and identity["prompt_column"] == "prompt"
    assert json.loads(json.dumps(identity)) == identity
