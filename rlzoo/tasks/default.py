"""The embedded tasks: the default rlzoo runs when no model and no data are named, and a second one.

``TASKS`` maps each name to its :class:`Task`; ``rlzoo train --task NAME`` and ``rlzoo compare --task
NAME`` select one (:func:`get_task`). ``arithmetic3`` (:mod:`rlzoo.tasks.arithmetic`) is the default;
``chain4`` (:mod:`rlzoo.tasks.chain`) is the task on which length must not be rewarded.
"""

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rlzoo.errors import ConfigError
from rlzoo.tasks import chain
from rlzoo.tasks.arithmetic import arithmetic_correct, make_split
from rlzoo.tasks.model import ASSETS, load_model

__all__ = ["CHAIN4", "DEFAULT", "TASKS", "Task", "get_task", "load_chain4"]


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
        description: what the task is, in a few words (the ``rlzoo train`` banner).
    """

    name: str
    make_split: Callable[..., list[dict[str, str]]]
    reward_funcs: tuple[Callable[..., list[float]], ...]
    max_completion_length: int
    train_size: int
    eval_size: int
    load_model: Callable[..., tuple]
    description: str = ""

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
    description="three-number sums with optional verbose steps",
)


def load_chain4(path: str | Path | None = None, device: object = None) -> tuple:
    """The ``chain4`` warm start: ``assets/chain4.safetensors`` in the default's architecture and
    tokenizer, or the directory ``python -m rlzoo.tasks.warmstart --task chain4 --out DIR`` wrote."""
    if path is not None:
        return load_model(path, device)
    return load_model(None, device, weights=ASSETS / "chain4.safetensors")


CHAIN4 = Task(
    name="chain4",
    make_split=chain.make_split,
    reward_funcs=(arithmetic_correct,),
    max_completion_length=96,
    train_size=20_000,
    eval_size=200,
    load_model=load_chain4,
    description="four-number sums whose partial sums the answer needs",
)

TASKS: dict[str, Task] = {t.name: t for t in (DEFAULT, CHAIN4)}


def get_task(name: str) -> Task:
    """The embedded task called ``name``; an unknown name fails with the closest match and the list."""
    if name in TASKS:
        return TASKS[name]
    close = difflib.get_close_matches(name, list(TASKS), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown task '{name}'{hint} known: {', '.join(TASKS)}")
