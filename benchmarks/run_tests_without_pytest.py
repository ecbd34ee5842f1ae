"""Run test modules on a machine without pytest (a bare GPU box).

A minimal stand-in that understands what tests/test_cuda_*.py use:
pytest.mark.parametrize (stacked), pytest.mark.skipif, pytest.skip,
pytest.raises(match=...) and module-level pytestmark. It prints one line per
test and exits non-zero if any failed. Use real pytest when it is installed.

Usage: python benchmarks/run_tests_without_pytest.py tests/test_cuda_clip.py [...]
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
import traceback
import types


class Skipped(Exception):
    pass


class _Mark:
    def __init__(self, name: str, args: tuple, kwargs: dict):
        self.name, self.args, self.kwargs = name, args, kwargs

    def __call__(self, fn):
        fn.__dict__.setdefault("_marks", []).insert(0, self)
        return fn


class _BareMark(_Mark):
    """`pytest.mark.name`: a mark itself, or called with arguments to make one."""

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return super().__call__(args[0])
        return _Mark(self.name, args, kwargs)


class _MarkFactory:
    def __getattr__(self, name: str):
        return _BareMark(name, (), {})


class _Raises:
    def __init__(self, exc, match=None):
        self.exc, self.match = exc, match

    def __enter__(self):
        return self

    def __exit__(self, typ, value, tb):
        if typ is None:
            raise AssertionError(f"DID NOT RAISE {self.exc}")
        if not issubclass(typ, self.exc):
            return False
        if self.match and not re.search(self.match, str(value)):
            raise AssertionError(f"{value!r} does not match {self.match!r}")
        return True


def _skip(reason: str = "") -> None:
    raise Skipped(reason)


def install_shim() -> None:
    shim = types.ModuleType("pytest")
    shim.mark = _MarkFactory()
    shim.skip = _skip
    shim.raises = _Raises
    sys.modules["pytest"] = shim


def _cases(fn):
    """(id, kwargs) for every combination of the function's parametrize marks."""
    axes = []
    for mark in getattr(fn, "_marks", []):
        if mark.name == "parametrize":
            names = [n.strip() for n in mark.args[0].split(",")]
            values = [v if len(names) > 1 else (v,) for v in mark.args[1]]
            axes.append([dict(zip(names, v)) for v in values])
    for combo in itertools.product(*axes):
        kwargs = {}
        for part in combo:
            kwargs.update(part)
        yield "-".join(str(v) for v in kwargs.values()), kwargs


def _skip_reason(marks) -> str | None:
    for mark in marks:
        if mark.name == "skipif" and mark.args and mark.args[0]:
            return mark.kwargs.get("reason", "skipif")
    return None


def run_module(path: str) -> tuple[int, int, int]:
    spec = importlib.util.spec_from_file_location(path.replace("/", "_").removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module_marks = getattr(module, "pytestmark", [])
    module_marks = module_marks if isinstance(module_marks, list) else [module_marks]
    passed = failed = skipped = 0
    for name in [n for n in dir(module) if n.startswith("test_")]:
        fn = getattr(module, name)
        if not callable(fn):
            continue
        reason = _skip_reason(module_marks) or _skip_reason(getattr(fn, "_marks", []))
        for case_id, kwargs in _cases(fn):
            label = f"{path}::{name}" + (f"[{case_id}]" if case_id else "")
            if reason:
                print(f"SKIP {label}: {reason}")
                skipped += 1
                continue
            try:
                fn(**kwargs)
            except Skipped as exc:
                print(f"SKIP {label}: {exc}")
                skipped += 1
            except Exception:  # noqa: BLE001 - report every failure and go on
                print(f"FAIL {label}")
                traceback.print_exc()
                failed += 1
            else:
                print(f"PASS {label}")
                passed += 1
    return passed, failed, skipped


def main(paths: list[str]) -> int:
    install_shim()
    totals = [0, 0, 0]
    for path in paths:
        for i, n in enumerate(run_module(path)):
            totals[i] += n
    print(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped (without pytest)")
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
