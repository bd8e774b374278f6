"""Reading back what a run left behind."""

from rlzoo.records import generation_totals


def test_generation_totals_count_every_refill_round() -> None:
    # step 1: one round of 4 completions, mean length 10, half correct; step 2: three rounds
    # (12 completions) averaging 20 tokens and a quarter correct
    history = [{"length/mean": 10.0, "reward/accuracy": 0.5, "groups/rounds": 1.0},
               {"length/mean": 20.0, "reward/accuracy": 0.25, "groups/rounds": 3.0}]
    assert generation_totals(history, per_round=4) == {"generated_tokens": 40.0 + 240.0,
                                                        "correct_completions": 2.0 + 3.0}
