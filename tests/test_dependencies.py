"""The lock file CI installs from covers every requirement of setup.cfg, within its bounds, so a
requirement added to setup.cfg without regenerating requirements.lock fails here, not in CI's install."""

from __future__ import annotations

import configparser
import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from surveykit.config import PROJECT_ROOT

# Used through private internals: must stay capped below their next release.
CAPPED = {"openpyxl", "waitress", "transaction", "zope-sqlalchemy", "pyjwt"}


def declared(*, with_test_extra: bool = True) -> list[Requirement]:
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    if with_test_extra:
        lines += config["options.extras_require"]["test"].splitlines()
    return [
        Requirement(line) for line in (line.strip() for line in lines) if line and not line.startswith("#")
    ]


def locked() -> dict[str, str]:
    text = (PROJECT_ROOT / "requirements.lock").read_text()
    return {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)
    }


def test_every_requirement_is_locked_within_its_bounds() -> None:
    pins = locked()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is required by setup.cfg but not in requirements.lock: run pip-compile"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_packages_used_through_internals_are_capped_and_no_unused_extra_is_pulled() -> None:
    requirements = {canonicalize_name(r.name): r for r in declared()}
    for name in CAPPED:
        assert any(spec.operator == "<" for spec in requirements[name].specifier), name
    assert not requirements["pyjwt"].extras
    # Only HS256 is used: the server installs no cryptography (the tests use it to forge RS256 tokens).
    installed = {canonicalize_name(r.name) for r in declared(with_test_extra=False)}
    assert "cryptography" not in installed


def test_every_locked_package_has_hashes() -> None:
    text = (PROJECT_ROOT / "requirements.lock").read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n\n", 1)[-1]):
        if "==" in block.splitlines()[0]:
            assert "--hash=sha256:" in block, block.splitlines()[0]
