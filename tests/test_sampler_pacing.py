import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampler import pacing


@settings(max_examples=60, deadline=None)
@given(
    T=st.floats(1, 1e6),
    c0=st.floats(1e-4, 1.0),
    p=st.floats(0.2, 5.0),
    t=st.integers(0, 10**7),
    dt=st.integers(0, 10**6),
)
def test_growing_pacings_monotone_and_bounded(T, c0, p, t, dt):
    for f in (pacing.linear(T, c0), pacing.root(T, p, c0), pacing.geometric(T, c0)):
        a, b = f(t), f(t + dt)
        assert 0 < a <= 1 and 0 < b <= 1
        assert b >= a - 1e-12
        assert f(0) == pytest.approx(c0, rel=1e-9)
        assert f(int(math.ceil(T)) + 1) == 1.0


def test_formulas():
    assert pacing.linear(100, 0.2)(50) == pytest.approx(0.6)
    # root: ((t (1 - c0^2) / T + c0^2)^(1/2))
    assert pacing.root(100, 2, 0.1)(50) == pytest.approx(math.sqrt(50 * 0.99 / 100 + 0.01))
    assert pacing.geometric(100, 0.01)(50) == pytest.approx(0.1)
    s = pacing.step([10, 20], [0.2, 0.5, 1.0])
    assert [s(0), s(9), s(10), s(25)] == [0.2, 0.2, 0.5, 1.0]
    c = pacing.cyclical(100, 0.25, 1.0)
    assert [c(0), c(50), c(100)] == pytest.approx([0.25, 1.0, 0.25])
    i = pacing.interleaved(10, 0.1)
    assert (
        i(0) == pytest.approx(0.1) and i(5) == pytest.approx(0.55) and i(10) == pytest.approx(0.1)
    )
    a = pacing.anti(pacing.linear(10))
    assert a.reverse and a(5) == pacing.linear(10)(5)
    assert pacing.as_pacing(lambda t: 0.5)(3) == 0.5


@pytest.mark.parametrize(
    "make",
    [
        lambda: pacing.linear(0),
        lambda: pacing.linear(10, c0=0),
        lambda: pacing.linear(10, c0=1.5),
        lambda: pacing.root(10, p=0),
        lambda: pacing.root(10, p=float("nan")),
        lambda: pacing.geometric(float("inf")),
        lambda: pacing.step([5, 3], [0.1, 0.2, 0.3]),
        lambda: pacing.step([5], [0.1]),
        lambda: pacing.cyclical(10, low=0.9, high=0.5),
        lambda: pacing.interleaved(-1),
        lambda: pacing.as_pacing(3),
    ],
)
def test_invalid_params(make):
    with pytest.raises(ValueError):
        make()
