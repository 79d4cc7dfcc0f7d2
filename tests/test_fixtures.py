"""The shared test helpers of conftest.py behave as documented."""

from __future__ import annotations

import pytest

import conftest


def test_missing_optional_extras_skip_locally_and_fail_under_ci(monkeypatch, require_module, missing_optional):
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="tcmcodec_no_such_module"):
        require_module("tcmcodec_no_such_module")
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="tcmcodec_no_such_module"):
        require_module("tcmcodec_no_such_module")
    with pytest.raises(pytest.fail.Exception, match="no JPEG"):
        missing_optional("no JPEG")
    assert require_module("json").dumps([]) == "[]"
