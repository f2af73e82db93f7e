"""Adversarial inputs, part 2: what the served model is sent (the real `mlflow models serve`, one server for the module) and odd series
(issue 15). A request the model cannot score is an HTTP 400 whose JSON body names the problem and carries no traceback and no server
path; what it can score comes back as strict JSON (no bare NaN); the work one request may ask for is bounded by rows and by time span."""
import json, math, re, time, urllib.error, urllib.request, warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_kit.fleet import FleetBundle, RequestError, tune_fleet

MID = 'svc0.latency_p95'
LIMITS = {'MLOPS_KIT_SERVE_MAX_ROWS': '500', 'MLOPS_KIT_SERVE_MAX_SPAN_DAYS': '31'}


def _fleet(seed=5, days=16):
    rng, ix = np.random.default_rng(seed), pd.date_range('2026-09-01', periods=days * 288, freq='5min', tz='UTC')
    return pd.DataFrame({'monitor_id': MID, 'ts': ix, 'value': 100 + 20 * np.sin(2 * np.pi * ix.hour.to_numpy() / 24) + rng.normal(0, 3, len(ix))})


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    "A one-monitor champion registered with its digests in a scratch store, served by the real scoring server with small request bounds; (port, bundle, rows)."
    import mlflow
    from mlops_kit.serve import scoring_server
    from mlops_kit.tracking import experiment, log_bundle
    root = tmp_path_factory.mktemp('served'); long = _fleet(); cut = long.ts.min() + pd.Timedelta('15D')
    bundle = FleetBundle(tune_fleet(long[long.ts < cut], workers=1, progress=False)[0]); bundle.save(root / 'bundle.pkl')
    uri = f'sqlite:///{root}/mlflow.db'; eid = experiment('adv', uri)
    hold = long[long.ts >= cut].assign(ts=lambda d: d.ts.dt.tz_localize(None)).reset_index(drop=True)
    with mlflow.start_run(experiment_id=eid): info = log_bundle(root / 'bundle.pkl', hold.head(6))
    c = mlflow.tracking.MlflowClient(uri); mv = mlflow.register_model(info.model_uri, 'mlops_kit_fleet')
    c.set_model_version_tag('mlops_kit_fleet', mv.version, 'model_sha256', c.get_run(info.run_id).data.tags['model_sha256'])
    c.set_registered_model_alias('mlops_kit_fleet', 'champion', mv.version)
    with scoring_server('models:/mlops_kit_fleet@champion', uri, log_path=root / 'server.log', limits=LIMITS) as (port, _):
        yield port, bundle, hold.head(12).assign(ts=lambda d: d.ts.dt.strftime('%Y-%m-%dT%H:%M:%S'))


def post(port, body: bytes, ctype='application/json', timeout=30):
    "(status, body text, seconds) of one POST /invocations."
    req = urllib.request.Request(f'http://127.0.0.1:{port}/invocations', data=body, headers={'Content-Type': ctype})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r: return r.status, r.read().decode(), time.perf_counter() - t0
    except urllib.error.HTTPError as e: return e.code, e.read().decode(), time.perf_counter() - t0


def inputs(rows: pd.DataFrame) -> bytes:
    "The `inputs` request format; NaN and Infinity written as Python's json writes them (what a careless client sends)."
    return json.dumps({'inputs': {c: rows[c].tolist() for c in ('monitor_id', 'ts', 'value')}}).encode()


def strict(text: str):
    "Parse as strict JSON: a bare NaN or Infinity is an error."
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f'bare {c} in JSON')))


def clean_4xx(status, text, needle):
    assert 400 <= status < 500, (status, text[:300])
    body = strict(text)
    assert needle in body['message'], body['message'][:500]
    assert 'Traceback' not in text and 'stack_trace' not in body and not re.search(r'\.py\b|File "/|/site-packages', text), text[:500]


BAD = [
    ('Infinity as a value', lambda r: r.assign(value=[np.inf] + r.value.tolist()[1:]), 'value is not finite (Infinity) in 1 row(s), first at index 0'),
    ('-Infinity as a value', lambda r: r.assign(value=r.value.tolist()[:5] + [-np.inf] + r.value.tolist()[6:]), 'first at index 5'),
    ('a null ts', lambda r: r.assign(ts=[None] + r.ts.tolist()[1:]), 'ts is null in 1 row(s), first at index 0'),
    ('a null ts beside one valid row (the 2.4 GB case)', lambda r: r.head(2).assign(ts=[r.ts[0], None]), 'ts is null'),
    ('two rows 150 years apart (the 12 s case)', lambda r: r.head(2).assign(ts=['1876-01-01T00:00:00', r.ts[1]]), f"monitor '{MID}' spans"),
    ('more rows than serve.max_rows', lambda r: pd.concat([r] * 50, ignore_index=True).assign(ts=pd.date_range('2026-09-16', periods=600, freq='5min').strftime('%Y-%m-%dT%H:%M:%S')),
     '600 rows; at most 500 per request'),
    ('an unknown monitor', lambda r: r.assign(monitor_id='checkout.latency_p95'), "unknown monitor(s) ['checkout.latency_p95']"),
    ('a path as a monitor id', lambda r: r.assign(monitor_id='../../etc/passwd'), "unknown monitor(s) ['../../etc/passwd']"),
    ('duplicate timestamps', lambda r: r.assign(ts=[r.ts[0]] * len(r)), 'has duplicate timestamps'),
]


@pytest.mark.parametrize('what,change,needle', BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_clear_400(served, what, change, needle):
    port, _, rows = served
    status, text, _ = post(port, inputs(change(rows.copy())))                # refused before any grid is built (the cases hung or took 12 s)
    clean_4xx(status, text, needle)


def test_nan_values_are_answered_with_null_in_valid_json(served):
    "NaN in a request means no data: scored, and every non-finite number in the answer is null (strict JSON parses it)."
    port, _, rows = served
    status, text, _ = post(port, inputs(rows.assign(value=[np.nan] * 3 + rows.value.tolist()[3:])))
    assert status == 200, text[:300]
    out = strict(text)['predictions']
    assert [o['value'] for o in out[:3]] == [None] * 3 and all(o['value'] is not None for o in out[3:])
    assert all(o[c] is None or math.isfinite(o[c]) for o in out for c in ('expected', 'lower', 'upper', 'score'))


MALFORMED = [
    ('not JSON at all', b'{"inputs": ', 'application/json', ''),
    ('an unknown envelope', b'{"rows": []}', 'application/json', ''),
    ('a missing column', json.dumps({'inputs': {'monitor_id': [MID], 'ts': ['2026-09-16T00:00:00']}}).encode(), 'application/json', ''),
    ('text in the value column', None, 'application/json', 'could not convert string to float'),
]


@pytest.mark.parametrize('what,body,ctype,needle', MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_are_4xx_without_traceback_or_paths(served, what, body, ctype, needle):
    port, _, rows = served
    if body is None: body = json.dumps({'inputs': {'monitor_id': rows.monitor_id.tolist(), 'ts': rows.ts.tolist(), 'value': ['abc'] * len(rows)}}).encode()
    status, text, _ = post(port, body, ctype)
    clean_4xx(status, text, needle)


def test_a_good_request_still_scores(served):
    port, bundle, rows = served
    status, text, _ = post(port, inputs(rows))
    out = pd.DataFrame(strict(text)['predictions'])
    assert status == 200 and len(out) == 12
    np.testing.assert_allclose(out.expected, bundle.predict(rows.assign(ts=pd.to_datetime(rows.ts))).expected)


# ---- odd series: the bundle (what serving and batch scoring run) and the AutoML that builds it --------------------------------------
def test_bundle_refuses_what_the_server_refuses_and_names_it(served):
    _, bundle, rows = served
    r = rows.assign(ts=pd.to_datetime(rows.ts))
    with pytest.raises(RequestError, match='ts is null'): bundle.predict(r.assign(ts=[pd.NaT] + r.ts.tolist()[1:]))
    with pytest.raises(RequestError, match='not timestamps'): bundle.predict(rows.assign(ts=['yesterday'] * len(rows)))
    with pytest.raises(RequestError, match="missing column\\(s\\) \\['value'\\]"): bundle.predict(r.drop(columns='value'))



def test_mixed_timestamp_formats_are_read_as_everywhere_else(served, tmp_path):
    "One ts with an offset, the others as `2026-09-16 00:05`: read_rows accepts the mix, and so do the bundle and the server, alike."
    from mlops_kit.tracking import read_rows
    port, bundle, rows = served
    mixed = rows.assign(ts=[rows.ts[0] + '+00:00'] + [t.replace('T', ' ')[:16] for t in rows.ts[1:]])
    mixed.to_csv(tmp_path / 'rows.csv', index=False)
    want = bundle.predict(read_rows(tmp_path / 'rows.csv'))
    with warnings.catch_warnings():
        warnings.simplefilter('error')                                                # no "Could not infer format" warning
        got = bundle.predict(mixed)
        with pytest.raises(RequestError, match='ts holds values that are not timestamps'):
            bundle.predict(mixed.assign(ts=mixed.ts.tolist()[:-1] + ['2026-09-16 25:00']))
    np.testing.assert_allclose(got.expected, want.expected)
    status, text, _ = post(port, inputs(mixed))
    assert status == 200, text[:300]
    np.testing.assert_allclose(pd.DataFrame(strict(text)['predictions']).expected, want.expected)

SERIES = [
    ('constant', lambda y: y.assign(value=42.0)),
    ('huge values', lambda y: y.assign(value=y.value * 1e250)),
    ('mostly missing', lambda y: y.assign(value=y.value.where(np.arange(len(y)) % 97 == 0))),
    ('negative and zero', lambda y: y.assign(value=np.where(np.arange(len(y)) % 2, 0.0, -y.value))),
]


@pytest.mark.parametrize('what,make', SERIES, ids=[s[0] for s in SERIES])
def test_odd_series_are_tuned_or_refused_with_a_reason_and_never_answer_infinity(what, make):
    y = make(_fleet(seed=9, days=15))
    tuned, failed = tune_fleet(y, workers=1, progress=False, budget_s=1.0)
    assert set(tuned) | set(failed) == {MID}                                              # nothing dropped silently
    if failed: assert failed[MID], failed
    else:
        out = FleetBundle(tuned).predict(y.tail(24).reset_index(drop=True))
        assert not np.isinf(out[['expected', 'lower', 'upper', 'score']].to_numpy(float)).any(), out


def test_an_all_missing_monitor_is_refused_with_its_reason():
    tuned, failed = tune_fleet(_fleet(days=15).assign(value=np.nan), workers=1, progress=False)
    assert not tuned and 'observed value' in failed[MID]
