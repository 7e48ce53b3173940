"""The README documents the result codes the code uses."""

from __future__ import annotations

import re

from services.ingress.results import RESULT_CODES
from tests.conftest import REPO


def test_readme_result_code_table_matches_the_code() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Result codes", 1)[1].split("\n#", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d{3}) \|", section, re.M)}
    assert documented == set(RESULT_CODES)
