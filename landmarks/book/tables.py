"""The book's comparison tables: every seed of stored experiments as mean +- std, beside the mean face.

The chapters compare configurations by the rule of :mod:`landmarks.evaluation.replicates`: a
difference of means is an effect when it exceeds twice the pooled standard deviation over seeds.
:func:`replicate_rows` builds the rows of such a table from the store (one row per experiment, the
mean-face baseline first), and says for each row whether it differs from a reference row beyond
that threshold::

    rows = replicate_rows({"coordinates": "coordinate", "PIP, stride 32": "pip_s32"}, "nme",
                          reference="PIP, stride 32", baseline=0.0945)
    display(markdown_table(rows))

:func:`metric_rows` shows several metrics of each experiment side by side (the NME after every
output of a multi-stage model, say) and compares one of them with the reference row.
"""
from __future__ import annotations

from typing import Any, Mapping

from landmarks.book.experiments import STORE
from landmarks.evaluation.replicates import Replicates, compare
from landmarks.profile import Profile

__all__ = ["replicates", "replicate_rows", "metric_rows", "MEAN_FACE"]

MEAN_FACE = "mean face (ignores the image)"


def replicates(name: str, key: str = "nme", profile: Profile | None = None) -> Replicates:
    """Every stored seed's ``key`` of experiment ``name`` (trained first if missing)."""
    return Replicates(STORE.results(name, profile, progress=False).values(key))


def replicate_rows(entries: Mapping[str, str], key: str = "nme", *, reference: str | None = None,
                   baseline: float | None = None, profile: Profile | None = None, column: str | None = None,
                   extra: Mapping[str, Mapping[str, Any]] | None = None, scale: float = 100.0,
                   digits: int = 2) -> list[dict[str, Any]]:
    """Rows ``{"model", <column>, "seeds", "against <reference>", *extra}`` for ``entries``
    (row label -> experiment name), with the mean-face ``baseline`` (a fraction) as the first row.

    ``column`` names the score column (default ``"<key> (%)"``); ``extra`` maps further column names
    to ``{row label: value}`` (the paper's numbers, say; a missing label gives an empty cell). The
    comparison column reads "lower (3.1 s_p)", "higher (...)" or "within noise (...)", where ``s_p``
    is the pooled standard deviation of the row and the reference row.
    """
    column = column or f"{key.upper() if key in ('nme', 'fr', 'auc') else key} (%)"
    values = {label: replicates(name, key, profile) for label, name in entries.items()}
    if reference is not None and reference not in values:
        raise ValueError(f"reference {reference!r} is not one of the rows {list(values)}")
    against = f"against {reference}" if reference is not None else None
    rows: list[dict[str, Any]] = []

    def row(label: str, score: str, seeds: Any, verdict: Any) -> dict[str, Any]:
        result: dict[str, Any] = {"model": label, column: score, "seeds": seeds}
        if against is not None:
            result[against] = verdict
        for name, by_label in (extra or {}).items():
            result[name] = by_label.get(label)
        return result

    if baseline is not None:
        rows.append(row(MEAN_FACE, f"{scale * baseline:.{digits}f}", None, None))
    for label, value in values.items():
        verdict = None
        if reference is not None and label != reference:
            verdict = compare(value, values[reference]).verdict()
        rows.append(row(label, value.format(scale, digits), value.n, verdict))
    return rows


def metric_rows(entries: Mapping[str, str], columns: Mapping[str, str], compared: str, *,
                reference: str | None = None, baseline: float | None = None, profile: Profile | None = None,
                extra: Mapping[str, Mapping[str, Any]] | None = None, scale: float = 100.0,
                digits: int = 2) -> list[dict[str, Any]]:
    """Rows ``{"model", *columns, "seeds", "against <reference>", *extra}``: for every experiment of
    ``entries`` (row label -> name), each metric of ``columns`` (column name -> metric key) as mean +-
    std over its seeds, "–" where the experiment has no such metric; the column ``compared`` of every
    row is judged against the reference row's by the rule of :func:`replicate_rows`. ``baseline`` (a
    fraction) is the mean face's score, shown in the ``compared`` column of a first row.
    """
    if compared not in columns:
        raise ValueError(f"compared column {compared!r} is not one of {list(columns)}")
    if reference is not None and reference not in entries:
        raise ValueError(f"reference {reference!r} is not one of the rows {list(entries)}")
    stored = {label: STORE.results(name, profile, progress=False) for label, name in entries.items()}
    values = {label: {column: Replicates(results.values(key)) for column, key in columns.items()
                      if key in results.metrics} for label, results in stored.items()}
    for label, by_column in values.items():
        if compared not in by_column:
            raise KeyError(f"{entries[label]}: no metric {columns[compared]!r} to compare")
    against = f"against {reference}" if reference is not None else None

    def row(label: str, cells: Mapping[str, str], seeds: Any, verdict: Any) -> dict[str, Any]:
        result: dict[str, Any] = {"model": label, **{column: cells.get(column, "–") for column in columns},
                                  "seeds": seeds}
        if against is not None:
            result[against] = verdict
        for name, by_label in (extra or {}).items():
            result[name] = by_label.get(label)
        return result

    rows = [row(MEAN_FACE, {compared: f"{scale * baseline:.{digits}f}"}, None, None)] if baseline is not None else []
    for label, by_column in values.items():
        verdict = None
        if reference is not None and label != reference:
            verdict = compare(by_column[compared], values[reference][compared]).verdict()
        cells = {column: value.format(scale, digits) for column, value in by_column.items()}
        rows.append(row(label, cells, by_column[compared].n, verdict))
    return rows
