"""The machinery behind every exercise checker: run a learner's function, compare, diagnose, report.

A checker describes its exercise as fixed and seeded ``Case`` inputs, a reference
(PyTorch's own function where one exists) and ``Mutant`` wrong implementations,
each with the hint a learner should read when their output matches it. ``run_check``
calls the learner's function on every case, compares with
``torch.testing.assert_close`` and returns a ``CheckResult``: green or red in
Jupyter, plain text elsewhere. Nothing here imports the rest of the library.
"""

from __future__ import annotations

import html
import numbers
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

_TORCH_DIR = os.path.dirname(torch.__file__)
_CHECKERS_DIR = os.path.dirname(os.path.abspath(__file__))  # this module and the checkers that use it


@dataclass
class CheckResult:
    """The outcome of one exercise check: ``passed``, a ``message`` and, for a known mistake, a ``hint``.

    ``mistake`` names the modelled wrong implementation the answer matched (None
    otherwise). Renders green or red in Jupyter; ``str()`` gives the same text
    without colour; ``bool(result)`` is ``passed``. ``raise_if_failed()`` raises
    ``AssertionError`` with the message, as ``strict=True`` does.

    Introduced in §1.4.
    """

    exercise: str
    passed: bool
    message: str
    hint: str | None = None
    mistake: str | None = None
    unfinished: bool = False

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "PASSED" if self.passed else ("NOT FINISHED" if self.unfinished else "FAILED")
        text = f"{mark} {self.exercise}: {self.message}"
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour, background = ("#1a7f37", "#e6f4ea") if self.passed else ("#b42318", "#fdecea")
        if self.unfinished:
            colour, background = ("#8a6100", "#fff6db")
        mark = "&#10004;" if self.passed else ("&#8230;" if self.unfinished else "&#10008;")
        hint = f"<div><b>Hint:</b> {html.escape(self.hint)}</div>" if self.hint else ""
        return (f'<div style="border-left: 6px solid {colour}; background: {background}; color: #111; '
                f'padding: 6px 10px; margin: 4px 0; font-family: sans-serif">'
                f'<b style="color: {colour}">{mark} {html.escape(self.exercise)}</b>: '
                f"{html.escape(self.message)}{hint}</div>")

    def raise_if_failed(self) -> CheckResult:
        """Raise ``AssertionError`` with the report unless the check passed; return the result otherwise."""
        if not self.passed:
            raise AssertionError(str(self))
        return self


@dataclass
class Case:
    """One input of an exercise: a label, the positional arguments by name (for messages), keyword arguments."""

    label: str
    args: dict[str, Any]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Mutant:
    """A modelled wrong implementation (same signature as the exercise) and the hint it deserves."""

    name: str
    fn: Callable
    hint: str


class NotFinished(Exception):
    """Raised by a checker's ``call`` when an answer did nothing (for in-place exercises)."""


def describe(value: Any) -> str:
    """A short description of an input for messages: a tensor's shape and dtype, a number's value."""
    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        return f"{type(value).__name__} of {len(value)} tensors, shapes " + ", ".join(
            str(tuple(v.shape)) for v in value)
    if isinstance(value, (list, tuple)) and not all(isinstance(v, numbers.Number) for v in value):
        return f"{type(value).__name__} of {len(value)} items"
    return repr(value)


def describe_case(case: Case) -> str:
    parts = [f"{name} {describe(value)}" for name, value in case.args.items()]
    parts += [f"{name}={describe(value)}" for name, value in case.kwargs.items()]
    return f"case '{case.label}' ({', '.join(parts)})"


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return value


def default_call(fn: Callable, case: Case) -> Any:
    """Call ``fn`` on fresh copies of a case's inputs, so that an answer that edits them in place harms nothing."""
    return fn(*(_clone(v) for v in case.args.values()), **{k: _clone(v) for k, v in case.kwargs.items()})


def _structure(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}" if not isinstance(value, numbers.Number) else "a number"


def compare(got: Any, expected: Any, rtol: float | None, atol: float | None, exact_dtype: bool = False,
            equal_nan: bool = False) -> str | None:
    """Why ``got`` differs from ``expected`` (shapes, dtype, values via ``assert_close``), or None if it does not."""
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return f"expected {_structure(expected)}, got {_structure(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = compare(g, e, rtol, atol, exact_dtype, equal_nan)
            if problem:
                return f"element {i} of the result: {problem}"
        return None
    if isinstance(expected, numbers.Number):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, numbers.Number) or isinstance(got, bool):
            return f"expected a number, got {_structure(got)}"
        if isinstance(expected, int) and got != expected:
            return f"expected {expected}, got {got!r}"
        got, expected = torch.tensor(float(got)), torch.tensor(float(expected))
    if isinstance(got, numbers.Number) and not isinstance(got, bool) and expected.dim() == 0:
        got = torch.tensor(float(got))  # a scalar may come back as a Python number
    if not isinstance(got, torch.Tensor):
        return f"expected {_structure(expected)}, got {_structure(got)}"
    if got.shape != expected.shape:
        return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    if exact_dtype and got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype}, got {got.dtype}"
    if not equal_nan and got.is_floating_point() and torch.isfinite(expected).all() and not torch.isfinite(got).all():
        bad = "nan" if got.isnan().any() else "inf"
        return f"your result contains {bad} where the expected values are all finite"
    try:
        got = got.detach().cpu() if exact_dtype else got.detach().cpu().to(expected.dtype)
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol, equal_nan=equal_nan)
    except AssertionError as error:
        if not expected.is_floating_point() and expected.dim() > 0:  # a mask or indices: say where
            wrong = (got != expected).nonzero()
            first = tuple(wrong[0].tolist())
            return (f"{len(wrong)} of {expected.numel()} entries differ, the first at index {first}: "
                    f"expected {expected[first].item()}, got {got[first].item()}")
        if expected.dim() == 0:
            return f"expected {expected.item():.6g}, got {got.item():.6g}"
        detail = str(error).strip().splitlines()
        worst = next((line.strip() for line in detail if line.strip().startswith("Greatest absolute")), "")
        return "values differ from the reference" + (f" ({worst})" if worst else "")
    return None


def _where(error: BaseException) -> str:
    """' at line N ('the line')' for the innermost frame outside torch and the checkers (the learner's), if any."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not f.filename.startswith(_TORCH_DIR)
              and os.path.dirname(os.path.abspath(f.filename)) != _CHECKERS_DIR]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at line {frame.lineno} ({frame.line!r})" if frame.line else f" at line {frame.lineno}"


def _unfinished(exercise: str, why: str) -> CheckResult:
    return CheckResult(exercise, False, f"not finished yet: {why}. Write the function's body, then run the check "
                       "again.", unfinished=True)


def run_check(exercise: str, fn: Any, cases: Sequence[Case], reference: Callable, mutants: Sequence[Mutant],
              strict: bool = False, call: Callable[[Callable, Case], Any] = default_call,
              rtol: float | None = None, atol: float | None = None, exact_dtype: bool = False) -> CheckResult:
    """Check ``fn`` against ``reference`` on every case and name the mutant its wrong output matches.

    ``call(fn, case)`` runs a function on a case (default: positional arguments,
    then keyword arguments, on copies). ``strict=True`` raises ``AssertionError``
    when the check fails.
    """
    result = _run(exercise, fn, cases, reference, mutants, call, rtol, atol, exact_dtype)
    if strict:
        result.raise_if_failed()
    return result


def _run(exercise, fn, cases, reference, mutants, call, rtol, atol, exact_dtype) -> CheckResult:
    if fn is None or fn is Ellipsis:
        return _unfinished(exercise, f"expected your function, got {fn!r}")
    if not callable(fn):
        return CheckResult(exercise, False, f"expected a function, got {type(fn).__name__}: pass the function "
                           "itself, without calling it (check(softmax), not check(softmax(z)))")
    outputs = []
    for case in cases:
        try:
            got = call(fn, case)
        except NotImplementedError:
            return _unfinished(exercise, "your function raises NotImplementedError")
        except NotFinished as why:
            return _unfinished(exercise, str(why))
        except Exception as error:  # the learner's code may raise anything: report it, no traceback
            hint, mistake = _diagnose_exception(error, case, mutants, call)
            return CheckResult(exercise, False, f"your function raised {type(error).__name__}: {error} "
                               f"on {describe_case(case)}{_where(error)}", hint, mistake)
        if (got is None or got is Ellipsis) and not outputs:
            return _unfinished(exercise, f"your function returns {got!r}")
        if got is None or got is Ellipsis:
            return CheckResult(exercise, False, f"your function returned {got!r} on {describe_case(case)}, after "
                               "returning results on the cases before it: does every path end with a return?")
        outputs.append(got)
    for case, got in zip(cases, outputs):
        expected = call(reference, case)
        problem = compare(got, expected, rtol, atol, exact_dtype)
        if problem:
            hint, mistake = _diagnose(cases, outputs, case, got, mutants, call, rtol, atol, exact_dtype)
            return CheckResult(exercise, False, f"on {describe_case(case)}: {problem.rstrip('.')}.", hint, mistake)
    return CheckResult(exercise, True, f"matches the reference on all {len(cases)} cases.")


def _mutant_output(mutant: Mutant, case: Case, call: Callable) -> Any:
    try:
        return call(mutant.fn, case)
    except Exception as error:
        return error


def _diagnose(cases, outputs, failing, got, mutants, call, rtol, atol, exact_dtype):
    """The hint of the mutant whose output equals the learner's: on every case if one does, else on the failing one."""
    on_failing = []
    for mutant in mutants:
        theirs = _mutant_output(mutant, failing, call)
        if isinstance(theirs, Exception) or compare(got, theirs, rtol, atol, exact_dtype, equal_nan=True):
            continue
        everywhere = all(
            not isinstance(m := _mutant_output(mutant, case, call), Exception)
            and compare(out, m, rtol, atol, exact_dtype, equal_nan=True) is None
            for case, out in zip(cases, outputs))
        if everywhere:
            return mutant.hint, mutant.name
        on_failing.append(mutant)
    if on_failing:
        return on_failing[0].hint, on_failing[0].name
    return None, None


def _diagnose_exception(error, case, mutants, call):
    """The hint of a mutant that raises the same exception, with the same message, on the same case, if any."""
    for mutant in mutants:
        theirs = _mutant_output(mutant, case, call)
        if isinstance(theirs, Exception) and type(theirs) is type(error) and str(theirs) == str(error):
            return mutant.hint, mutant.name
    return None, None
