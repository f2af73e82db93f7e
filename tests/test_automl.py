"AutoML keeps its budgets, survives bad candidates, and gives a clear result or a clear error on degenerate series."
import time

import numpy as np
import pandas as pd
import pytest

from mlops_kit import replay, tune
from mlops_kit.models import SeasonalProfile


class Slow(SeasonalProfile):
    "A candidate that takes far longer than its trial budget."
    def fit(self, y):
        time.sleep(0.3)
        return super().fit(y)


class Broken(SeasonalProfile):
    def fit(self, y): raise FloatingPointError('diverged')


def _y(days=21, seed=0):
    idx = pd.date_range('2026-09-01', periods=days * 288, freq='5min', tz='UTC')
    return pd.Series(100 + 30 * np.sin(2 * np.pi * idx.hour / 24) + np.random.default_rng(seed).normal(0, 4, len(idx)), index=idx)


def test_slow_and_failing_candidates_are_logged_and_skipped():
    t = tune(_y(), cands=[('slow', Slow()), ('broken', Broken()), ('profile', SeasonalProfile())], trial_budget_s=0.1)
    log = t.trials[t.trials.stage == 'forecaster'].set_index(['name', 'fold']).status
    assert log['slow', 1].startswith('timeout') and log['broken', 1].startswith('failed: FloatingPointError: diverged')
    assert log['slow', 2] == log['broken', 2] == 'skipped: not ok in fold 1'      # a candidate that failed once cannot win: no second try
    assert (log['profile'] == 'ok').all()
    assert t.path == 'search' and t.note.startswith('profile ')


def test_total_budget_stops_the_search_and_falls_back():
    t = tune(_y(), cands=[(f'slow{i}', Slow()) for i in range(4)], budget_s=0.5, trial_budget_s=0.1)
    st = t.trials[t.trials.stage == 'forecaster'].status
    assert st.str.startswith('skipped: total budget spent').sum() >= 4 and st.str.startswith('timeout').sum() >= 1
    assert t.path == 'fallback' and 'no forecaster converged' in t.note
    assert isinstance(t.detector.forecaster_, SeasonalProfile) and t.alerts_per_day <= 2


def test_all_candidates_failing_falls_back_to_the_profile():
    t = tune(_y(), cands=[('broken', Broken())])
    assert t.path == 'fallback' and 'FloatingPointError' in t.note


IDX = pd.date_range('2026-09-01', periods=16 * 288, freq='5min', tz='UTC')
RNG = np.random.default_rng(0)
DEGENERATE = {
    'constant': (pd.Series(5.0, index=IDX), 'result'),
    'all-NaN': (pd.Series(np.nan, index=IDX), 'need at least 2 observed values'),
    'one-point': (pd.Series([3.0], index=IDX[:1]), 'need at least 2 observed values'),
    '99%-sparse counter': (pd.Series(np.where(RNG.random(len(IDX)) < 0.01, 10.0, np.nan), index=IDX), 'result'),
    '99%-sparse measurement': (pd.Series(np.where(RNG.random(len(IDX)) < 0.01, RNG.gamma(3, 20, len(IDX)), np.nan), index=IDX), 'result'),
}


@pytest.mark.parametrize('name', list(DEGENERATE))
def test_degenerate_series_give_a_clear_result_or_error(name):
    y, expect = DEGENERATE[name]
    if expect == 'result':
        t = tune(y)
        assert t.path in ('level', 'daily', 'search', 'sparse', 'fallback') and np.isfinite(t.detector.scale_by_hour_).all()
    else:
        with pytest.raises(ValueError, match=expect): tune(y)
    r = replay(y)                                            # replay never crashes: no history means no output and no alert
    assert r.index.equals(y.index) and not r.alert[r.expected.isna()].any()
    if name == 'constant': assert r.expected.dropna().eq(5.0).all() and not r.alert.any()
