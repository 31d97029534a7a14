from __future__ import annotations

from kexue.experiments import EXPERIMENT_MODULES, load_all
from kexue.report import list_experiments


def test_every_experiment_module_registers_and_budget_holds() -> None:
    load_all()
    experiments = list_experiments()
    names = {experiment.name for experiment in experiments}
    assert "data-overview" in names
    assert len(EXPERIMENT_MODULES) >= 1
    # `kexue reproduce --quick` for all experiments together must stay within 15 minutes (issue 2).
    assert sum(experiment.quick_minutes for experiment in experiments) <= 15.0


def test_library_packages_do_not_import_experiments_or_report() -> None:
    import ast
    from pathlib import Path

    import kexue

    root = Path(kexue.__file__).parent
    forbidden = ("kexue.experiments", "kexue.report", "kexue.cli")
    library = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name not in {"experiments", "report", "__pycache__"}
    ]
    offenders = []
    for package in library:
        for path in package.rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    module = node.module or ""
                    if node.level:  # relative import: resolve against the package
                        parts = path.relative_to(root.parent).with_suffix("").parts[: -node.level]
                        module = ".".join([*parts, module]) if module else ".".join(parts)
                    if module.startswith(forbidden):
                        offenders.append(f"{path.relative_to(root)} imports {module}")
    assert not offenders, offenders
