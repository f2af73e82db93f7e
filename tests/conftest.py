"""What the tests share: the repository root, a shell that runs the kit's tools from this venv, and scratch projects.

A scratch project is a copy of the project's pipeline files (dvc.yaml, params.yaml, the package, the pipeline and tutorial
notebooks) in a temporary folder, made a git + DVC repository; `scratch_project` builds one, optionally with `dvc repro` run.
Test modules import the helpers with `from conftest import ...` (pytest puts tests/ on sys.path: there is no tests/__init__.py)."""
import os, shutil, subprocess, sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, 'PATH': f"{BIN}:{os.environ['PATH']}", 'DVC_NO_ANALYTICS': '1', 'MLFLOW_DISABLE_TELEMETRY': 'true', 'DO_NOT_TRACK': 'true',
       'GIT_AUTHOR_NAME': 't', 'GIT_AUTHOR_EMAIL': 't@t', 'GIT_COMMITTER_NAME': 't', 'GIT_COMMITTER_EMAIL': 't@t'}
ENV.pop('MLFLOW_TRACKING_URI', None)
# On test_level1's five-service fleet the holdout has 9 incidents, one of them a modest hour-long rise on the noisiest monitor (checkout),
# inside the bursts it has every day: the precision-first detector misses it, the static rule (which fires there every day) does
# not. The gate's first-version recall tolerance is widened to one incident in nine so the test is about the pipeline, not that one.
GATE = {'register': {'gate': yaml.safe_load((ROOT / 'params.yaml').read_text())['register']['gate'] | {'recall_tolerance': 0.15}}}
STAGES = ('sample', 'ingest', 'validate', 'windows', 'train', 'evaluate', 'register', 'monitor')


def sh(cmd, cwd, ok=True):
    "Run a shell command in `cwd` with the venv's tools first on PATH; by default assert it succeeded (and show its output if not)."
    p = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, shell=True)
    if ok: assert p.returncode == 0, f'{cmd}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}'
    return p


def set_params(root: Path, **sections):
    "Update sections of root/params.yaml (each a dict merged into the section)."
    raw = yaml.safe_load((root / 'params.yaml').read_text())
    for sec, kv in sections.items(): raw[sec].update(kv)
    (root / 'params.yaml').write_text(yaml.safe_dump(raw, sort_keys=False))


def ran(out: str) -> set[str]:
    "The pipeline stages a `dvc repro` output says it ran."
    return {s for s in STAGES if f"Running stage '{s}'" in out}


def copy_project(root: Path, nbs=('pipeline', 'tutorials')) -> Path:
    "The project's pipeline files in `root`: dvc.yaml, params.yaml, the feedback file, the package, the pipeline (and tutorial) notebooks."
    for f in ('dvc.yaml', '.dvcignore', '.gitignore', 'params.yaml'): shutil.copy(ROOT / f, root / f)
    shutil.copytree(ROOT / 'feedback', root / 'feedback')                          # the on-call feedback file (a DVC dependency)
    shutil.copytree(ROOT / 'mlops_kit', root / 'mlops_kit', ignore=shutil.ignore_patterns('__pycache__'))
    for d in nbs: shutil.copytree(ROOT / 'nbs' / d, root / 'nbs' / d)
    return root


def scratch_project(root: Path, params: dict | None = None, nbs=('pipeline', 'tutorials'), repro: bool = False) -> tuple[Path, str]:
    "(root, `dvc repro` output or '') of a fresh git + DVC project in `root` with `params` set, committed (after the repro too)."
    copy_project(root, nbs)
    set_params(root, **(params or {}))
    sh('git init -q && dvc init -q && dvc config core.analytics false && git add -A && git commit -qm base', root)
    if not repro: return root, ''
    p = sh('dvc repro', root)
    sh('git add -A && git commit -qm "repro"', root)
    return root, p.stdout + p.stderr
