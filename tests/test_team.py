"""Team mode against a real PostgreSQL (Debian's packages; `make test-deps-postgres`): a throwaway cluster on loopback, an MLflow
tracking server on it with a shared, proxied artifact folder, and two clones of one project. Alice runs the whole pipeline
(`dvc repro`: train -> evaluate -> register) against the server and pushes the data to a shared DVC directory remote; Bob clones,
`dvc pull`s the same windows, scores rows with `models:/<name>@champion` through the server in his own process and clone, and rolls
the champion back; both append to one shared, hash-chained audit log. The server requires authentication (MLflow's basic-auth app, users
in a second PostgreSQL database): the admin adds Alice and Bob as releasers and Carol as an engineer with `mlops-kit team user`; Carol's
promotion is refused, and the audit log records the users the server authenticated. The servers stop at the end, also on failure."""
import contextlib, glob, hashlib, json, os, shutil, subprocess, sys, tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_kit.serve import free_port
from mlops_kit.team import tracking_server

from conftest import ROOT
BIN = Path(sys.executable).parent
SMALL = {'sample': {'days': 75, 'n_services': 3}, 'train': {'workers': 1, 'budget_s': 1.0, 'plot_monitors': 2}, 'evaluate': {'workers': 1, 'plot_monitors': 2}}
ENV = {**os.environ, 'PATH': f"{BIN}:{os.environ['PATH']}", 'DVC_NO_ANALYTICS': '1', 'MLFLOW_DISABLE_TELEMETRY': 'true', 'DO_NOT_TRACK': 'true',
       'GIT_AUTHOR_NAME': 't', 'GIT_AUTHOR_EMAIL': 't@t', 'GIT_COMMITTER_NAME': 't', 'GIT_COMMITTER_EMAIL': 't@t'}
for k in ('MLFLOW_TRACKING_URI', 'DVC_ROOT', 'MLFLOW_BACKEND_STORE_URI', 'MLFLOW_ARTIFACTS_DESTINATION', 'MLFLOW_AUTH_DATABASE_URI', 'MLFLOW_AUTH_ADMIN_PASSWORD',
          'MLFLOW_TRACKING_USERNAME', 'MLFLOW_TRACKING_PASSWORD'): ENV.pop(k, None)
PASSWORD = 'team-secret'
USERS = {'alice': 'releaser', 'bob': 'releaser', 'carol': 'engineer'}


def creds(user):
    "The environment of a team member: MLflow's client credentials (the admin's too), and a self-declared name the audit log must not trust."
    return {'MLFLOW_TRACKING_USERNAME': user, 'MLFLOW_TRACKING_PASSWORD': f'{user}-pw-{PASSWORD}', 'MLOPS_KIT_USER': user} if user else {'MLOPS_KIT_USER': 'anonymous'}


def sh(cmd, cwd, user='alice', ok=True, **env):
    p = subprocess.run(cmd, cwd=cwd, env={**ENV, **creds(user), **env}, capture_output=True, text=True, shell=True)
    if ok: assert p.returncode == 0, f'{cmd} (as {user} in {cwd})\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}'
    return p


def pg_bin() -> Path:
    "Debian keeps pg_ctl in /usr/lib/postgresql/<version>/bin, off PATH."
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/pg_ctl'), key=lambda f: int(f.split('/')[4]) if f.split('/')[4].isdigit() else 0)
    if found: return Path(found[-1]).parent
    if shutil.which('pg_ctl'): return Path(shutil.which('pg_ctl')).parent
    pytest.fail('PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl, no pg_ctl on PATH): run `make test-deps-postgres`')


@pytest.fixture(scope='session')
def postgres():
    "A throwaway PostgreSQL cluster on 127.0.0.1:<free port> (run as the postgres user when we are root), a role and a database for MLflow."
    b, as_root = pg_bin(), os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix='mlops-kit-pg-'))          # under /tmp: pytest's tmp dirs are mode 700, closed to the postgres user
    if as_root: shutil.chown(base, 'postgres')
    pg = lambda tool, *a, **kw: subprocess.run((['runuser', '-u', 'postgres', '--'] if as_root else []) + [str(b / tool), *a], capture_output=True, text=True, **kw)
    port, data, log = free_port(), base / 'data', base / 'postgres.log'
    r = pg('initdb', '-D', str(data), '-U', 'postgres', '-E', 'UTF8', '--auth-local=trust', '--auth-host=scram-sha-256', '--no-instructions')
    assert r.returncode == 0, f'initdb failed:\n{r.stdout}\n{r.stderr}'
    r = pg('pg_ctl', '-D', str(data), '-l', str(log), '-w', '-t', '60', '-o', f"-c listen_addresses=127.0.0.1 -p {port} -k {base}", 'start')
    try:
        assert r.returncode == 0, f'pg_ctl start failed:\n{r.stdout}\n{r.stderr}\n{log.read_text() if log.exists() else ""}'
        psql = lambda sql, db='postgres': pg('psql', '-h', str(base), '-p', str(port), '-d', db, '-v', 'ON_ERROR_STOP=1', '-tA', '-c', sql)
        for sql in (f"CREATE ROLE mlflow LOGIN PASSWORD '{PASSWORD}'", 'CREATE DATABASE mlflow OWNER mlflow', 'CREATE DATABASE mlflow_auth OWNER mlflow'):
            r = psql(sql); assert r.returncode == 0, r.stderr
        yield {'uri': f'postgresql://mlflow:{PASSWORD}@127.0.0.1:{port}/mlflow', 'auth_uri': f'postgresql://mlflow:{PASSWORD}@127.0.0.1:{port}/mlflow_auth',
               'psql': lambda sql: psql(sql, 'mlflow').stdout.strip()}
    finally:
        pg('pg_ctl', '-D', str(data), '-m', 'fast', '-w', 'stop')
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope='module')
def team(postgres, tmp_path_factory):
    "The team's shared folder (artifacts, DVC remote, audit log), its authenticated MLflow server on PostgreSQL, and its users; stopped afterwards."
    shared = tmp_path_factory.mktemp('shared')
    os.environ['MLFLOW_AUTH_ADMIN_PASSWORD'] = creds('admin')['MLFLOW_TRACKING_PASSWORD']         # the admin's, read on the server's first start
    try:
        with tracking_server(postgres['uri'], str(shared / 'mlartifacts'), log=shared / 'mlflow-server.log', auth_db=postgres['auth_uri']) as url:
            os.environ.update({k: v for k, v in creds('admin').items() if k.startswith('MLFLOW_')})      # this test process reads the server as the admin
            raw = yaml.safe_load((ROOT / 'params.yaml').read_text()); raw['tracking']['uri'] = url
            (shared / 'params.yaml').write_text(yaml.safe_dump(raw, sort_keys=False))
            for user, role in USERS.items():                                                      # the admin sets the team up
                out = sh(f'mlops-kit team user {user} --role {role}', shared, 'admin', MLOPS_KIT_USER_PASSWORD=creds(user)['MLFLOW_TRACKING_PASSWORD'])
                assert f'user {user}: role {role}' in out.stdout, out.stdout + out.stderr
            yield {'url': url, 'shared': shared, **postgres}
    finally:
        for k in ('MLFLOW_AUTH_ADMIN_PASSWORD', 'MLFLOW_TRACKING_USERNAME', 'MLFLOW_TRACKING_PASSWORD'): os.environ.pop(k, None)


@pytest.fixture(scope='module')
def alice(team, tmp_path_factory):
    "Alice's clone: the project (small sample) set up for the team, committed, after one `dvc repro` against the server and a `dvc push`."
    root = tmp_path_factory.mktemp('alice')
    for f in ('dvc.yaml', '.dvcignore', '.gitignore', 'params.yaml'): shutil.copy(ROOT / f, root / f)
    shutil.copytree(ROOT / 'feedback', root / 'feedback')                          # the on-call feedback file (a DVC dependency)
    shutil.copytree(ROOT / 'mlops_kit', root / 'mlops_kit', ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copytree(ROOT / 'nbs/pipeline', root / 'nbs/pipeline')
    raw = yaml.safe_load((root / 'params.yaml').read_text())
    team_mode = {'tracking': {'uri': team['url']}, 'register': {'audit_log': str(team['shared'] / 'audit/audit.jsonl')}}
    for sec in set(SMALL) | set(team_mode): raw[sec].update(SMALL.get(sec, {}) | team_mode.get(sec, {}))
    (root / 'params.yaml').write_text(yaml.safe_dump(raw, sort_keys=False))
    sh(f"git init -q && dvc init -q && dvc config core.analytics false && dvc remote add -d shared {team['shared'] / 'dvcstore'} "
       "&& git add -A && git commit -qm 'team mode: shared MLflow server, DVC remote, audit log'", root)
    out = sh('dvc repro', root)
    sh('git add -A && git commit -qm repro && dvc push', root)
    return root, out.stdout + out.stderr


@pytest.fixture(scope='module')
def bob(alice, tmp_path_factory):
    "Bob's clone of Alice's repository, with the data pulled from the shared DVC remote."
    root = tmp_path_factory.mktemp('bob') / 'repo'
    sh(f'git clone -q {alice[0]} {root}', root.parent, 'bob')
    p = sh('dvc pull', root, 'bob')
    return root, p.stdout + p.stderr


def md5s(folder: Path) -> dict:
    return {str(f.relative_to(folder)): hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(folder.rglob('*')) if f.is_file()}


def test_pipeline_tracks_and_registers_on_the_postgres_backed_server(team, alice):
    from mlflow.tracking import MlflowClient
    root, out = alice
    run = json.loads((root / 'models/run.json').read_text())
    reg = json.loads((root / 'metrics/register.json').read_text())
    assert run['tracking_uri'] == team['url'] and (reg['version'], reg['promoted'], reg['champion']) == (1, True, 1), (run, reg, out[-2000:])
    c = MlflowClient(team['url']); r = c.get_run(run['run_id'])
    assert r.info.status == 'FINISHED' and r.info.artifact_uri.startswith('mlflow-artifacts:/'), r.info       # proxied by the server
    assert {'notebooks', 'train', 'evaluate', 'register'} <= {a.path for a in c.list_artifacts(run['run_id'])}
    assert r.data.tags['window_as_of'] and 'eval.alerts_per_day' in r.data.metrics
    assert int(c.get_model_version_by_alias(reg['model'], 'champion').version) == 1
    assert not (root / 'mlflow.db').exists() and not (root / 'mlartifacts').exists()                       # nothing fell back to the embedded store
    assert list((team['shared'] / 'mlartifacts').rglob('MLmodel')) and list((team['shared'] / 'mlartifacts').rglob('bundle.pkl'))
    # the server really keeps it in PostgreSQL
    assert team['psql'](f"SELECT count(*) FROM runs WHERE run_uuid = '{run['run_id']}'") == '1'
    assert team['psql']("SELECT name || ' v' || version FROM registered_model_aliases WHERE alias = 'champion'") == f"{reg['model']} v1"
    lst = sh('mlops-kit runs list', root).stdout
    assert run['run_id'][:12] in lst
    st = sh('mlops-kit team status', root).stdout
    assert f"{team['url']} (server)" in st and 'ok  server' in st and 'champion v1' in st and 'shared path' in st and 'ok  dvc remote  shared' in st, st
    assert 'ok  identity    authenticated as alice' in st, st


def test_dvc_push_pull_round_trips_the_windows(team, alice, bob):
    a, b = alice[0], bob[0]
    assert list((team['shared'] / 'dvcstore').rglob('*')), 'nothing pushed to the shared remote'
    wa, wb = md5s(a / 'data/windows'), md5s(b / 'data/windows')
    assert {'train.parquet', 'holdout.parquet', 'manifest.json'} <= set(wb) and wa == wb
    assert md5s(a / 'models') == md5s(b / 'models')
    st = sh('dvc status windows --json', b, 'bob').stdout
    assert json.loads(st) == {}, st                                    # Bob's clone has the windows stage up to date: nothing to recompute
    assert json.loads(sh('dvc status --cloud --json', b, 'bob').stdout) == {}    # and in sync with the shared remote


def test_teammate_scores_with_the_champion_through_the_server(team, alice, bob):
    "Bob, in his own clone and process, loads models:/<name>@champion from the server and gets what Alice's local bundle gives."
    from mlops_kit.fleet import FleetBundle
    from mlops_kit.guard import sha256_file
    a, b = alice[0], bob[0]
    hold = pd.read_parquet(b / 'data/windows/holdout.parquet')
    rows = hold[hold.ts < hold.ts.min() + pd.Timedelta('6h')].dropna()
    rows.to_csv(b / 'rows.csv', index=False)
    out = sh('mlops-kit score rows.csv scored.parquet', b, 'bob').stdout
    assert 'scored by mlops_kit_fleet@champion' in out, out
    got = pd.read_parquet(b / 'scored.parquet')
    want = FleetBundle.load(a / 'models/bundle.pkl', sha256_file(a / 'models/bundle.pkl')).predict(rows.assign(ts=rows.ts.dt.tz_localize(None)).reset_index(drop=True))
    assert len(got) == len(rows) and got.monitor_id.nunique() == rows.monitor_id.nunique()
    for col in ('expected', 'lower', 'upper', 'score'):
        pd.testing.assert_series_equal(got[col].reset_index(drop=True), want[col].reset_index(drop=True), check_names=False, check_dtype=False)
    assert (got.alert.astype(bool).to_numpy() == want.alert.astype(bool).to_numpy()).all()


def test_teammates_move_the_shared_aliases_with_one_audit_chain(team, alice, bob):
    "Alice registers a second version (it passes the gate: champion v2); Bob rolls back from his clone; both see v1; one intact audit chain."
    from mlflow.tracking import MlflowClient
    a, b = alice[0], bob[0]
    name = json.loads((a / 'metrics/register.json').read_text())['model']
    out = sh('mlops-kit register', a).stdout
    reg = json.loads((a / 'metrics/register.json').read_text())
    assert (reg['version'], reg['champion'], reg['previous_champion']) == (2, 2, 1), out
    sh('mlops-kit rollback --reason "v2 pages at night"', b, 'bob', MLOPS_KIT_USER='mallory')     # the log records who the server authenticated
    assert int(MlflowClient(team['url']).get_model_version_by_alias(name, 'champion').version) == 1
    assert 'champion v1' in sh('mlops-kit team status', a).stdout
    log = team['shared'] / 'audit/audit.jsonl'
    entries = [json.loads(l) for l in log.read_text().splitlines()]
    assert [(e['who'], e['action']) for e in entries] == [('alice', 'register'), ('alice', 'promote'), ('alice', 'register'), ('alice', 'promote'), ('bob', 'rollback')]
    assert all(e['authenticated'] for e in entries)
    assert (entries[-1]['alias_from'], entries[-1]['alias_to']) == ('champion@v2', 'champion@v1')
    for clone, user in ((a, 'alice'), (b, 'bob')):
        out = sh('mlops-kit audit verify', clone, user).stdout.strip()
        assert 'registry reconciled (anchor #5' in out and out.endswith('5 entries, chain intact'), out


def test_only_releasers_move_champion(team, alice, bob):
    "Carol (engineer) may read and run the pipeline, not move champion: her promotion is refused by the server, and nothing changes; nobody gets in anonymously."
    from mlflow.tracking import MlflowClient
    b, log = bob[0], team['shared'] / 'audit/audit.jsonl'
    before, champ = log.read_text(), int(MlflowClient(team['url']).get_model_version_by_alias('mlops_kit_fleet', 'champion').version)
    assert 'ok  identity    authenticated as carol' in sh('mlops-kit team status', b, 'carol').stdout
    p = sh('mlops-kit promote --version 2 --reason "carol wants v2"', b, 'carol', ok=False)
    assert p.returncode == 2 and "refused to let 'carol' move alias 'champion'" in p.stderr and 'releaser' in p.stderr and 'Traceback' not in p.stderr, p.stderr
    assert int(MlflowClient(team['url']).get_model_version_by_alias('mlops_kit_fleet', 'champion').version) == champ
    assert log.read_text() == before                                                  # a refused move leaves no entry
    assert sh('mlops-kit audit verify', b, 'carol').returncode == 0
    anon = sh('mlops-kit promote --version 2 --reason "anyone?"', b, None, ok=False)  # no credentials at all
    assert anon.returncode != 0 and log.read_text() == before and int(MlflowClient(team['url']).get_model_version_by_alias('mlops_kit_fleet', 'champion').version) == champ
    p = sh('mlops-kit team user dave --role releaser', b, 'carol', ok=False, MLOPS_KIT_USER_PASSWORD='x')   # only the admin adds users
    assert p.returncode == 2 and 'run this as the admin' in p.stderr, p.stderr
