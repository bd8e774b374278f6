"""The default task rlzoo runs when no model and no data are named."""

from collections.abc import Callable
from dataclasses import dataclass

from rlzoo.tasks.arithmetic import arithmetic_correct, make_split
from rlzoo.tasks.model import load_model

__all__ = ["DEFAULT", "Task"]


@dataclass(frozen=True)
class Task:
    """A task with checkable answers: dataset factory, reward functions and generation budget.

    Args:
        name: short name for logs and benchmark tables.
        make_split: ``(split, size, seed) -> [{"prompt": ..., "answer": ...}]``, splits disjoint.
        reward_funcs: TRL-contract reward functions; one with ``verifies_correctness = True``
            gives ``Groups.correct``.
        max_completion_length: recommended ``max_new_tokens`` for rollouts.
        train_size, eval_size: default dataset sizes.
        load_model: ``(path=None, device=None) -> (model, tokenizer)``, the warm start for the task.
    """

    name: str
    make_split: Callable[..., list[dict[str, str]]]
    reward_funcs: tuple[Callable[..., list[float]], ...]
    max_completion_length: int
    train_size: int
    eval_size: int
    load_model: Callable[..., tuple]

    def train_dataset(self, size: int | None = None, seed: int = 0) -> list[dict[str, str]]:
        return self.make_split("train", self.train_size if size is None else size, seed)

    def eval_dataset(self, size: int | None = None, seed: int = 0) -> list[dict[str, str]]:
        return self.make_split("eval", self.eval_size if size is None else size, seed)


DEFAULT = Task(
    name="arithmetic3",
    make_split=make_split,
    reward_funcs=(arithmetic_correct,),
    max_completion_length=96,
    train_size=20_000,
    eval_size=200,
    load_model=load_model,
)
