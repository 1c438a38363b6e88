"""Image attributions as units a report can name: a grid of equal cells over the model input ("r1c1" is the
top-left cell), each carrying the absolute attribution of its pixels. Equal areas make a cell count a share
of the image, so "share of attribution in a region / share of the image it covers" is a count ratio, the
same arithmetic as sensitive words among all words of a text. A region of interest is the set of cells
whose area lies at least half inside it."""
from __future__ import annotations

import numpy as np

GRID = 16


def grid_for(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of cells: GRID each way, fewer for images smaller than GRID pixels."""
    return min(GRID, height), min(GRID, width)


def cell_name(row: int, col: int) -> str:
    return f"r{row + 1}c{col + 1}"


def _edges(n: int, parts: int) -> np.ndarray:
    return np.round(np.linspace(0, n, parts + 1)).astype(int)


def cell_masses(scores: np.ndarray) -> list[tuple[str, float]]:
    """(cell name, sum of |attribution| of its pixels) for every cell of an H x W map, row by row."""
    a = np.abs(np.asarray(scores, dtype=np.float64))
    rows, cols = grid_for(*a.shape)
    re, ce = _edges(a.shape[0], rows), _edges(a.shape[1], cols)
    return [(cell_name(i, j), float(a[re[i]:re[i + 1], ce[j]:ce[j + 1]].sum()))
            for i in range(rows) for j in range(cols)]


def cells_inside(mask: np.ndarray) -> set[str]:
    """Names of the cells at least half inside a boolean H x W mask."""
    m = np.asarray(mask, dtype=bool)
    rows, cols = grid_for(*m.shape)
    re, ce = _edges(m.shape[0], rows), _edges(m.shape[1], cols)
    return {cell_name(i, j) for i in range(rows) for j in range(cols)
            if m[re[i]:re[i + 1], ce[j]:ce[j + 1]].mean() >= 0.5}
