"""Metric definitions: bounded labels whatever publishers send."""

from __future__ import annotations

from executor.metrics import MAX_LABEL_VALUES, SIGNAL_OUTCOMES, LabelGuard, Metrics


def test_publisher_chosen_label_values_are_capped() -> None:
    guard = LabelGuard(3)
    assert [guard(v) for v in ("a", "b", "a", "c", "d", "", "b")] == [
        "a",
        "b",
        "a",
        "c",
        "other",
        "",
        "b",
    ]


def test_many_strategies_and_unknown_outcomes_stay_within_bounded_series() -> None:
    metrics = Metrics()
    for n in range(500):
        metrics.signal_outcome("accepted", strategy=f"s{n}")
    metrics.signal_outcome("weird-outcome")
    metrics.dead_letter("weird-kind")
    text = metrics.render().decode()
    series = [line for line in text.splitlines() if line.startswith("executor_signals_total{")]
    # One per outcome from the start, 50 named strategies, "other" strategy, "other" outcome.
    assert len(series) == len(SIGNAL_OUTCOMES) + MAX_LABEL_VALUES + 1 + 1
    assert 'executor_signals_total{outcome="accepted",source="",strategy="other"} 450.0' in text
    assert 'executor_signals_total{outcome="other",source="",strategy=""} 1.0' in text
    assert 'executor_dead_letters_total{reason="other"} 1.0' in text
