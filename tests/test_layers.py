"""The package's seams, checked from its source: no import cycle, no reaching into another module's private names,
DVC stage deps that follow the imports (changing any module a stage runs must re-run that stage), and one format
(ruff.toml: one statement a line, lines that fit a notebook column)."""
import ast, io, json, shutil, subprocess, tokenize
from pathlib import Path

import yaml

from conftest import BIN, ROOT
PKG = ROOT / 'mlops_kit'
MODULES = {p.stem for p in PKG.glob('*.py') if p.stem != '_modidx'}


def imports_of(tree: ast.AST, top_only: bool = False) -> set[str]:
    "The mlops_kit modules a tree imports (at any depth: the kit imports heavy modules inside functions)."
    out = set()
    for n in (tree.body if top_only else ast.walk(tree)):
        if isinstance(n, ast.ImportFrom):
            mod = n.module or ''
            if mod == 'mlops_kit' or (n.level and not mod):
                out |= {a.name for a in n.names if a.name in MODULES}
            elif mod.startswith('mlops_kit.') or n.level:
                out.add(mod.split('.')[-1])
        elif isinstance(n, ast.Import):
            out |= {a.name.split('.')[1] for a in n.names if a.name.startswith('mlops_kit.')}
    return out & MODULES


TREES = {m: ast.parse((PKG / f'{m}.py').read_text()) for m in MODULES}
GRAPH = {m: imports_of(t) - {m} for m, t in TREES.items()}


def closure(start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m not in seen: seen.add(m); todo += GRAPH[m] - seen
    return seen


def find_cycle() -> list[str] | None:
    "One import cycle among the package's modules, or None (depth-first search with colours)."
    colour, stack = dict.fromkeys(GRAPH, 0), []
    def visit(m):
        colour[m] = 1; stack.append(m)
        for d in sorted(GRAPH[m]):
            if colour[d] == 1: return stack[stack.index(d):] + [d]
            if colour[d] == 0 and (c := visit(d)): return c
        colour[m] = 2; stack.pop()
    for m in sorted(GRAPH):
        if colour[m] == 0 and (c := visit(m)): return c
    return None


def test_the_graph_is_read_and_a_cycle_would_be_found():
    assert GRAPH['fleet'] >= {'automl', 'evaluate', 'engine'}           # the reader sees module-level imports
    assert 'fleet' in GRAPH['tracking']                                 # ... and imports inside functions
    saved = set(GRAPH['evaluate'])
    try:
        GRAPH['evaluate'].add('fleet')
        assert find_cycle() is not None
    finally:
        GRAPH['evaluate'] = saved


def test_no_import_cycle():
    assert find_cycle() is None, f"import cycle: {' -> '.join(find_cycle())}"


def private_uses() -> list[str]:
    "`from mlops_kit.x import _name` and `x._name` on an imported kit module, in the package (tests may)."
    found = []
    for m, t in TREES.items():
        aliases = {}
        for n in ast.walk(t):
            if isinstance(n, ast.ImportFrom) and ((n.module or '').startswith('mlops_kit') or n.level):
                for a in n.names:
                    if a.name in MODULES: aliases[a.asname or a.name] = a.name
                    elif a.name.startswith('_') and not a.name.startswith('__'): found.append(f'{m}: from {n.module} import {a.name}')
        for n in ast.walk(t):
            if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
                    and n.attr.startswith('_') and not n.attr.startswith('__')):
                found.append(f'{m}: {n.value.id}.{n.attr}')
    return found


def test_no_module_reaches_into_anothers_private_names():
    assert private_uses() == []


def stage_modules(stage: dict) -> set[str]:
    "The kit modules a `mlops-kit <name>` stage runs: the CLI and what it imports, the subcommand's imports, its notebooks' imports."
    cli = TREES['cli']
    fns = {n.name: n for n in cli.body if isinstance(n, ast.FunctionDef)}
    todo, seen = [stage['cmd'].split()[1]], set()
    while todo:                                       # the subcommand and the CLI helpers it calls (e.g. evaluate -> fleet_summary)
        f = todo.pop()
        if f in seen: continue
        seen.add(f)
        todo += [n.func.id for n in ast.walk(fns[f]) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in fns]
    start = imports_of(cli, top_only=True) | set().union(*(imports_of(fns[f]) for f in seen))
    for dep in map(str, stage.get('deps', [])):
        if dep.endswith('.ipynb'):
            cells = json.loads((ROOT / dep).read_text())['cells']
            code = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'code')
            code = '\n'.join(l for l in code.splitlines() if not l.lstrip().startswith(('%', '!')))
            start |= imports_of(ast.parse(code))
    return closure(start) | {'cli'}


def test_stage_deps_follow_imports():
    stages = yaml.safe_load((ROOT / 'dvc.yaml').read_text())['stages']
    missing = {}
    for name, st in stages.items():
        have = {Path(d).stem for d in map(str, st.get('deps', [])) if d.startswith('mlops_kit/') and d.endswith('.py')}
        if need := stage_modules(st) - have: missing[name] = sorted(f'mlops_kit/{m}.py' for m in need)
    assert not missing, f'dvc.yaml: stages miss the modules they run (add them to deps): {missing}'


def test_the_deps_check_sees_the_monitor_stage_running_the_detector():
    st = yaml.safe_load((ROOT / 'dvc.yaml').read_text())['stages']['monitor']
    assert {'detect', 'models', 'monitor', 'register', 'cli', 'config'} <= stage_modules(st)   # register: via monitor.served_bundle


def semicolons(src: str) -> int:
    "How many `;` join statements in `src` (tokens, so a `;` inside a string or comment does not count)."
    return sum(t.type == tokenize.OP and t.string == ';' for t in tokenize.generate_tokens(io.StringIO(src).readline))


def ruff_check(cwd: Path) -> subprocess.CompletedProcess:
    "`ruff format --check` with the project's ruff.toml (the notebooks it includes), as `make format` would change them."
    return subprocess.run([str(BIN / 'ruff'), 'format', '--check', '--no-cache'], cwd=cwd, capture_output=True, text=True)


def test_notebooks_are_in_the_formatters_format_and_the_check_can_fail(tmp_path):
    "The library notebooks are as `make format` leaves them; a notebook with a `;`-joined line and a long line fails the check."
    p = ruff_check(ROOT)
    assert p.returncode == 0, f'run `make format`:\n{p.stdout}{p.stderr}'
    shutil.copy(ROOT / 'ruff.toml', tmp_path / 'ruff.toml')
    (tmp_path / 'nbs').mkdir()
    src = "#| export\nx = 1; y = 2\nz = dict(" + ', '.join(f'k{i}={i}' for i in range(30)) + ")\n"
    nb = {'cells': [{'cell_type': 'code', 'metadata': {}, 'source': src, 'outputs': [], 'execution_count': None}],
          'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}
    (tmp_path / 'nbs' / '00_bad.ipynb').write_text(json.dumps(nb))
    p = ruff_check(tmp_path)
    assert p.returncode == 1 and '00_bad.ipynb' in p.stdout, p.stdout + p.stderr


def test_no_statements_joined_by_semicolons_in_the_package():
    "One statement a line in every exported module (the formatter splits them; this counts tokens, not text)."
    assert semicolons('a = 1; b = 2\n') == 1 and semicolons("s = 'a; b'  # c; d\n") == 0
    joined = {m: n for m in sorted(MODULES) if (n := semicolons((PKG / f'{m}.py').read_text()))}
    assert not joined, f'statements joined by ";" per module: {joined}'
