"""Finding domains: entry points, the domains package, local folders, and the protocol check."""

import textwrap

import pytest

from genneg.domain import available_domains, get_domain, missing_members


def test_builtin_toy_is_found_through_its_entry_point():
    assert "toy" in available_domains()
    assert get_domain("toy", n_train=10, n_eval=10).name == "toy"


def test_a_local_folder_is_a_domain(tmp_path):
    pkg = tmp_path / "mydomain"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from genneg.testing import GaussianMixtureDomain

        def make_domain(**kwargs):
            return GaussianMixtureDomain(**kwargs)
    """))
    assert get_domain("gmm", domain_path=pkg).name == "gmm"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        get_domain("x", domain_path=tmp_path / "empty")


def test_protocol_check_names_missing_members_without_evaluating_properties():
    class Lazy:
        name = "lazy"

        @property
        def sigma_data(self):
            raise AssertionError("the check must not load data")

    assert "presets" in missing_members(Lazy()) and "sigma_data" not in missing_members(Lazy())
