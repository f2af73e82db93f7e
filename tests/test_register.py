"""Governance against a real MLflow sqlite store: the gate criterion by criterion, registration and alias moves,
promotion refused for a worse challenger, human override, rollback, audit tamper detection, PII and residency blocks."""
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_kit.cli import main
from mlops_kit.config import GateParams, load_params
from mlops_kit.fleet import FleetBundle, tune_fleet
from mlops_kit.register import RegisterError, alias_version, gate, register_run, verify_audit
from mlops_kit.tracking import client as _client

from conftest import ROOT
GOOD = {'monitors': 2, 'alerts_per_day': 1.0, 'static_alerts_per_day': 9.0, 'noisy_after': 0, 'noisy_monitors': 1, 'recall': 1.0,
        'static_recall': 1.0, 'mase_median': 0.6, 'after_hours_share': 0.5, 'static_after_hours_share': 0.5}


@pytest.mark.parametrize('criterion, change', [
    ('fleet alerts/day', {'alerts_per_day': 4.5}),            # > 2/day x 2 monitors
    ('noisy monitors', {'noisy_after': 1}),                   # champion had 0
    ('recall', {'recall': 0.9}),                              # < 1.0 - 0.05
    ('median MASE', {'mase_median': 0.7}),                    # > 0.6 x 1.1
    ('data validation', {'schema_ok': False}),
    ('fallback share', {'fallback_share': 0.5}),
])
def test_gate_fails_on_exactly_the_broken_criterion(criterion, change):
    ch = GOOD | {'schema_ok': True, 'fallback_share': 0.0}
    assert gate(ch, ch, GateParams()).passed.all()
    v = gate(ch | change, ch, GateParams()).set_index('criterion')
    assert list(v.index[~v.passed]) == [criterion], v
    assert v.loc[criterion, 'threshold'] is not None


@pytest.fixture
def proj(tmp_path, monkeypatch):
    "A scratch project: a tiny tuned bundle, windows, metrics, and a function that logs a new pipeline run with given metrics."
    import mlflow
    from mlops_kit.tracking import experiment, log_bundle
    monkeypatch.delenv('DVC_ROOT', raising=False)
    rng, ix = np.random.default_rng(3), pd.date_range('2026-09-01', periods=16 * 288, freq='5min', tz='UTC')
    long = pd.concat([pd.DataFrame({'monitor_id': f'svc{i}.latency_p95', 'ts': ix, 'value': 100 + 20 * np.sin(2 * np.pi * ix.hour.to_numpy() / 24) + rng.normal(0, 3, len(ix))})
                      for i in range(2)], ignore_index=True)
    cut = ix[0] + pd.Timedelta('15D')
    (tmp_path / 'data/windows').mkdir(parents=True); long[long.ts >= cut].to_parquet(tmp_path / 'data/windows/holdout.parquet')
    (tmp_path / 'data/windows/manifest.json').write_text(json.dumps({'as_of': str((cut - pd.Timedelta('1D')).date()), 'monitors': {}}))
    tuned, _ = tune_fleet(long[long.ts < cut], workers=1, progress=False)
    uri = f'sqlite:///{tmp_path}/mlflow.db'; eid = experiment('t', uri)
    base = load_params(ROOT / 'params.yaml')
    p = base.model_copy(update={'tracking': base.tracking.model_copy(update={'uri': uri, 'experiment': 't'})})
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(p.model_dump(mode='json'), sort_keys=False))     # for the CLI commands

    def new_run(metrics=GOOD, extra_artifact: str | None = None, schema_ok=True, fallback=0):
        (tmp_path / 'models').mkdir(exist_ok=True); (tmp_path / 'metrics').mkdir(exist_ok=True)
        FleetBundle(tuned).save(tmp_path / 'models/bundle.pkl')
        ex = long[long.ts >= cut].head(6).assign(ts=lambda d: d.ts.dt.tz_localize(None)).reset_index(drop=True)
        with mlflow.start_run(experiment_id=eid) as r:
            mlflow.set_tag('window_as_of', str((cut - pd.Timedelta('1D')).date()))     # every run judged on the same window (as train's lineage tags say)
            info = log_bundle(tmp_path / 'models/bundle.pkl', ex)
            if extra_artifact: mlflow.log_text(extra_artifact, 'evaluate/notes.txt')
        (tmp_path / 'models/run.json').write_text(json.dumps({'run_id': r.info.run_id, 'tracking_uri': uri, 'experiment': 't', 'model_uri': info.model_uri}))
        (tmp_path / 'metrics/evaluate.json').write_text(json.dumps(metrics))
        (tmp_path / 'metrics/validate.json').write_text(json.dumps({'schema_ok': schema_ok}))
        (tmp_path / 'metrics/train.json').write_text(json.dumps({'tuned': 2, 'path_search': 2 - fallback, 'path_fallback': fallback}))
        return r.info.run_id
    return tmp_path, p, uri, new_run


def test_register_promote_refuse_override_rollback_and_audit(proj):
    root, p, uri, new_run = proj
    name, c, log = p.register.model_name, _client(uri), root / p.register.audit_log
    new_run(); r1 = register_run(root, p)
    assert (r1['version'], r1['promoted'], alias_version(c, name, 'champion')) == (1, True, 1)
    assert c.get_model_version(name, '1').tags['gate.passed'] == 'true'

    new_run(GOOD | {'alerts_per_day': 30.0, 'noisy_after': 2}); r2 = register_run(root, p)       # a deliberately worse challenger
    assert (r2['version'], r2['promoted']) == (2, False)
    assert (alias_version(c, name, 'challenger'), alias_version(c, name, 'champion')) == (2, 1)
    tags = c.get_model_version(name, '2').tags
    assert tags['gate.passed'] == 'false' and tags['gate.fleet alerts/day'].startswith('FAIL: 30') and tags['gate.recall'].startswith('PASS')
    assert set(r2['gate_failed']) == {'fleet alerts/day', 'noisy monitors'}
    card = (root / 'reports/register/model_card.md').read_text()
    assert 'Gate verdict: FAILED' in card and '| fleet alerts/day | 30 | <= 4 | **FAIL**' in card and 'previous champion (v1)' in card
    shadow = pd.read_csv(root / 'reports/register/shadow.csv')
    assert set(shadow.monitor_id) == {'svc0.latency_p95', 'svc1.latency_p95'} and (shadow.challenger_alerts == shadow.champion_alerts).all()

    assert main(['--root', str(root), 'promote', '--version', '2', '--reason', 'on-call accepts the noise for one week']) == 0
    assert alias_version(c, name, 'champion') == 2
    assert main(['--root', str(root), 'promote', '--version', '9', '--reason', 'x']) == 2
    new_run(); r3 = register_run(root, p)
    assert r3['promoted'] and alias_version(c, name, 'champion') == 3
    assert main(['--root', str(root), 'rollback', '--reason', 'v3 misbehaves']) == 0
    assert alias_version(c, name, 'champion') == 2                # the previous approved version (an override approves too)
    entries = [json.loads(l) for l in log.read_text().splitlines()]
    assert [e['action'] for e in entries] == ['register', 'promote', 'register', 'promote (override)', 'register', 'promote', 'rollback']
    assert entries[3]['reason'] == 'on-call accepts the noise for one week' and entries[3]['alias_from'] == 'champion@v1'
    assert (entries[-1]['alias_from'], entries[-1]['alias_to']) == ('champion@v3', 'champion@v2')
    assert verify_audit(log)[0]


def test_audit_verify_detects_tampering(proj, capsys):
    root, p, uri, new_run = proj
    new_run(); register_run(root, p)
    log = root / p.register.audit_log
    assert main(['--root', str(root), 'audit', 'verify']) == 0
    lines = log.read_text().splitlines()
    log.write_text('\n'.join([lines[0].replace('"register"', '"delete"')] + lines[1:]) + '\n')
    assert main(['--root', str(root), 'audit', 'verify']) == 1                # exit 1 = tampered, as `audit verify --help` says
    assert ':1: content does not match its hash' in capsys.readouterr().err
    log.write_text('\n'.join(lines[1:]) + '\n')                    # a removed line
    assert main(['--root', str(root), 'audit', 'verify']) == 1


def test_pii_in_a_logged_artifact_blocks_registration(proj):
    root, p, uri, new_run = proj
    rid = new_run(extra_artifact='slow request from dana@example.org at 192.168.4.20')
    with pytest.raises(RegisterError, match=r"evaluate/notes.txt: e-mail-like value 'dana@example.org'"):
        register_run(root, p)
    assert not _client(uri).search_model_versions(f"name='{p.register.model_name}'")          # no version registered (the model holds the audit anchor)
    last = json.loads((root / p.register.audit_log).read_text().splitlines()[-1])
    assert last['action'] == 'register-blocked' and '192.168.4.20' in last['reason'] and rid


def test_region_restricted_data_registers_only_to_the_same_region(proj):
    root, p, uri, new_run = proj
    new_run()
    wrong = p.model_copy(update={'register': p.register.model_copy(update={'region': 'us-east'})})
    with pytest.raises(RegisterError, match="source 'requests' is restricted to region 'eu-west', the registry is in 'us-east'"):
        register_run(root, wrong)
    assert register_run(root, p)['version'] == 1


@pytest.mark.parametrize('criterion, change', [
    ('fleet alerts/day', {'metrics': GOOD | {'alerts_per_day': 4.5}}),
    ('noisy monitors', {'metrics': GOOD | {'noisy_after': 1}}),
    ('recall', {'metrics': GOOD | {'recall': 0.9}}),
    ('median MASE', {'metrics': GOOD | {'mase_median': 0.7}}),
    ('data validation', {'schema_ok': False}),
    ('fallback share', {'fallback': 1}),
])
def test_gate_in_the_registry_criterion_by_criterion(proj, criterion, change):
    "Against the sqlite registry: v1 passes and becomes champion; v2, broken on one criterion, stays challenger, and its tags say which."
    root, p, uri, new_run = proj
    c, name = _client(uri), p.register.model_name
    new_run(); assert register_run(root, p)['promoted']
    new_run(**change); r = register_run(root, p)
    assert (r['promoted'], r['gate_failed'], alias_version(c, name, 'champion'), alias_version(c, name, 'challenger')) == (False, [criterion], 1, 2)
    tags = c.get_model_version(name, '2').tags
    assert tags[f'gate.{criterion}'].startswith('FAIL') and tags['gate.passed'] == 'false'
    assert sum(v.startswith('FAIL') for k, v in tags.items() if k.startswith('gate.') and k != 'gate.passed') == 1
