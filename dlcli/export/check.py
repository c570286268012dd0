"""The check of an export against dlcli's own predict: the same examples through both, every output compared.

An output passes when every value satisfies |exported - dlcli| <= atol + rtol * |dlcli| (NumPy's isclose, NaN
equal to NaN). The relative term judges values of ordinary size; near zero a relative error means nothing (a
ReLU's 1e-9 against 0, a softmax probability of 1e-12, the sum of large terms that cancel, where float32's
rounding alone leaves an error of about 1e-7 times the terms), so a small absolute floor, atol, judges those.
The maximum relative error printed is taken over the values above atol, for the same reason. Step masks must
be equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlcli.errors import ExportCheckError
from dlcli.export.exporter import Exported, Exporter, ExportSource
from dlcli.train.loop import predict

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


@dataclass
class OutputComparison:
    """One output compared: its largest absolute and relative errors, and whether it is within the tolerance."""

    name: str
    max_abs: float
    max_rel: float
    passed: bool
    problem: str = ""  # why it failed, in words (a shape, a mask, the worst value)


@dataclass
class CheckReport:
    """The result of a check: how many examples, the tolerance, and every output's comparison."""

    examples: int
    rtol: float
    atol: float
    outputs: list[OutputComparison]

    @property
    def passed(self) -> bool:
        """Whether every output is within the tolerance."""
        return all(output.passed for output in self.outputs)

    def failure(self, path: object) -> ExportCheckError:
        """The error naming every output that failed (exit 1)."""
        failed = [f"{output.name} ({output.problem})" for output in self.outputs if not output.passed]
        return ExportCheckError(f"{path}: the exported model differs from dlcli predict on {self.examples} examples "
                                f"beyond |exported - dlcli| <= {self.atol:g} + {self.rtol:g} * |dlcli| in output"
                                f"{'s' if len(failed) > 1 else ''} {'; '.join(failed)}; this is a bug in dlcli's "
                                "exporter or a model too sensitive for float32: report it with the run directory")


def compare_values(name: str, found: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> OutputComparison:
    """One output's errors; `expected` is dlcli's."""
    if found.shape != expected.shape:
        return OutputComparison(name, np.inf, np.inf, False, f"shape {list(found.shape)}, dlcli gives "
                                                             f"{list(expected.shape)}")
    if expected.dtype == bool:
        wrong = int(np.count_nonzero(found != expected))
        return OutputComparison(name, float(wrong > 0), float(wrong > 0), wrong == 0,
                                f"{wrong} mask entries differ" if wrong else "")
    a, b = found.astype(np.float64), expected.astype(np.float64)
    error = np.abs(a - b)
    both_nan = np.isnan(a) & np.isnan(b)
    error[both_nan] = 0.0
    error[np.isnan(error)] = np.inf  # NaN on one side only
    large = np.abs(b) > atol
    max_abs = float(error.max()) if error.size else 0.0
    max_rel = float((error[large] / np.abs(b[large])).max()) if large.any() else 0.0
    within = np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
    if within.all():
        return OutputComparison(name, max_abs, max_rel, True)
    worst = np.unravel_index(int(np.argmax(np.where(within, -1.0, error))), error.shape)
    return OutputComparison(name, max_abs, max_rel, False, f"example {worst[0]}, index {list(map(int, worst[1:]))}: "
                                                           f"{a[worst]:.7g}, dlcli {b[worst]:.7g}")


def check_export(exporter: Exporter, exported: Exported, source: ExportSource, inputs: dict[str, np.ndarray],
                 rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, threads: int | None = None) -> CheckReport:
    """Run the exported file in its runtime and dlcli's predict on `inputs`; compare every output (and mask)."""
    model = source.model
    expected, masks = predict(model, inputs, source.spec.train.batch_size)
    found = exporter.runner(exported, threads)(exporter.feeds(exported, source, inputs))
    comparisons = []
    for name in model.outputs:
        comparisons.append(compare_values(name, found[name], expected[name], rtol, atol))
        if masks[name] is not None:
            comparisons.append(compare_values(f"{name}.mask", found[f"{name}.mask"], masks[name], rtol, atol))
    return CheckReport(len(next(iter(inputs.values()))), rtol, atol, comparisons)
