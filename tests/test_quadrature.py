"""Quadrature rules checked by their properties, never by pinned node lists."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrand import InputError
from integrand.quadrature import RULES, make_rule

# Exactness degree of each rule family, given its number of nodes.
DEGREE = {
    "left": lambda n: 0,
    "right": lambda n: 0,
    "middle": lambda n: 1,
    "trapezoid": lambda n: 1,
    "gauss-legendre": lambda n: 2 * n - 1,
    "clenshaw-curtis": lambda n: n if (n - 1) % 2 == 0 else n - 1,
}
ORDER = {"left": 1, "right": 1, "middle": 2, "trapezoid": 2}


def _min_steps(name: str) -> int:
    return 2 if name in ("trapezoid", "clenshaw-curtis") else 1


@given(name=st.sampled_from(RULES), steps=st.integers(1, 200))
def test_weights_sum_to_one_and_nodes_in_unit_interval(name: str, steps: int) -> None:
    steps = max(steps, _min_steps(name))
    rule = make_rule(name, steps)
    assert rule.steps == steps
    assert math.isclose(sum(rule.weights), 1.0, rel_tol=0, abs_tol=1e-13)
    assert all(0.0 <= t <= 1.0 for t in rule.nodes)
    assert all(w > 0 for w in rule.weights)


@settings(max_examples=60)
@given(name=st.sampled_from(RULES), steps=st.integers(1, 30), seed=st.integers(0, 2**31 - 1))
def test_exact_on_polynomials_up_to_degree(name: str, steps: int, seed: int) -> None:
    steps = max(steps, _min_steps(name))
    rule = make_rule(name, steps)
    degree = min(rule.degree, 40)
    assert rule.degree == DEGREE[name](steps)
    coeffs = np.random.default_rng(seed).normal(size=degree + 1)
    exact = sum(c / (k + 1) for k, c in enumerate(coeffs))
    approx = rule.integrate(lambda t: np.polynomial.polynomial.polyval(t, coeffs))
    assert approx == pytest.approx(exact, rel=1e-9, abs=1e-9)


@settings(max_examples=30)
@given(name=st.sampled_from(RULES), seed=st.integers(0, 2**31 - 1))
def test_not_exact_one_degree_above(name: str, seed: int) -> None:
    steps = 3 if name != "gauss-legendre" else 4
    rule = make_rule(name, steps)
    k = rule.degree + 1
    exact = 1.0 / (k + 1)
    assert abs(rule.integrate(lambda t: t**k) - exact) > 1e-12


@pytest.mark.parametrize("name", sorted(ORDER))
def test_error_shrinks_at_expected_order(name: str) -> None:
    fn, exact = np.exp, math.e - 1
    errors = [abs(make_rule(name, n).integrate(fn) - exact) for n in (16, 32, 64, 128)]
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(abs(r - ORDER[name]) < 0.1 for r in rates), rates


@pytest.mark.parametrize("name", ["gauss-legendre", "clenshaw-curtis"])
def test_spectral_rules_converge_exponentially_on_smooth_functions(name: str) -> None:
    errors = [abs(make_rule(name, n).integrate(np.exp) - (math.e - 1)) for n in (3, 5, 7, 9)]
    assert all(b < a / 20 or b < 1e-14 for a, b in zip(errors, errors[1:])), errors


def test_clenshaw_curtis_is_nested() -> None:
    for n in (3, 5, 9, 17):
        coarse, fine = make_rule("clenshaw-curtis", n).nodes, make_rule("clenshaw-curtis", 2 * n - 1).nodes
        assert all(any(abs(c - f) < 1e-15 for f in fine) for c in coarse)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_bad_steps(steps: object) -> None:
    with pytest.raises(InputError) as err:
        make_rule("left", steps)  # type: ignore[arg-type]
    assert err.value.argument == "steps"


def test_unknown_rule_lists_valid_ones() -> None:
    with pytest.raises(InputError, match="gauss-legendre") as err:
        make_rule("simpson", 5)
    assert err.value.argument == "rule"
