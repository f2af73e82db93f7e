"The embedded sample fleet: seeded (same seed, same bytes) and carrying the patterns the kit is proven on."
import hashlib

import numpy as np
import pandas as pd
import pytest

from mlops_kit.sample import HOLIDAYS, generate, write_sample


def _digest(d):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.iterdir())}


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a, b, c = (write_sample(tmp_path / n, seed=s, days=8, n_services=4) for n, s in (('a', 7), ('b', 7), ('c', 8)))
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b')
    assert _digest(tmp_path / 'a')['requests.parquet'] != _digest(tmp_path / 'c')['requests.parquet']
    assert {k: v for k, v in a.items() if k != 'out_dir'} == {k: v for k, v in b.items() if k != 'out_dir'}


@pytest.fixture(scope='module')
def fleet():
    return generate(seed=7, days=75, n_services=8)


def test_fleet_shape_and_pii(fleet):
    req, inc, ev = fleet
    assert req.service.nunique() == 8 and (req.ts.max() - req.ts.min()) > pd.Timedelta('74D')
    assert {'user_id', 'client_ip', 'email'} <= set(req.columns) and req.email.str.contains('@').all()
    assert req.ts.is_monotonic_increasing and str(req.ts.dt.tz) == 'UTC'


def test_sparse_service_is_mostly_empty(fleet):
    req, _, _ = fleet
    slices = req.ts.dt.floor('5min')
    per_service = slices.groupby(req.service, observed=True).nunique() / (75 * 288)
    assert per_service['ledger-export'] < 0.1 and per_service.drop('ledger-export').min() > 0.5


def test_holidays_deploys_maintenance_and_labelled_incidents(fleet):
    req, inc, ev = fleet
    assert {'deploy', 'maintenance', 'holiday'} <= set(ev.kind)
    daily = req.groupby(req.ts.dt.normalize()).size()
    hol = pd.Timestamp(HOLIDAYS[0], tz='UTC')
    assert daily[hol] < 0.8 * daily[hol - pd.Timedelta('7D')]  # a holiday is quieter than the same weekday before
    assert {'monitor_id', 'start', 'end', 'kind'} <= set(inc.columns) and (inc.end > inc.start).all()
    assert (inc.start >= req.ts.max() - pd.Timedelta('7D')).sum() >= 4  # the holdout week has incidents to find
    m = ev[ev.kind == 'maintenance'].iloc[0]
    inside = req[(req.service == m.service) & (req.ts >= m.start) & (req.ts < m.end)]
    assert len(inside) == 0  # maintenance is a real gap


def test_errors_counter_spikes_during_error_incidents(fleet):
    req, inc, _ = fleet
    err = req[req.status >= 500].set_index('ts').resample('5min').size()
    storm = inc[inc.kind == 'errors'].iloc[0]
    assert err[storm.start:storm.end - pd.Timedelta('1s')].mean() > 5 * err.mean()
