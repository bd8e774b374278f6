"""The default task description."""

from rlzoo.tasks import DEFAULT, arithmetic_correct, load_model, make_split


def test_default_task_wires_the_embedded_parts() -> None:
    assert DEFAULT.reward_funcs == (arithmetic_correct,)
    assert all(getattr(f, "verifies_correctness", False) for f in DEFAULT.reward_funcs)
    assert DEFAULT.load_model is load_model and DEFAULT.max_completion_length == 96
    train, held_out = DEFAULT.train_dataset(500, seed=2), DEFAULT.eval_dataset()
    assert len(train) == 500 and len(held_out) == DEFAULT.eval_size == 200
    assert train == make_split("train", 500, seed=2) and held_out == make_split("eval", 200, seed=0)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held_out}
