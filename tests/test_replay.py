"Causal replay: no peeking, any spacing, irregular timestamps, and the documented output contract."
import numpy as np
import pandas as pd
import pytest

from mlops_kit import replay, tune
from mlops_kit.automl import COLUMNS


def _y(days=18, step='5min', seed=0):
    idx = pd.date_range('2026-09-01', periods=int(pd.Timedelta(f'{days}D') / pd.Timedelta(step)), freq=step, tz='UTC')
    rng = np.random.default_rng(seed); h = idx.hour + idx.minute / 60
    return pd.Series(np.asarray(100 + 30 * np.sin(2 * np.pi * (h - 9) / 24) + rng.normal(0, 4, len(idx))), index=idx)


def test_changing_the_future_never_changes_the_past():
    y = _y()
    cut = y.index[0] + pd.Timedelta('16D') + pd.Timedelta('7h')          # mid-day, so the same refit period holds past and future
    y2 = y.copy(); y2[y2.index >= cut] = y2[y2.index >= cut] * 3 + 500  # a wildly different future
    a, b = replay(y), replay(y2)
    past = a.index < cut
    pd.testing.assert_frame_equal(a[past], b[past])
    assert not a[~past].equals(b[~past])                               # the future did change: the test can fail
    assert a.expected[past].notna().sum() > 2 * 288                    # and the past really has outputs to compare


@pytest.mark.parametrize('step', ['5min', '10min', '30min', '1h'])
def test_every_spacing_from_the_first_day(step):
    y = _y(days=16, step=step)
    y.iloc[-5] += 400
    r = replay(y)
    assert list(r.columns) == COLUMNS and r.index.equals(y.index)
    scored = r.expected.notna()
    assert scored.sum() == len(y) * 15 // 16                         # every day after the first (min_history='1D')
    assert r.unusual.iloc[-5] and r.score[scored].between(0, 1).all()
    assert (r.lower[scored] <= r.expected[scored]).all() and (r.expected[scored] <= r.upper[scored]).all()


def test_irregular_timestamps_are_snapped():
    y = _y(days=16)
    jitter = pd.to_timedelta(np.random.default_rng(1).integers(-90, 90, len(y)), unit='s')
    yi = pd.Series(y.to_numpy(), index=y.index + jitter).sort_index()
    r = replay(yi)
    assert r.index.equals(yi.index) and r.expected.iloc[-288:].notna().all()


def test_tune_returns_detector_policy_and_trial_log():
    t = tune(_y(days=21))
    assert t.path == 'search' and t.alerts_per_day <= 2.0
    log = t.trials
    f = log[log.stage == 'forecaster']
    assert {'forecaster', 'policy'} == set(log.stage) and (f[f.fold == 1].status == 'ok').all()
    assert (f[f.fold == 2].status == 'ok').sum() == 2 and f[f.fold == 2].status.str.startswith(('ok', 'pruned: rank')).all()   # successive halving keeps 2


def test_a_latency_idle_most_hours_is_judged_on_the_hours_it_was_measured():
    "Exactly 0 in 60 % of the hours (no calls): the zeros are read as 'nothing measured', not as a level the busy hours are far above."
    idx = pd.date_range('2026-09-01', periods=20 * 24, freq='1h', tz='UTC')
    rng = np.random.default_rng(7)
    busy = rng.random(len(idx)) >= 0.6
    y = pd.Series(np.where(busy, rng.normal(600, 40, len(idx)) + 100 * np.sin(2 * np.pi * idx.hour / 24), 0.0), index=idx)
    slow = int(np.flatnonzero(busy[-48:])[5]) + len(idx) - 48
    y.iloc[slow] = 2000.0                                              # one slow hour, two days from the end
    r = replay(y)
    starts = np.flatnonzero(r.alert & ~r.alert.shift(fill_value=False))
    assert list(starts) == [slow]                                      # the slow hour, and no ordinary busy hour
    assert r.score[y == 0].isna().all() and not r.unusual[y == 0].any()  # a zero has no score
    assert abs(r.expected[busy].median() - 600) < 50                   # the measured level, not the zeros' pull
    assert 'zeros read as nothing measured' in tune(y).note
    both = replay(y, direction='both')                                 # a drop to 0 may be the outage: zeros stay values
    assert both.score[y == 0].notna().mean() > 0.9
