"""The page patchers restores can use (apps/backups/_pagepatch.c, compiled; delta_restore._numpy_put, its
fallback), and a fixture that makes each in turn the one they use: a module runs its tests with both by
`pytestmark = pytest.mark.usefixtures("patcher")` and importing it."""
import importlib

import pytest

from apps.backups import delta_restore

PATCHERS = {"compiled": lambda: importlib.import_module("apps.backups._pagepatch").put,
            "numpy": lambda: delta_restore._numpy_put}


@pytest.fixture(params=sorted(PATCHERS))
def patcher(request, monkeypatch):
    put = PATCHERS[request.param]()
    monkeypatch.setattr(delta_restore, "put_records", put)
    return put
