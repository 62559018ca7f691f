"""Observed values and fitted lines per group over time (the spaghetti plot).

Stata users draw the pig data as ``twoway connected weight week if id<=10``;
``trajectories(pig, "week", "id", y="weight")`` draws that, and
``trajectories(res, "week", "id")`` adds the fitted line of each group
(xβ̂ + zb̂, ``predict, fitted``) to the observed points.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec.errors import DataError
from ._mpl import axes


def trajectories(res_or_data, time: str, group: str, n: int | None = 10, y: str | None = None,
                 data: pd.DataFrame | None = None, ax=None):
    """Per group, the observed values over ``time`` and (for a fit) the fitted line.

    A DataFrame gives one connected line (markers and line) per group; a fit
    gives markers for the observed values and a line of fitted values per
    group, in the same colour.  Each line is labelled with its group.

    Parameters
    ----------
    res_or_data
        fitted results, or a DataFrame (then ``y`` is required)
    time, group
        column names: the x axis and the grouping variable
    n
        draw the first ``n`` groups in sorted order (``None``: all)
    y
        the response (a fit's dependent variable by default)
    data
        with a fit: the data it was fitted on, when ``time`` or ``group`` is
        not a variable of the model
    ax
        the matplotlib Axes to draw on (default: a new figure)

    Returns
    -------
    matplotlib.axes.Axes
    """
    if isinstance(res_or_data, pd.DataFrame):
        if y is None:
            raise DataError("trajectories of a DataFrame need y= (the variable to draw)")
        frame = _columns(res_or_data, [time, group, y])
        fitted = None
    else:
        frame = _from_fit(res_or_data, time, group, data)
        y = y or res_or_data.depvar
        fitted = frame.pop("_fitted")
    groups = sorted(frame[group].dropna().unique())[:n]
    ax = axes(ax)
    for g in groups:
        rows = frame[frame[group] == g].sort_values(time, kind="stable")
        if fitted is None:
            ax.plot(rows[time], rows[y], marker="o", markersize=3, label=str(g))
        else:
            (line,) = ax.plot(rows[time], fitted[rows.index], label=str(g))
            ax.plot(rows[time], rows[y], linestyle="none", marker="o", markersize=3,
                    color=line.get_color(), label="_nolegend_")
    ax.set_xlabel(time)
    ax.set_ylabel(y)
    ax.set_title(f"{y} by {time}, {len(groups)} groups of {group}" + ("" if fitted is None else ": observed and fitted"))
    return ax


def _columns(data: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    missing = [c for c in names if c not in data.columns]
    if missing:
        raise DataError(f"variable(s) not found in the data: {', '.join(missing)}")
    return data[names]


def _from_fit(res, time: str, group: str, data: pd.DataFrame | None) -> pd.DataFrame:
    """time, group, y and the fitted values on the estimation sample."""
    fitted = res.predict("fitted")
    if data is not None:
        frame = _columns(data, [time, group]).iloc[res.design.sample.rows].copy()
        frame.index = fitted.index
    else:
        frame = pd.DataFrame({time: _design_column(res, time), group: _design_group(res, group)},
                             index=fitted.index)
    frame[res.depvar] = res.design.y
    frame["_fitted"] = fitted
    return frame


def _design_column(res, name: str) -> np.ndarray:
    design = res.design
    if name in design.fixed.names:
        return design.X[:, design.fixed.names.index(name)]
    for eq in design.equations:
        if name in eq.names:
            return eq.z[:, eq.names.index(name)]
    raise DataError(f"{name!r} is not a variable of the model: pass the data (data=...)")


def _design_group(res, name: str) -> np.ndarray:
    for eq in res.design.equations:
        if eq.group_key and eq.group_key[-1] == name:
            return np.asarray(eq.groups, dtype=object)[eq.refs]
    raise DataError(f"{name!r} is not a level of the model: pass the data (data=...)")
