"""Answer checkers: ``answer_match`` (extraction + exact/numeric comparison) and ``math_verify``."""

import importlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from rlzoo.errors import ConfigError
from rlzoo.params import check, component_label
from rlzoo.rewards import REWARD_FUNCS
from rlzoo.text import completion_text

# A number as models and datasets write it: optional sign, thousands separators, decimals, exponent.
# The lookahead lets the scan skip non-numeric characters fast (4x on long completions).
_NUMBER = r"(?=[-+.\d])(?:[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+)"
_NUMBER_RE = re.compile(_NUMBER)
# GSM8K's final-answer line: "#### 42" ending its line ("#### 1. Setup", a numbered heading, is not one).
_MARKED_RE = re.compile(rf"####[ \t]*\$?({_NUMBER})[ \t]*[%.]?[ \t]*$", re.MULTILINE)
_MARKER = "####"
_FRACTION_RE = re.compile(r"([-+]?\d+)/(\d+)")


def _to_number(text: str) -> float | None:
    """``"1,234.5"``, ``"$42."``, ``"50%"``, ``"-3/4"`` -> a float; anything else -> None."""
    s = "".join(text.split()).strip("$").rstrip(".").removesuffix("%")
    if _NUMBER_RE.fullmatch(s):
        return float(s.replace(",", ""))
    fraction = _FRACTION_RE.fullmatch(s)
    if fraction and int(fraction[2]) != 0:
        return int(fraction[1]) / int(fraction[2])
    return None


def _last_boxed(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}``, braces balanced."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for pos in range(begin - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[pos], 0)
        if depth == 0:
            return text[begin:pos]
    return None


def _column(component: object, name: str, columns: dict[str, Any]) -> Sequence[Any]:
    if name not in columns:
        raise ConfigError(
            f"{component_label(component)}: no column '{name}' among the dataset columns "
            f"{sorted(columns)}; set column= to the one that holds the reference answer"
        )
    return columns[name]


def _check_rewards(component: Any) -> None:
    check(component, "correct_reward", component.correct_reward > 0, "must be > 0 (correct means reward > 0)")
    check(component, "wrong_reward", component.wrong_reward <= 0, "must be <= 0 (correct means reward > 0)")


@REWARD_FUNCS.register("answer_match")
@dataclass(frozen=True)
class AnswerMatch:
    """Answer correctness: extract the final answer, compare with the reference (numbers within a tolerance).

    Implementation details:

    1. ``extract``: ``"last_number"`` the number of the last GSM8K answer line (``#### 42``
       with the number ending its line, so a heading ``#### 1. Setup`` is not one) if there is
       one, else the last number in the completion (``1,234`` and ``-5`` are numbers, so ``3-5``
       ends in ``-5``); ``"boxed"`` the content of the last ``\\boxed{...}`` (balanced braces);
       ``"tag"`` the content of the last ``<tag>...</tag>`` (``tag="answer"``); ``"regex"`` the
       last match of ``pattern`` (its first group if it has one).
    2. Extracted text and reference compare as numbers when both parse as one (thousands
       separators, ``$``, a trailing ``.`` or ``%`` and ``a/b`` fractions are understood) with
       ``math.isclose(rel_tol, abs_tol)``; otherwise as strings with whitespace collapsed.
    3. No answer found: ``wrong_reward``. Reference None: None (the completion cannot be scored).
    4. The reference comes from the dataset column ``column`` (default ``answer``), a number or
       a string. ``reference="auto"``: a string holding ``####`` is a GSM8K solution and its final
       answer is the text after the last ``####`` (``"... 16 - 3 - 4 = 9 ... #### 18"`` -> ``18``);
       any other reference is the final answer as it is. ``"as_is"``: always as it is.
    5. ``verifies_correctness``: the scorer's ``correct`` is ``reward > 0``.
    """

    extract: Literal["last_number", "boxed", "tag", "regex"] = "last_number"
    reference: Literal["auto", "as_is"] = "auto"
    tag: str = "answer"
    pattern: str | None = None
    column: str = "answer"
    abs_tol: float = 1e-6
    rel_tol: float = 0.0
    correct_reward: float = 1.0
    wrong_reward: float = 0.0

    verifies_correctness: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check(
            self,
            "pattern",
            (self.pattern is not None) == (self.extract == "regex"),
            "is needed by, and only by, extract='regex'",
        )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                check(self, "pattern", False, f"is not a valid regular expression: {exc}")
        check(
            self,
            "tag",
            re.fullmatch(r"[\w:.-]+", self.tag) is not None,
            "must be a tag name such as 'answer'",
        )
        check(self, "abs_tol", self.abs_tol >= 0, "must be >= 0")
        check(self, "rel_tol", self.rel_tol >= 0, "must be >= 0")
        _check_rewards(self)

    def extract_answer(self, completion: str) -> str | None:
        """The answer the completion gives, as text, or None when it gives none."""
        if self.extract == "boxed":
            return _last_boxed(completion)
        if self.extract == "last_number":
            marked = list(_MARKED_RE.finditer(completion))
            if marked:
                return marked[-1][1]
            pattern = _NUMBER
        elif self.extract == "tag":
            pattern = rf"<{re.escape(self.tag)}>(.*?)</{re.escape(self.tag)}>"
        else:
            pattern = self.pattern  # type: ignore[assignment]
        found = list(re.finditer(pattern, completion, flags=re.DOTALL))
        if not found:
            return None
        return found[-1][1] if found[-1].re.groups else found[-1][0]

    def final_answer(self, reference: Any) -> Any:
        """The final answer a reference holds: after the last ``####`` of a GSM8K solution (``reference="auto"``)."""
        if self.reference == "auto" and isinstance(reference, str) and _MARKER in reference:
            return reference.rpartition(_MARKER)[2].strip()
        return reference

    def matches(self, answer: str, reference: Any) -> bool:
        """Whether an extracted answer equals the reference's final answer (numbers within the tolerances)."""
        reference = self.final_answer(reference)
        ref_number = float(reference) if isinstance(reference, (int, float)) else _to_number(str(reference))
        number = _to_number(answer)
        if number is not None and ref_number is not None:
            return math.isclose(number, ref_number, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        return " ".join(answer.split()) == " ".join(str(reference).split())

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        references = _column(self, self.column, columns)
        rewards: list[float | None] = []
        for completion, reference in zip(map(completion_text, completions), references, strict=True):
            if reference is None:
                rewards.append(None)
                continue
            answer = self.extract_answer(completion)
            ok = answer is not None and self.matches(answer, reference)
            rewards.append(self.correct_reward if ok else self.wrong_reward)
        return rewards


@REWARD_FUNCS.register("math_verify")
@dataclass(frozen=True)
class MathVerify:
    """Mathematical equivalence of the answer and the reference through the ``math-verify`` package.

    Implementation details:

    1. Needs the optional package: ``pip install 'math-verify>=0.7'`` (or ``rlzoo[math]``).
    2. As TRL's ``accuracy_reward``: the reference is parsed first; a reference math-verify
       cannot parse gives None (cannot score); otherwise the completion is parsed with
       math-verify's default extraction (LaTeX then plain expressions, ``\\boxed`` first) and
       ``verify(reference, answer)`` decides.
    3. math-verify bounds parsing and verification with its own signal-based timeouts (main
       thread only); the scorer's process timeout is the backstop. The package is imported when
       the component is built, so forked scorer workers start with it loaded.
    4. ``verifies_correctness``: the scorer's ``correct`` is ``reward > 0``.
    """

    column: str = "answer"
    correct_reward: float = 1.0
    wrong_reward: float = 0.0

    verifies_correctness: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_rewards(self)
        try:  # imported here, so forked scorer workers inherit it instead of importing sympy each
            importlib.import_module("math_verify")
        except ImportError as exc:
            raise ConfigError(
                f"{component_label(self)}: needs the optional package math-verify; install it with "
                "pip install 'math-verify>=0.7' (or pip install 'rlzoo[math]')"
            ) from exc

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        from math_verify import parse, verify

        references = _column(self, self.column, columns)
        rewards: list[float | None] = []
        for completion, reference in zip(map(completion_text, completions), references, strict=True):
            gold = parse(str(reference)) if reference is not None else []
            if not gold:
                rewards.append(None)
                continue
            ok = verify(gold, parse(completion))
            rewards.append(self.correct_reward if ok else self.wrong_reward)
        return rewards
