"""Adversarial inputs, part 3: the audit trail and the artifacts (issue 15), on one scratch project with a real sqlite registry: two runs,
two registered versions (v2 champion). Whoever can write the audit log cannot rewrite history unnoticed (the chain head is anchored in the
registry), a champion moved behind the kit's back is reported, and no artifact is deserialised, nor any of its code run, before its
digest matches what the pipeline recorded. `audit verify` exits 1 on tampering, as its --help says."""
import contextlib, json, pickle, subprocess, sys
from pathlib import Path

import pytest

from mlops_kit.cli import main
from mlops_kit.fleet import BundleIntegrityError
from mlops_kit.register import ANCHOR_TAG, RegisterError, _digest, register_run
from mlops_kit.tracking import client as _client
from mlops_kit.tracking import ModelIntegrityError, fetch_model, load_bundle

from conftest import registry_project
NAME = 'mlops_kit_fleet'


class Boom:
    "A pickle that runs code when it is loaded: it writes the file named in its argument."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture(scope='module')
def proj(tmp_path_factory):
    "The scratch project after two pipeline runs and two registrations: (root, params, uri, client, {version: run_id})."
    root = tmp_path_factory.mktemp('gov')
    p, uri, new_run = registry_project(root)
    runs = {}
    for v in (1, 2):
        runs[v] = new_run(meta={'v': v})
        assert register_run(root, p)['champion'] == v
    return root, p, uri, _client(uri), runs


@pytest.fixture
def fresh(proj):
    "Put the log, the aliases, the anchor and the files under models/ back as they were after each test."
    root, p, uri, c, runs = proj
    log = root / p.register.audit_log; text = log.read_text()
    rm = c.get_registered_model(NAME); aliases, anchor = dict(rm.aliases), rm.tags[ANCHOR_TAG]
    saved = {f: f.read_bytes() for f in (root / 'models').iterdir()}
    yield proj
    log.write_text(text)
    for a in set(c.get_registered_model(NAME).aliases) - set(aliases): c.delete_registered_model_alias(NAME, a)
    for a, v in aliases.items(): c.set_registered_model_alias(NAME, a, str(v))
    c.set_registered_model_tag(NAME, ANCHOR_TAG, anchor)
    for f, b in saved.items(): f.write_bytes(b)


def verify(root, capsys) -> tuple[int, str]:
    rc = main(['--root', str(root), 'audit', 'verify'])
    out = capsys.readouterr(); return rc, out.out + out.err


def entries(log: Path) -> list[dict]:
    return [json.loads(l) for l in log.read_text().splitlines()]


def write(log: Path, es: list[dict]):
    log.write_text(''.join(json.dumps(e, sort_keys=True) + '\n' for e in es))


def rehash(es: list[dict]) -> list[dict]:
    "What someone who knows the format does after editing: recompute every prev_hash and hash."
    prev = '0' * 64
    for i, e in enumerate(es, 1):
        e.update(seq=i, prev_hash=prev); e['hash'] = _digest(e); prev = e['hash']
    return es


def forged_append(log, c):
    es = entries(log); e = {**es[-1], 'seq': len(es) + 1, 'who': 'mallory', 'action': 'promote (override)', 'version': '1',
                            'alias_from': 'champion@v2', 'alias_to': 'champion@v1', 'reason': 'trust me', 'prev_hash': es[-1]['hash']}
    e['hash'] = _digest(e); write(log, es + [e])

def rehash_all(log, c):
    es = entries(log); es[1]['reason'] = 'rewritten history'; write(log, rehash(es))

def drop_an_entry_and_rehash(log, c):
    es = entries(log); write(log, rehash(es[:1] + es[2:]))

def truncate_tail(log, c): write(log, entries(log)[:-1])
def truncate_all(log, c): log.write_text('')
def delete_log(log, c): log.unlink()
def edit_without_rehash(log, c): es = entries(log); es[0]['who'] = 'mallory'; write(log, es)
def reorder(log, c): es = entries(log); write(log, [es[1], es[0]] + es[2:])
def garbage_line(log, c): log.write_text(log.read_text() + 'not json\n')
def champion_moved_by_hand(log, c): c.set_registered_model_alias(NAME, 'champion', '1')
def challenger_deleted_by_hand(log, c): c.delete_registered_model_alias(NAME, 'challenger')
def alias_added_by_hand(log, c): c.set_registered_model_alias(NAME, 'prod', '1')
def anchor_removed(log, c): c.delete_registered_model_tag(NAME, ANCHOR_TAG)
def anchor_ahead(log, c): c.set_registered_model_tag(NAME, ANCHOR_TAG, f"{len(entries(log)) + 3}:{'0' * 64}")


TAMPER = [
    (forged_append, 'are not anchored in the registry'),
    (rehash_all, 'is not the entry anchored'),
    (drop_an_entry_and_rehash, 'tail was cut off'),
    (truncate_tail, 'tail was cut off'),
    (truncate_all, 'tail was cut off'),
    (delete_log, 'tail was cut off'),
    (edit_without_rehash, ':1: content does not match its hash'),
    (reorder, ':1: sequence number 2'),
    (garbage_line, 'not valid JSON'),
    (champion_moved_by_hand, f'{NAME}@champion is v1 in the registry but the log'),
    (challenger_deleted_by_hand, f'{NAME}@challenger is gone from the registry'),
    (alias_added_by_hand, f'{NAME}@prod points at v1 but no log entry moved it'),
    (anchor_removed, 'holds no audit anchor'),
    (anchor_ahead, 'tail was cut off'),
]


@pytest.mark.parametrize('tamper,needle', TAMPER, ids=[t[0].__name__ for t in TAMPER])
def test_audit_verify_detects_tampering_and_exits_1(fresh, capsys, tamper, needle):
    root, p, uri, c, _ = fresh
    assert verify(root, capsys)[0] == 0
    tamper(root / p.register.audit_log, c)
    rc, out = verify(root, capsys)
    assert rc == 1 and needle in out, out


def test_intact_log_and_registry_verify_with_exit_0(fresh, capsys):
    root, p, *_ = fresh
    rc, out = verify(root, capsys)
    assert rc == 0 and 'registry reconciled (anchor #4' in out and out.strip().endswith('4 entries, chain intact'), out


def test_a_version_registered_behind_the_kits_back_is_reported(fresh, capsys):
    import mlflow
    root, p, uri, c, runs = fresh
    mlflow.set_tracking_uri(uri); mv = mlflow.register_model(json.loads((root / 'models/run.json').read_text())['model_uri'], NAME)
    try:
        rc, out = verify(root, capsys)
        assert rc == 1 and f"version(s) {mv.version} of '{NAME}' were registered outside" in out, out
    finally: c.delete_model_version(NAME, mv.version)


def test_audit_verify_help_and_exit_codes_agree(proj, tmp_path, capsys):
    "--help promises 0 / 1 / 2; a params file that cannot be read (nothing checked) is 2, not 1."
    help_text = subprocess.run([str(Path(sys.executable).parent / 'mlops-kit'), 'audit', '--help'], capture_output=True, text=True).stdout
    assert 'exit 0 intact, 1 tampered or unexplained, 2 cannot check' in ' '.join(help_text.split())
    (tmp_path / 'params.yaml').write_text('ingest: [')
    assert main(['--root', str(tmp_path), 'audit', 'verify']) == 2


# ---- artifacts: verified before anything is deserialised -------------------------------------------------------------------
def swap_local_bundle(root, c, runs, marker): (root / 'models/bundle.pkl').write_bytes(pickle.dumps(Boom(marker)))
def truncate_local_bundle(root, c, runs, marker): b = (root / 'models/bundle.pkl').read_bytes(); (root / 'models/bundle.pkl').write_bytes(b[:len(b) // 2])
def run_json_names_the_other_run(root, c, runs, marker):
    r = json.loads((root / 'models/run.json').read_text()); (root / 'models/run.json').write_text(json.dumps(r | {'run_id': runs[1]}))
    (root / 'models/bundle.pkl').write_bytes(pickle.dumps(Boom(marker)))


LOCAL = [(swap_local_bundle, 'is not the recorded'), (truncate_local_bundle, 'is not the recorded'), (run_json_names_the_other_run, 'is not the recorded')]


@pytest.mark.parametrize('tamper,needle', LOCAL, ids=[t[0].__name__ for t in LOCAL])
def test_a_tampered_models_folder_is_refused_before_unpickling(fresh, tmp_path, tamper, needle):
    "What the DVC remote delivered into models/ is checked against the digest the train run recorded in MLflow; the pickle never runs."
    root, p, uri, c, runs = fresh
    tamper(root, c, runs, tmp_path / 'PWNED')
    with pytest.raises(BundleIntegrityError, match=needle): load_bundle(root / 'models')
    with pytest.raises((BundleIntegrityError, RegisterError)): register_run(root, p)   # the register stage refuses it too (compliance may see it first)
    assert not (tmp_path / 'PWNED').exists()


def test_a_run_without_a_recorded_digest_is_not_loaded(fresh):
    root, p, uri, c, runs = fresh
    rid = json.loads((root / 'models/run.json').read_text())['run_id']; c.delete_tag(rid, 'bundle_sha256')
    try:
        with pytest.raises(ModelIntegrityError, match='records no bundle_sha256'): load_bundle(root / 'models')
    finally: c.set_tag(rid, 'bundle_sha256', c.get_model_version(NAME, '2').tags['bundle_sha256'])


@contextlib.contextmanager
def stored(uri, version, rel):
    "The file `rel` of a registered version as the artifact store holds it; restored afterwards."
    c = _client(uri); src = c.get_model_version(NAME, str(version)).source
    mid = src.removeprefix('models:/'); folder = next(Path(uri.removeprefix('sqlite:///')).parent.glob(f'mlartifacts/**/{mid}/artifacts'))
    f = folder / rel; before = f.read_bytes() if f.exists() else None
    try: yield f
    finally:
        if before is None: f.unlink(missing_ok=True)
        else: f.write_bytes(before)


STORE = [
    ('the pickle swapped', 'artifacts/bundle.pkl', lambda f, m: f.write_bytes(pickle.dumps(Boom(m)))),
    ('the model code replaced', 'fleet_model.py', lambda f, m: f.write_text(f"open({str(m)!r}, 'w').write('pwned')\n")),
    ('the kit shipped inside the model changed', 'code/mlops_kit/__init__.py', lambda f, m: f.write_text(f.read_text() + f"\nopen({str(m)!r}, 'w')\n")),
    ('MLmodel edited', 'MLmodel', lambda f, m: f.write_text(f.read_text().replace('python_function', 'python_function ', 1))),
    ('a file added', 'artifacts/extra.pkl', lambda f, m: f.write_bytes(pickle.dumps(Boom(m)))),
]


@pytest.mark.parametrize('what,rel,change', STORE, ids=[s[0] for s in STORE])
def test_a_registered_model_changed_in_the_artifact_store_is_refused_before_its_code_runs(fresh, tmp_path, what, rel, change):
    root, p, uri, c, _ = fresh
    with stored(uri, 2, rel) as f:
        change(f, tmp_path / 'PWNED')
        with pytest.raises(ModelIntegrityError, match='the model changed in the artifact store after it was registered'):
            fetch_model(uri, NAME, 'champion', tmp_path / 'dl')
        if what == 'the pickle swapped':                                                  # the CLI says so too (once: a subprocess costs seconds)
            rows = tmp_path / 'rows.csv'; rows.write_text('monitor_id,ts,value\nsvc0.latency_p95,2026-09-16T00:00:00,100\n')
            s = subprocess.run([str(Path(sys.executable).parent / 'mlops-kit'), '--root', str(root), 'score', str(rows), str(tmp_path / 'out.csv')], capture_output=True, text=True)
            assert s.returncode == 2 and 'not loaded' in s.stderr and 'Traceback' not in s.stderr, s.stderr
    assert not (tmp_path / 'PWNED').exists()


def test_mlflows_own_load_path_checks_the_pickle_too(fresh, tmp_path):
    "Loaded by MLflow directly (what `mlflow models serve` does), the pyfunc refuses a pickle that is not the one logged."
    import mlflow
    root, p, uri, c, _ = fresh
    with stored(uri, 2, 'artifacts/bundle.pkl') as f:
        f.write_bytes(pickle.dumps(Boom(tmp_path / 'PWNED')))
        mlflow.set_tracking_uri(uri)
        with pytest.raises(Exception, match='is not the recorded'): mlflow.pyfunc.load_model(f'models:/{NAME}@champion')
    assert not (tmp_path / 'PWNED').exists()


def test_a_version_without_a_recorded_digest_is_not_loaded(fresh, tmp_path):
    root, p, uri, c, _ = fresh
    want = c.get_model_version(NAME, '2').tags['model_sha256']; c.delete_model_version_tag(NAME, '2', 'model_sha256')
    try:
        with pytest.raises(ModelIntegrityError, match='has no recorded digest'): fetch_model(uri, NAME, 'champion', tmp_path / 'dl')
    finally: c.set_model_version_tag(NAME, '2', 'model_sha256', want)


def test_register_refuses_a_logged_model_changed_after_training(fresh, tmp_path):
    "Between train and register the artifact store changed the logged model: registration is blocked and audited, nothing is registered."
    root, p, uri, c, _ = fresh
    n = len(c.search_model_versions(f"name='{NAME}'"))
    with stored(uri, 2, 'fleet_model.py') as f:
        f.write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w')\n")
        with pytest.raises(RegisterError, match='its files changed since the train stage logged them'): register_run(root, p)
    assert len(c.search_model_versions(f"name='{NAME}'")) == n and not (tmp_path / 'PWNED').exists()
    assert entries(root / p.register.audit_log)[-1]['action'] == 'register-blocked'
