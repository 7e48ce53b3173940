"""The dashboard's session value: an expiry and an HMAC keyed by the admin token."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ui import session

TOKEN = "admin-token"
NOW = 1_700_000_000.0
ISSUED = session.issue(TOKEN, NOW, lifetime_s=60)


@pytest.mark.parametrize(
    ("value", "token", "now", "expected"),
    [
        pytest.param(ISSUED, TOKEN, NOW, True, id="fresh"),
        pytest.param(ISSUED, TOKEN, NOW + 59, True, id="before-expiry"),
        pytest.param(ISSUED, TOKEN, NOW + 60, False, id="expired"),
        pytest.param(ISSUED, "another-admin-token", NOW, False, id="token-changed"),
        pytest.param(ISSUED.replace(".", ".0", 1)[:-1], TOKEN, NOW, False, id="tag-altered"),
        pytest.param(
            f"{int(NOW) + 10**6}.{ISSUED.partition('.')[2]}",
            TOKEN,
            NOW,
            False,
            id="expiry-extended",
        ),
        pytest.param(TOKEN, TOKEN, NOW, False, id="the-token-itself"),
        pytest.param("", TOKEN, NOW, False, id="empty"),
        pytest.param(None, TOKEN, NOW, False, id="absent"),
        pytest.param("٣٣٣." + "0" * 64, TOKEN, NOW, False, id="non-ascii-digits"),
        pytest.param("9" * 40 + ".x", TOKEN, NOW, False, id="huge-expiry"),
    ],
)
def test_only_an_unexpired_value_issued_under_the_token_is_valid(
    value: str | None, token: str, now: float, expected: bool
) -> None:
    assert session.valid(value, token, now) is expected


def test_the_value_does_not_hold_the_token() -> None:
    assert TOKEN not in ISSUED
    assert session.issue(TOKEN, NOW) != session.issue("other", NOW)


@given(st.text(max_size=200))
def test_no_made_up_value_is_valid(value: str) -> None:
    assert not session.valid(value, TOKEN, NOW)
