"scikit-learn's estimator contract and the series contract, for every forecaster family."
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from mlops_kit.models import FORECASTERS


def _y(days=15, step='5min', seed=1):
    idx = pd.date_range('2026-09-01', periods=int(pd.Timedelta(f'{days}D') / pd.Timedelta(step)), freq=step, tz='UTC')
    y = pd.Series(50 + 10 * np.sin(2 * np.pi * idx.hour / 24) + np.random.default_rng(seed).normal(0, 1, len(idx)), index=idx)
    y.iloc[100:160] = np.nan
    return y


@pytest.mark.parametrize('name', sorted(FORECASTERS))
def test_sklearn_contract(name):
    cls = FORECASTERS[name]
    est = cls()
    params = est.get_params()
    assert params and all(getattr(est, k) == v for k, v in params.items())      # the constructor only stores its arguments
    c = clone(est)
    assert c.get_params() == params and c is not est
    key = next(iter(params))
    assert est.set_params(**{key: params[key]}) is est
    y = _y()
    assert est.fit(y) is est
    assert [a for a in vars(est) if a.endswith('_') and not a.startswith('_')]   # learned state ends in _
    assert not [a for a in vars(clone(est)) if a.endswith('_') and not a.startswith('_')]


@pytest.mark.parametrize('name', sorted(FORECASTERS))
@pytest.mark.parametrize('step', ['5min', '10min', '30min', '1h'])
def test_predictions_align_with_timestamps(name, step):
    y = _y(step=step)
    per_day = int(pd.Timedelta('1D') / pd.Timedelta(step))
    m = FORECASTERS[name]().fit(y[:-per_day])
    idx = y.index[-per_day:][::3]                                                  # any subset of timestamps
    out = m.predict(idx)
    assert isinstance(out, pd.Series) and out.index.equals(idx) and out.notna().all()
    if name == 'level':                                                           # a flat line: the last day's median, off by the daily cycle
        assert out.nunique() == 1 and abs(out.iloc[0] - y[:-per_day][-per_day:].median()) < 1e-9 and (out - y[idx]).abs().median() < 10
    else: assert (out - y[idx]).abs().median() < 5


@pytest.mark.parametrize('name', sorted(FORECASTERS))
def test_clear_error_on_unusable_input(name):
    with pytest.raises(TypeError, match='DatetimeIndex'): FORECASTERS[name]().fit(pd.Series([1.0, 2.0]))
    with pytest.raises(ValueError, match='at least 2 observed'): FORECASTERS[name]().fit(_y()[:0].reindex(_y().index[:10]))
