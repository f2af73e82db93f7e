"The engine: local processes and a Dask LocalCluster give the same results; failures name the monitor; the environment picks the backend."
import pandas as pd
import pytest

distributed = pytest.importorskip('distributed')

from mlops_kit import engine
from mlops_kit.bench import synthetic_fleet
from mlops_kit.engine import EngineError, MonitorError, parallel_map, scheduler_address
from mlops_kit.fleet import FleetBundle, replay_fleet, split_monitors, tune_fleet

# generous budgets: under a loaded machine a timeout would make the two runs differ for reasons that are not the engine's
TUNE = dict(budget_s=120.0, trial_budget_s=60.0)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for v in engine.SCHEDULER_ENV: monkeypatch.delenv(v, raising=False)


@pytest.fixture(scope='module')
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope='module')
def fleet():
    train, hold, inc = synthetic_fleet(4, days=16, holdout_days=2, seed=3)
    return train, hold, inc


def _boom(v):
    if v == 'bad': raise ValueError('this monitor is broken')
    return v.upper()


def _where(v):
    try: return distributed.get_worker().address
    except ValueError: return 'local'


def _strip(t: dict) -> pd.DataFrame:
    "The bundle table without timings."
    return FleetBundle(t).table().drop(columns='tune_seconds')


def test_dask_equals_local_processes(fleet, cluster):
    train, hold, inc = fleet
    local, lf = tune_fleet(train, workers=2, progress=False, **TUNE)
    dask, df = tune_fleet(train, progress=False, scheduler=cluster.scheduler_address, **TUNE)
    assert sorted(local) == sorted(dask) == sorted(train.monitor_id.unique()) and lf == df == {}
    pd.testing.assert_frame_equal(_strip(local), _strip(dask))
    for m in local:
        assert local[m].detector.get_params(deep=False).keys() == dask[m].detector.get_params(deep=False).keys()
        assert repr(local[m].detector) == repr(dask[m].detector) and repr(local[m].policy) == repr(dask[m].policy)
        pd.testing.assert_frame_equal(local[m].trials.drop(columns='seconds', errors='ignore'), dask[m].trials.drop(columns='seconds', errors='ignore'))
    hist, ho = split_monitors(train), split_monitors(hold)
    tl, fl = replay_fleet(local, hist, ho, inc, workers=2, progress=False)
    td, fd = replay_fleet(local, hist, ho, inc, progress=False, scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(tl.drop(columns='replay_seconds'), td.drop(columns='replay_seconds'))
    for m in fl: pd.testing.assert_frame_equal(fl[m], fd[m])


@pytest.mark.parametrize('backend', ['local', 'dask'])
def test_failure_names_the_monitor(backend, cluster):
    kw = {'workers': 2} if backend == 'local' else {'scheduler': cluster.scheduler_address}
    items = {'a': 'x', 'bad': 'bad', 'c': 'y'}
    assert parallel_map(_boom, {'a': 'x', 'c': 'y'}, progress=False, **kw) == {'a': 'X', 'c': 'Y'}
    with pytest.raises(MonitorError, match=r"tune: monitor 'bad' failed: ValueError: this monitor is broken") as e:
        parallel_map(_boom, items, desc='tune', progress=False, **kw)
    assert e.value.key == 'bad' and '_boom' in e.value.remote_traceback


def test_environment_picks_the_backend(cluster, monkeypatch):
    items = {'a': 1, 'b': 2}
    assert set(parallel_map(_where, items, workers=1, progress=False).values()) == {'local'}
    monkeypatch.setenv('DASK_SCHEDULER_ADDRESS', cluster.scheduler_address)
    assert scheduler_address(None) == (cluster.scheduler_address, '$DASK_SCHEDULER_ADDRESS')
    assert set(parallel_map(_where, items, workers=1, progress=False).values()) <= {w.address for w in cluster.workers.values()}
    monkeypatch.setenv('MLOPS_KIT_SCHEDULER', 'local')      # forces local processes over both the env and params
    assert set(parallel_map(_where, items, workers=1, progress=False, scheduler='tcp://127.0.0.1:9').values()) == {'local'}


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(engine, 'CONNECT_TIMEOUT', '1s')
    with pytest.raises(EngineError, match=r"cannot reach the Dask scheduler tcp://127.0.0.1:9 \(from engine.scheduler\)"):
        parallel_map(len, {'a': 'x'}, progress=False, scheduler='tcp://127.0.0.1:9')
    monkeypatch.setenv('MLOPS_KIT_SCHEDULER', 'http://nope')
    with pytest.raises(EngineError, match=r"\$MLOPS_KIT_SCHEDULER = 'http://nope': not a Dask scheduler address"):
        parallel_map(len, {'a': 'x'}, progress=False)
