"""The suite's warning filters (pyproject.toml, tests/conftest.py): a deprecation raised by
the package's own code fails the test, and so does writing TorchScript anywhere; npe2's and
bioimageio.spec's pydantic deprecations are ignored by their category, whatever module
they are attributed to, so that the package's own warnings stand out."""

from __future__ import annotations

import warnings

import pytest


def test_the_packages_own_deprecations_fail_the_suite():
    for category in (DeprecationWarning, FutureWarning):
        with pytest.raises(category):
            warnings.warn_explicit("old API", category, "export.py", 1,
                                   module="napari_unsupseg.core.models.export")
    with pytest.raises(DeprecationWarning):  # attributed to torch, caught by its message
        warnings.warn_explicit("`torch.jit.trace` is deprecated. Please switch to "
                               "`torch.export`.", DeprecationWarning, "_trace.py", 1,
                               module="torch.jit._trace")


def test_pydantic_deprecations_from_npe2_are_ignored_by_category():
    pydantic_warnings = pytest.importorskip("pydantic.warnings")
    with warnings.catch_warnings(record=True) as caught:  # keeps the suite's filters
        for module in ("npe2.manifest.schema", "pydantic._internal._config"):
            warnings.warn_explicit("`json_encoders` is deprecated.",
                                   pydantic_warnings.PydanticDeprecatedSince20, "x.py", 1,
                                   module=module)
        warnings.warn_explicit("another library's", DeprecationWarning, "y.py", 1,
                               module="some_library")
    assert [str(w.message) for w in caught] == ["another library's"]
