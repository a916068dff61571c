"""How `claims load` judges a step and chooses the next: a backlog that keeps growing
faster than a tenth of the offered rate is not sustained; --find-max ramps ×1.5 while
steps hold (down while none has), then halves the gap until it is within 10 %."""

from __future__ import annotations

import pytest

from engine.ops.load import (
    LAG_GROWTH_TOLERANCE,
    Sample,
    Step,
    bytes_per_encounter,
    max_sustained,
    next_rate,
    slope,
    slope_error,
)


def step(rate: float, lags: list[int], duration_s: float = 20.0, sent_share: float = 1.0) -> Step:
    every = duration_s / len(lags)
    return Step(rate, duration_s, [Sample((i + 1) * every, round(rate * sent_share * (i + 1) * every), lag, {}, {})
                                   for i, lag in enumerate(lags)])


def test_the_slope_of_a_straight_line_is_its_gradient() -> None:
    assert slope([(0.0, 5.0), (1.0, 8.0), (2.0, 11.0)]) == pytest.approx(3.0)
    assert slope([(1.0, 4.0)]) == 0.0 and slope([(1.0, 4.0), (1.0, 9.0)]) == 0.0


def test_a_backlog_that_grows_past_the_tolerance_is_not_sustained() -> None:
    rate = 100.0
    flat = step(rate, [300, 900, 400, 350, 380, 360, 370, 365])  # a burst early on, then level
    assert flat.sustained()
    growing = step(rate, [0, 100, 200, 300, 400, 500, 600, 700])  # 40 records/s > 10 % of 100/s
    assert growing.lag_growth_per_s() > LAG_GROWTH_TOLERANCE * rate and not growing.sustained()
    assert not step(rate, [0]).sustained()  # one reading says nothing


def test_the_slope_error_is_zero_on_a_line_and_grows_with_scatter() -> None:
    line = [(float(x), 3.0 * x + 5) for x in range(10)]
    assert slope_error(line) == pytest.approx(0.0, abs=1e-9)
    scattered = [(float(x), 3.0 * x + (400 if x % 2 else -400)) for x in range(10)]
    assert slope_error(scattered) > 20 and slope_error(line[:2]) == 0.0


def test_a_backlog_that_only_scatters_is_not_growth() -> None:
    """Two workers commit a second apart: the backlog read from committed offsets jumps by
    hundreds of records, and a 10-second slope of +14/s at 133/s was such a jump, not growth."""
    rate = 133.0
    scatter = [600, 700, 500, 800, 450, 900, 550, 650, 1100, 700, 500, 1000, 600, 900, 800, 1000]
    noisy = step(rate, scatter, duration_s=16.0)
    assert noisy.lag_growth_per_s() > LAG_GROWTH_TOLERANCE * rate  # by the slope alone: not held
    assert noisy.sustained()
    steady_growth = step(rate, [600 + 60 * i + (40 if i % 2 else -40) for i in range(16)], duration_s=16.0)
    assert not steady_growth.sustained()


def test_a_step_the_sender_could_not_offer_is_not_sustained() -> None:
    """On a full machine the driver falls behind the engine: 801/s asked, 496/s sent, and a
    flat backlog was reported as 801/s sustained."""
    flat = [300, 310, 290, 300, 305, 295, 300, 300]
    assert step(801.0, flat, sent_share=0.96).sustained()
    behind = step(801.0, flat, sent_share=496 / 801)
    assert not behind.sender_kept_up() and not behind.sustained()
    assert behind.figures(1000.0)["sender_kept_up"] is False


def test_find_max_ramps_then_halves_the_gap_until_the_bracket_is_tight() -> None:
    held, lost = [10, 10, 10, 10], [0, 500, 1000, 1500]
    steps = [step(100.0, held)]
    assert next_rate(steps, 10_000) == 150.0
    steps.append(step(150.0, held))
    assert next_rate(steps, 10_000) == 225.0
    steps.append(step(225.0, lost))
    assert next_rate(steps, 10_000) == 187.5
    steps.append(step(187.5, held))
    assert next_rate(steps, 10_000) == 206.25  # 225 / 187.5 = 1.2: still wider than BRACKET
    steps.append(step(206.25, lost))
    assert next_rate(steps, 10_000) is None  # 206.25 / 187.5 = 1.1
    assert max_sustained(steps) == 187.5
    assert next_rate([step(100.0, held)], 120.0) is None  # the ceiling


def test_find_max_steps_down_when_the_first_rate_does_not_hold() -> None:
    held, lost = [10, 10, 10, 10], [0, 500, 1000, 1500]
    steps = [step(150.0, lost)]
    assert next_rate(steps, 10_000) == 100.0
    steps.append(step(100.0, held))
    assert next_rate(steps, 10_000) == 125.0
    assert next_rate([step(6.0, lost)], 10_000) is None  # not below MIN_RATE
    assert max_sustained([step(100.0, lost)]) is None


def test_record_bytes_are_given_per_encounter_largest_topic_first() -> None:
    figures = bytes_per_encounter({"claims.encounters": 2_600, "app-payer_members-changelog": 15_000}, 10)
    assert figures == {"total": 1760, "by_topic": {"app-payer_members-changelog": 1500, "claims.encounters": 260}}
    assert bytes_per_encounter({}, 0)["total"] is None


def test_a_steps_memory_is_read_against_its_warmed_up_value() -> None:
    """RSS grows while tables and caches fill; the target (flat within 10 % over a long
    soak) is read from a tenth of the way in, not from the process's start."""
    rss = [60.0, 150.0, 200.0, 200.0, 202.0, 204.0, 206.0, 208.0, 210.0, 212.0, 220.0] * 4
    samples = [Sample(float(i), 0, 0, {}, {"worker": {"cpu_percent": 40.0 + i % 2, "rss_mb": mb}})
               for i, mb in enumerate(sorted(rss))]
    usage = Step(100.0, 44.0, samples).figures(1000.0)["processes"]["worker"]
    assert usage["rss_mb_first"] == 60.0 and usage["rss_mb_last"] == 220.0
    assert usage["rss_mb_after_warm_up"] == sorted(rss)[4]
    assert usage["rss_growth_after_warm_up"] == round(220.0 / sorted(rss)[4] - 1, 3)
    assert usage["cpu_percent_mean"] == 40.5
    assert 10 <= len(usage["rss_mb_series"]) <= 44 and usage["rss_mb_series"][0] == (0.0, 60.0)
