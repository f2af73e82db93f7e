"Params validation: every bad key or value is an error naming the key, the value and what is allowed."
from pathlib import Path

import pytest
import yaml

from mlops_kit.config import ParamsError, load_params

from conftest import ROOT


def _params_with(tmp_path, edit):
    "The project's own params.yaml, edited by `edit(dict)`, written to tmp_path."
    raw = yaml.safe_load((ROOT / 'params.yaml').read_text())
    edit(raw)
    p = tmp_path / 'params.yaml'
    p.write_text(yaml.safe_dump(raw))
    return p


def test_project_params_load():
    p = load_params(ROOT / 'params.yaml')
    assert p.windows.days == 60 and p.windows.min_days <= p.windows.days
    assert {m.name for m in p.ingest.monitors} >= {'latency_p95', 'errors'}
    assert p.ingest.pii_columns == ['user_id', 'client_ip', 'email']
    assert (p.tracking.uri, p.tracking.experiment) == (None, 'mlops_kit')   # the MLflow settings: a section of their own


BAD = [  # (what is wrong, edit, the substrings the message must contain)
    ('unknown field in a monitor', lambda r: r['ingest']['monitors'][0].update(colour='red'),
     ["ingest.monitors[0] (latency_p95).colour = 'red'", 'unknown key', 'allowed here: name, source']),
    ('zero interval', lambda r: r['ingest']['monitors'][1].update(interval='0min'),
     ["ingest.monitors[1] (errors).interval = '0min'", 'must be positive']),
    ('negative interval', lambda r: r['ingest']['monitors'][1].update(interval='-5min'),
     ["ingest.monitors[1] (errors).interval = '-5min'", 'must be positive']),
    ('interval not dividing a day', lambda r: r['ingest']['monitors'][0].update(interval='7min'),
     ["interval = '7min'", 'divide one day']),
    ('unknown aggregation', lambda r: r['ingest']['monitors'][0].update(agg='p42'),
     ["agg = 'p42'", "'p95'", "'count'"]),
    ('unknown section', lambda r: r.update(trian={'x': 1}),
     ['trian', 'unknown key', 'allowed here: sample, ingest, validate, windows']),
    ('typo in a section key', lambda r: r['windows'].update(dayz=60),
     ['windows.dayz = 60', 'unknown key', 'as_of, days, min_days']),
    ('wrong type', lambda r: r['windows'].update(days='sixty'),
     ["windows.days = 'sixty'", 'valid integer']),
    ('min_days above days', lambda r: r['windows'].update(days=10),
     ['windows', 'min_days (14) must be <= days (10)']),
    ('bad date', lambda r: r['windows'].update(as_of='2026-13-01'),
     ["windows.as_of = '2026-13-01'", 'date']),
    ('monitor on undeclared source', lambda r: r['ingest']['monitors'][0].update(source='nope'),
     ["monitor 'latency_p95' reads source 'nope'", "declared: ['requests']"]),
    ('monitor grouping by PII', lambda r: r['ingest']['monitors'][0].update(group_by='email'),
     ["monitor 'latency_p95' uses PII column(s) ['email']"]),
    ('filter on PII', lambda r: r['ingest']['monitors'][1].update(filter="client_ip == '10.0.0.1'"),
     ["monitor 'errors' uses PII column(s) ['client_ip']"]),
    ('unknown time zone', lambda r: r['ingest']['sources'][0].update(timezone='Mars/Olympus'),
     ["ingest.sources[0] (requests).timezone = 'Mars/Olympus'", 'unknown IANA time zone']),
    ('unknown reading of zeros', lambda r: r['train'].update(zeros='nan'),
     ["train.zeros = 'nan'", "'auto' or 'value'"]),
    ('share out of range', lambda r: r['validate'].update(max_gap_share=1.5),
     ['validate.max_gap_share = 1.5', 'less than or equal to 1']),
    ('tracking URI under its old key', lambda r: r['train'].update(tracking_uri='http://mlflow.internal:5000'),
     ["train.tracking_uri = 'http://mlflow.internal:5000': moved to tracking.uri in params.yaml"]),
    ('experiment under its old key', lambda r: r['train'].update(experiment='team'),
     ["train.experiment = 'team': moved to tracking.experiment in params.yaml"]),
    ('empty experiment', lambda r: r['tracking'].update(experiment=''),
     ["tracking.experiment = ''", 'at least 1 character']),
    ('unknown key in tracking', lambda r: r['tracking'].update(url='http://x'),
     ["tracking.url = 'http://x'", 'unknown key', 'allowed here: uri, experiment']),
    ('bad Dask scheduler address', lambda r: r['engine'].update(scheduler='http://10.0.0.5'),
     ["engine.scheduler = 'http://10.0.0.5'", 'not a Dask scheduler address', 'tcp://10.0.0.5:8786']),
]


@pytest.mark.parametrize('what,edit,needles', BAD, ids=[b[0] for b in BAD])
def test_bad_params_are_named(tmp_path, what, edit, needles):
    path = _params_with(tmp_path, edit)
    with pytest.raises(ParamsError) as e:
        load_params(path)
    msg = str(e.value)
    assert str(path) in msg
    for n in needles:
        assert n in msg, f'{what}: {n!r} not in\n{msg}'


def test_all_problems_reported_at_once(tmp_path):
    def edit(r):
        r['windows'].update(dayz=1)
        r['validate'].update(max_sparsity=-1)
    msg = str(pytest.raises(ParamsError, load_params, _params_with(tmp_path, edit)).value)
    assert '2 invalid setting(s)' in msg and 'windows.dayz' in msg and 'validate.max_sparsity' in msg


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ParamsError, match='not found'):
        load_params(tmp_path / 'nope.yaml')
    (tmp_path / 'p.yaml').write_text('ingest: [unclosed')
    with pytest.raises(ParamsError, match='not valid YAML'):
        load_params(tmp_path / 'p.yaml')
