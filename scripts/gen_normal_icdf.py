#!/usr/bin/env python3
"""Generate csrc/include/trainops/normal_icdf_table.h: the coefficients of the
fp32 normal inverse CDF (trainops::dist::std_normal_icdf).

The standard normal quantile x(p) = Phi^-1(p) on p in [2^-32, 0.5) is split by
the fp32 exponent E of p into 31 binades [2^(E-127), 2^(E-126)). In each, with
m = p / 2^(E-127) in [1, 2) (the mantissa of p, read off its bits) and
y = m - 2 in [-1, 0), x is a degree-9 polynomial in y, fitted by weighted least
squares (weights 1/|x|, i.e. relative error) on Chebyshev nodes and rounded to
fp32; where rounding left a binade edge decreasing by an ulp, that end of one
binade is moved by an ulp (make_monotone). In the binade next to 0.5 the constant term is 0, so the relative error
stays bounded as x -> 0 (y = 0 is p = 0.5, x = 0). The table is indexed by
E mod 32: E runs over 95..125, and E = 126 (p = 0.5 exactly, which the rounding
of a 31-bit odd integer to fp32 can give) lands on the one free slot, whose
coefficients are all 0: x = 0.

Needs numpy and scipy (scipy.special.ndtri is the float64 reference). Run it
from the repository root; it prints the fit's worst relative error in float64.
"""
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.special import ndtri

DEGREE = 9
SEGMENTS = 32
NODES = 200
OUT = Path("csrc/include/trainops/normal_icdf_table.h")


def fit(e: int) -> np.ndarray:
    """Coefficients c_0..c_DEGREE (of y^0..y^DEGREE) for exponent e."""
    s = np.cos(np.pi * (np.arange(NODES) + 0.5) / NODES)  # Chebyshev nodes in (-1, 1)
    m = 1.5 + s / 2
    y = m - 2.0
    x = ndtri(np.ldexp(m, e - 127))
    w = 1.0 / np.abs(x)
    if e == 125:  # x(0) = 0: fit x = y * g(y)
        v = np.vander(y, DEGREE, increasing=True) * y[:, None]
        c, *_ = np.linalg.lstsq(v * w[:, None], x * w, rcond=None)
        return np.concatenate([[0.0], c])
    v = np.vander(y, DEGREE + 1, increasing=True)
    c, *_ = np.linalg.lstsq(v * w[:, None], x * w, rcond=None)
    return c


def round32(v: Fraction) -> np.float32:
    """v rounded to the nearest fp32, ties to even (what one fma does)."""
    f = np.float32(float(v))
    cands = [f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf))]
    best = min(cands, key=lambda c: (abs(Fraction(float(c)) - v), int(c.view(np.uint32)) & 1))
    return np.float32(best)


def evaluate(table: np.ndarray, e: int, m: np.float32) -> np.float32:
    """The kernel's fp32 Horner steps, each fma rounded once, at mantissa m of exponent e."""
    y = Fraction(float(np.float32(m) - np.float32(2.0)))  # exact
    x = table[0, e % SEGMENTS]
    for i in range(1, DEGREE + 1):
        x = round32(Fraction(float(x)) * y + Fraction(float(table[i, e % SEGMENTS])))
    return x


def make_monotone(table: np.ndarray) -> int:
    """Where the last values of binade e exceed the first of binade e + 1 (by an ulp
    of rounding), move the end of the side farther from the true quantile at the edge
    one ulp towards it, leaving that binade's other end where it is: its right end
    (y -> 0) by adding d (1 + y), its left end (y = -1) by adding -d y. Returns the
    moves."""
    k = 8
    ulp = np.float32(2.0**-23)
    left_m = [np.float32(2.0) - ulp * (i + 1) for i in range(k)]
    right_m = [np.float32(1.0) + ulp * i for i in range(k)]
    c0, c1 = DEGREE, DEGREE - 1  # rows of the constant and linear terms
    moves = 0
    # Repeated until a pass moves nothing: a move is exact at the binade's other
    # end only if the linear term absorbs it exactly in fp32.
    for _ in range(8):
        moved = moves
        for e in range(95, 125):
            moves += _fix_edge(table, e, left_m, right_m, c0, c1)
        if moves == moved:
            return moves
    raise SystemExit("binade edges not made monotone in 8 passes")


def _fix_edge(table: np.ndarray, e: int, left_m: list, right_m: list, c0: int, c1: int) -> int:
    """make_monotone at the edge between binades e and e + 1; returns the moves."""
    moves = 0
    for _ in range(8):
        left = max(evaluate(table, e, m) for m in left_m)
        right = min(evaluate(table, e + 1, m) for m in right_m)
        if left <= right:
            return moves
        moves += 1
        truth = float(ndtri(2.0 ** (e - 126)))
        if abs(float(left) - truth) >= abs(float(right) - truth):
            seg = e % SEGMENTS  # lower its right end
            new0 = np.nextafter(table[c0, seg], np.float32(-np.inf))
            d = float(new0) - float(table[c0, seg])
            table[c0, seg] = new0
            table[c1, seg] = np.float32(float(table[c1, seg]) + d)
        else:
            seg = (e + 1) % SEGMENTS  # raise its left end
            d = float(np.spacing(np.abs(right)))
            table[c1, seg] = np.float32(float(table[c1, seg]) - d)
    raise SystemExit(f"binade edge {e}: not made monotone")


def main() -> int:
    table = np.zeros((DEGREE + 1, SEGMENTS), dtype=np.float32)  # [Horner step][segment]
    worst = 0.0
    for e in range(95, 126):
        c = fit(e)
        table[:, e % SEGMENTS] = c[::-1].astype(np.float32)  # highest degree first
        yy = np.linspace(-1, 0, 2001)[:-1]
        x = ndtri(np.ldexp(yy + 2.0, e - 127))
        worst = max(worst, float(np.max(np.abs(np.polyval(c[::-1], yy) - x) / np.abs(x))))
    moves = make_monotone(table)
    rows = []
    for i in range(DEGREE + 1):
        vals = ", ".join(float(v).hex() + "f" for v in table[i])
        rows.append(f"    {{{vals}}},")
    text = (
        "// Generated by scripts/gen_normal_icdf.py: do not edit.\n"
        "// Coefficients of trainops::dist::std_normal_icdf, [Horner step][E mod 32]\n"
        "// (step 0 multiplies y^9, step 9 is the constant term).\n"
        "#pragma once\n\n"
        f"#define TRAINOPS_NORMAL_ICDF_DEGREE {DEGREE}\n"
        "#define TRAINOPS_NORMAL_ICDF_COEFFS \\\n  { \\\n"
        + " \\\n".join(rows)
        + " \\\n  }\n"
    )
    OUT.write_text(text)
    print(f"wrote {OUT}; worst relative error of the float64 fit: {worst:.3g}; "
          f"binade ends moved by an ulp for monotone edges: {moves}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
