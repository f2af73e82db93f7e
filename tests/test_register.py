"""Governance against a real MLflow sqlite store: the gate criterion by criterion, registration and alias moves,
promotion refused for a worse challenger, human override, rollback, audit tamper detection, PII and residency blocks."""
import json

import pandas as pd
import pytest

from mlops_kit.cli import main
from mlops_kit.config import GateParams
from mlops_kit.register import RegisterError, alias_version, gate, register_run, verify_audit
from mlops_kit.tracking import client as _client

from conftest import GOOD, registry_project


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
    monkeypatch.delenv('DVC_ROOT', raising=False)
    p, uri, new_run = registry_project(tmp_path)
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
