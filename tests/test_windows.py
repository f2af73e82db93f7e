"Windows on real pipeline output: bounds, grid, explicit NaN, short/skipped monitors, back-fill and the window-longer-than-data error."
import json

import numpy as np
import pandas as pd
import pytest

from mlops_kit.config import WindowsParams
from mlops_kit.windows import WindowsError, cut_window, run_windows


def _signals(tmp_path, series: dict, interval='5min'):
    "Write a signals dir: {monitor_id: pd.Series indexed by UTC ts}."
    d = tmp_path / 'signals'; d.mkdir()
    df = pd.concat([pd.DataFrame({'monitor_id': k, 'ts': s.index, 'value': s.to_numpy(dtype=float)}) for k, s in series.items()], ignore_index=True)
    df.to_parquet(d / 'signals.parquet', index=False)
    cat = {k: {'name': k, 'group': None, 'source': 'req', 'agg': 'p95', 'value': 'latency_ms', 'filter': None, 'interval': interval,
               'owner': 'x', 'description': '', 'region': 'eu'} for k in series}
    (d / 'monitors.json').write_text(json.dumps({'monitors': cat}))
    return 'signals'


def _series(start, days, interval='5min', seed=0, drop=()):
    idx = pd.date_range(pd.Timestamp(start, tz='UTC'), periods=int(pd.Timedelta(f'{days}D') / pd.Timedelta(interval)), freq=interval)
    s = pd.Series(np.random.default_rng(seed).gamma(4, 10, len(idx)), index=idx)
    return s.drop(s.index[list(drop)])


def test_bounds_grid_nan_and_status(tmp_path):
    series = {'full': _series('2026-08-01', 90, drop=range(20000, 20030)), 'short': _series('2026-09-20', 40), 'tiny': _series('2026-10-20', 10)}
    sd = _signals(tmp_path, series)
    r = run_windows(WindowsParams(as_of='2026-10-22', min_days=14), root=tmp_path, signals_dir=sd)
    man = json.loads((tmp_path / 'data/windows/manifest.json').read_text())
    assert man['as_of'] == '2026-10-22' and r['n_ok'] == 1 and r['n_short'] == 1 and r['n_skipped'] == 1
    assert man['monitors']['tiny']['status'] == 'skipped' and 'min_days' in man['monitors']['tiny']['reason']
    train = pd.read_parquet(tmp_path / 'data/windows/train.parquet')
    full = train[train.monitor_id == 'full'].set_index('ts').value
    assert full.index[0] == pd.Timestamp('2026-08-24', tz='UTC') and full.index[-1] == pd.Timestamp('2026-10-22 23:55', tz='UTC')
    assert len(full) == 60 * 288 and (np.diff(full.index.asi8) == 300e9).all()
    gap = series['full'].index[19999] + pd.Timedelta('5min'), series['full'].index[19999] + pd.Timedelta('150min')
    assert full[gap[0]:gap[1]].isna().all() and full[gap[0]:gap[1]].size == 30 and full.isna().sum() == 30
    short = train[train.monitor_id == 'short']
    assert short.ts.min() == pd.Timestamp('2026-09-20', tz='UTC') and man['monitors']['short']['status'] == 'short'
    assert 'tiny' not in set(train.monitor_id)
    hold = pd.read_parquet(tmp_path / 'data/windows/holdout.parquet')
    h = hold[hold.monitor_id == 'full'].ts
    assert h.min() == pd.Timestamp('2026-10-23', tz='UTC') and h.max() == pd.Timestamp('2026-10-29 23:55', tz='UTC')


def test_missing_slices_come_back_as_nan(tmp_path):
    s = _series('2026-08-01', 80, drop=range(15000, 15010))
    sd = _signals(tmp_path, {'m': s})
    run_windows(WindowsParams(as_of='2026-10-01'), root=tmp_path, signals_dir=sd)
    train = pd.read_parquet(tmp_path / 'data/windows/train.parquet').set_index('ts').value
    dropped = pd.DatetimeIndex(s.index[14999] + pd.Timedelta('5min') * np.arange(1, 11))
    assert train.reindex(dropped).isna().all() and dropped.isin(train.index).all()
    assert train.notna().sum() == len(s[(s.index >= train.index[0]) & (s.index <= train.index[-1])])


def test_other_intervals_and_backfill(tmp_path):
    sd = _signals(tmp_path, {'h': _series('2026-08-01', 80, interval='1h')}, interval='1h')
    for as_of in ('2026-10-10', '2026-10-07'):
        run_windows(WindowsParams(as_of=as_of), root=tmp_path, signals_dir=sd)
        t = pd.read_parquet(tmp_path / 'data/windows/train.parquet')
        assert len(t) == 60 * 24 and t.ts.max() == pd.Timestamp(as_of, tz='UTC') + pd.Timedelta('23h')


def test_window_longer_than_the_data_is_a_clear_error(tmp_path):
    sd = _signals(tmp_path, {'m': _series('2026-10-01', 10)})
    with pytest.raises(WindowsError, match='min_days'):
        run_windows(WindowsParams(as_of='2026-10-03', days=60, min_days=14, holdout_days=7), root=tmp_path, signals_dir=sd)
    with pytest.raises(WindowsError, match='2026-12-01'):
        run_windows(WindowsParams(as_of='2026-12-01'), root=tmp_path, signals_dir=sd)
