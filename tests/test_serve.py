"""Serving the champion: the real `mlflow models serve` on a free loopback port answers the documented request format;
`mlops-kit score` scores files with the same registered model."""
import json, urllib.error, urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_kit.cli import main
from mlops_kit.config import load_params
from mlops_kit.fleet import FleetBundle, tune_fleet
from mlops_kit.guard import sha256_file

from conftest import ROOT
COLS = ['monitor_id', 'ts', 'value', 'expected', 'lower', 'upper', 'score', 'unusual', 'alert', 'alert_id', 'stage']


@pytest.fixture(scope='module')
def champion(tmp_path_factory):
    "A scratch store with a two-monitor bundle registered as models:/mlops_kit_fleet@champion; (root, uri, holdout rows)."
    import mlflow
    from mlops_kit.tracking import experiment, log_bundle
    root = tmp_path_factory.mktemp('serve')
    rng, ix = np.random.default_rng(5), pd.date_range('2026-09-01', periods=16 * 288, freq='5min', tz='UTC')
    long = pd.concat([pd.DataFrame({'monitor_id': f'svc{i}.latency_p95', 'ts': ix, 'value': 100 + 20 * np.sin(2 * np.pi * ix.hour.to_numpy() / 24) + rng.normal(0, 3, len(ix))})
                      for i in range(2)], ignore_index=True)
    cut = ix[0] + pd.Timedelta('15D')
    tuned, _ = tune_fleet(long[long.ts < cut], workers=1, progress=False)
    FleetBundle(tuned).save(root / 'bundle.pkl')
    uri = f'sqlite:///{root}/mlflow.db'; eid = experiment('serve', uri)
    (root / 'data/windows').mkdir(parents=True); long[long.ts >= cut].to_parquet(root / 'data/windows/holdout.parquet')   # what bench serve replays
    hold = long[long.ts >= cut].assign(ts=lambda d: d.ts.dt.tz_localize(None)).reset_index(drop=True)
    with mlflow.start_run(experiment_id=eid):
        info = log_bundle(root / 'bundle.pkl', hold.head(6))
        mlflow.log_text('# Model card: mlops_kit_fleet v1\n\n## Gate verdict: PASSED\n', 'register/v1/model_card.md')   # as the register stage logs it
    mv = mlflow.register_model(info.model_uri, 'mlops_kit_fleet'); c = mlflow.tracking.MlflowClient(uri)
    c.set_model_version_tag('mlops_kit_fleet', mv.version, 'model_sha256', c.get_run(info.run_id).data.tags['model_sha256'])   # as `mlops-kit register` records it
    c.set_registered_model_alias('mlops_kit_fleet', 'champion', mv.version)
    p = load_params(ROOT / 'params.yaml')
    p = p.model_copy(update={'tracking': p.tracking.model_copy(update={'uri': uri})})
    (root / 'params.yaml').write_text(yaml.safe_dump(p.model_dump(mode='json'), sort_keys=False))
    return root, uri, hold


def _post(port, payload):
    req = urllib.request.Request(f'http://127.0.0.1:{port}/invocations', data=json.dumps(payload).encode(), headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=30) as r: return r.status, json.loads(r.read())


def test_real_mlflow_scoring_server_serves_the_champion(champion):
    root, uri, hold = champion
    from mlops_kit.serve import scoring_server
    with scoring_server('models:/mlops_kit_fleet@champion', uri) as (port, _):          # the real `mlflow models serve`, free loopback port
        rows = hold[hold.monitor_id == 'svc0.latency_p95'].head(12).copy()
        rows.loc[rows.index[-3:], 'value'] += 500                                  # an obvious spike at the end
        req = rows.assign(ts=rows.ts.dt.strftime('%Y-%m-%dT%H:%M:%S'))
        status, body = _post(port, {'dataframe_records': req.to_dict('records')})
        assert status == 200
        out = pd.DataFrame(body['predictions'])
        assert list(out.columns) == COLS and len(out) == 12
        assert out.unusual.iloc[-3:].all() and not out.unusual.iloc[:9].any() and out.score.between(0, 1).all()
        assert (out.lower < out.expected).all() and (out.expected < out.upper).all()
        cols = ['monitor_id', 'ts', 'value']                                       # MLflow's other two JSON formats: the same answer
        assert _post(port, {'inputs': {c: req[c].tolist() for c in cols}}) == (200, body)
        assert _post(port, {'dataframe_split': {'columns': cols, 'data': req[cols].values.tolist()}}) == (200, body)
        import io
        from mlflow.pyfunc.scoring_server import predictions_to_json                # the model's plain-Python rows = what MLflow makes of the DataFrame
        want = io.StringIO(); predictions_to_json(FleetBundle.load(root / 'bundle.pkl', sha256_file(root / 'bundle.pkl')).predict(req.assign(ts=pd.to_datetime(req.ts))), want)
        assert body == json.loads(want.getvalue())
        for bad in ({'dataframe_records': req.assign(monitor_id='nope').to_dict('records')}, {'inputs': {c: req.assign(monitor_id='nope')[c].tolist() for c in cols}}):
            with pytest.raises(urllib.error.HTTPError) as ei:                       # a monitor the bundle does not know: a clear error
                _post(port, bad)
            assert ei.value.code in (400, 500) and "unknown monitor(s) ['nope']" in ei.value.read().decode()
        for bad, why in (({'value': ['abc'] * 12}, 'could not convert string to float'), ({'ts': ['yesterday'] * 12}, 'yesterday')):   # inputs are still type-checked
            with pytest.raises(urllib.error.HTTPError) as ei:
                _post(port, {'inputs': {c: req[c].tolist() for c in cols} | bad})
            assert ei.value.code == 400 and why in ei.value.read().decode()


def test_served_uri_is_a_verified_registered_version(champion, tmp_path):
    "By alias or by number, the version is downloaded and its digest checked; a URI no digest vouches for is refused."
    import mlflow
    from mlops_kit.serve import verified_model
    from mlops_kit.tracking import DOWNLOAD_FILES
    from mlops_kit.guard import tree_digest
    root, uri, _ = champion
    mv = mlflow.tracking.MlflowClient(uri).get_model_version('mlops_kit_fleet', '1')
    for i, ref in enumerate(('models:/mlops_kit_fleet@champion', 'models:/mlops_kit_fleet/1')):
        folder = verified_model(ref, uri, tmp_path / str(i))
        assert Path(folder).is_relative_to(tmp_path / str(i)) and tree_digest(folder, DOWNLOAD_FILES) == mv.tags['model_sha256']
    with pytest.raises(FileNotFoundError, match='no model version models:/mlops_kit_fleet/9'):
        verified_model('models:/mlops_kit_fleet/9', uri, tmp_path / 'nine')
    for bad in (f'runs:/{mv.run_id}/fleet', mv.source, str(tmp_path / '0')):      # the same files, but nothing checks them
        with pytest.raises(ValueError, match='not served, nothing vouches for its files'):
            verified_model(bad, uri, tmp_path / 'bad')
    assert not (tmp_path / 'bad').exists()


def test_batch_score_command(champion, tmp_path, capsys):
    root, uri, hold = champion
    src = tmp_path / 'rows.csv'; hold.groupby('monitor_id').head(25).assign(ts=lambda d: d.ts.astype(str) + '+00:00').to_csv(src, index=False)
    assert main(['--root', str(root), 'score', str(src), str(tmp_path / 'scored.parquet')]) == 0
    out = pd.read_parquet(tmp_path / 'scored.parquet')
    assert list(out.columns) == COLS and len(out) == 50
    assert 'rows of 2 monitors scored by mlops_kit_fleet@champion' in capsys.readouterr().out
    (tmp_path / 'bad.csv').write_text('monitor_id,value\nx,1\n')
    assert main(['--root', str(root), 'score', str(tmp_path / 'bad.csv'), str(tmp_path / 'o.csv')]) == 2
    assert "missing column(s) ['ts']" in capsys.readouterr().err
    assert main(['--root', str(root), 'score', str(src), str(tmp_path / 'o.csv'), '--alias', 'nobody']) == 2
    assert 'no model version models:/mlops_kit_fleet@nobody' in capsys.readouterr().err


def test_bench_serve_measures_the_served_champion(champion):
    "`mlops-kit bench serve` at a low rate: every documented number is there and plausible, the SLO verdict follows from them, MLflow has the table."
    import mlflow
    from mlops_kit.cli import bench
    root, uri, _ = champion
    t = bench('serve', root=root, rates='10,20', duration=2)
    assert list(t.rate_rps) == [10.0, 20.0] and (t.requests == [20, 40]).all()
    assert (t.error_rate == 0).all() and (t.p50_ms <= t.p95_ms).all() and (t.p95_ms <= t.p99_ms).all() and (t.p50_ms > 0).all()
    assert ((t.throughput_rps > 0.7 * t.rate_rps) & (t.throughput_rps < 1.3 * t.rate_rps)).all()
    assert (t.cpu_s_per_1k_predictions > 0).all() and (t.client_cpu_ms_per_request > 0).all()
    assert (t.slo_met == (t.p99_ms <= 20.0)).all()
    assert (root / 'reports/serve/slo.csv').exists() and 'Target: p99' in (root / 'reports/serve/slo.md').read_text()
    c = mlflow.tracking.MlflowClient(uri); mv = c.get_model_version_by_alias('mlops_kit_fleet', 'champion')
    m = c.get_run(mv.run_id).data.metrics
    assert m['serve.throughput_rps_at_max_rate'] == pytest.approx(t.throughput_rps.iloc[-1])
    card = mlflow.artifacts.load_text(f'runs:/{mv.run_id}/register/v1/model_card.md')                 # the card of record gained its SLO section ...
    assert card.startswith('# Model card: mlops_kit_fleet v1') and card.count('## Serving SLO') == 1 and 'Gate verdict: PASSED' in card
    assert (root / 'reports/serve/model_card.md').read_text() == card and not (root / 'reports/register').exists()   # ... and the DVC output is untouched


def _reference_predict(bundle, rows):
    "The pandas path FleetBundle.predict used to take: split_monitors -> to_grid -> score_frame -> decide, then each row's slot."
    from mlops_kit.automl import COLUMNS
    from mlops_kit.fleet import split_monitors
    from mlops_kit.models import to_grid
    from mlops_kit.feedback import alert_id
    out = []
    for mid, y in split_monitors(rows, 'request').items():
        t = bundle.tuned[mid]; step = t.detector.forecaster_.step_
        f = t.detector.score_frame(to_grid(y, step)); f['alert'], _ = t.policy.decide(f.unusual, f.score)
        began = f.index.to_series().where(f.alert & ~f.alert.shift(fill_value=False)).ffill()     # each alert run's first slot: its id
        f['alert_id'] = [alert_id(mid, s) if a else '' for a, s in zip(f.alert, began)]
        sel = rows.monitor_id.astype(str) == mid
        cols = COLUMNS + ['alert_id']
        out.append(pd.DataFrame(f.loc[pd.DatetimeIndex(pd.to_datetime(rows.ts[sel], utc=True)).floor(step), cols].to_numpy(), index=rows.index[sel], columns=cols))
    res = pd.concat([rows, pd.concat(out).loc[rows.index].astype({c: float for c in COLUMNS[:4]} | {'unusual': bool, 'alert': bool})], axis=1)
    return res.assign(stage=rows.monitor_id.astype(str).map(lambda m: bundle.tuned[m].path).astype(object))


def test_array_predict_matches_the_pandas_path_for_every_family():
    "FleetBundle.predict (the serving hot path, numpy only) gives exactly what score_frame + decide give, for each forecaster family and the count scale."
    from mlops_kit.automl import Tuned
    from mlops_kit.detect import AlertPolicy, Detector
    from mlops_kit.models import HoltWinters, LagRegression, SeasonalProfile
    rng = np.random.default_rng(11); ix = pd.date_range('2026-09-01', periods=16 * 288, freq='5min', tz='UTC')
    wave = 100 + 20 * np.sin(2 * np.pi * ix.hour.to_numpy() / 24)
    ys = {'profile': wave + rng.normal(0, 3, len(ix)), 'hw': wave + rng.normal(0, 3, len(ix)), 'lag': wave + rng.normal(0, 3, len(ix)),
          'counts': rng.poisson(2, len(ix)).astype(float)}
    dets = {'profile': Detector(SeasonalProfile()), 'hw': Detector(HoltWinters()), 'lag': Detector(LagRegression()),
            'counts': Detector(SeasonalProfile(season='day'), scale='poisson', direction='up')}
    cut = 15 * 288
    bundle = FleetBundle({k: Tuned(dets[k].fit(pd.Series(ys[k][:cut], index=ix[:cut])), AlertPolicy(window='15min'), pd.DataFrame(), 'search') for k in ys})
    rows = pd.concat([pd.DataFrame({'monitor_id': k, 'ts': ix[cut:].tz_localize(None), 'value': ys[k][cut:]}) for k in ys], ignore_index=True)
    rows.loc[rows.sample(frac=0.01, random_state=1).index, 'value'] += 80                     # spikes: unusual points and alerts to compare
    rows.loc[rows.sample(frac=0.03, random_state=2).index, 'value'] = np.nan                  # missing values
    odd = rows.drop(rows.sample(frac=0.2, random_state=3).index).sample(frac=1, random_state=4)   # gaps, shuffled
    odd = odd.assign(ts=odd.ts + pd.to_timedelta(rng.integers(0, 5, len(odd)), 'min'))          # off the grid
    for req in (rows, odd, rows[rows.monitor_id == 'lag'].head(12), rows[rows.monitor_id == 'counts'].tail(1)):
        got, want = bundle.predict(req), _reference_predict(bundle, req)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    full = bundle.predict(rows)
    assert full.unusual.any() and full.alert.any()                                           # the comparison covered flagged points and alerts
