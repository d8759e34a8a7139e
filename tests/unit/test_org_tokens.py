"""An org's token in a warm container (people_sync/org_tokens.py): a token fetched with getAccessToken is
refreshed before it expires, a refused one is replaced once (the secret read again first, then ChartHop asked),
a refresh that failed is not repeated in a loop, and no token is ever logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from offline.charthop_emulator import ChartHopEmulator, EmulatorConfig
from people_sync.charthop_apps import AccessToken, ChartHopApps
from people_sync.charthop_client import ChartHopClient, default_retry
from people_sync.errors import ChartHopRejected, ChartHopTokenRefused
from people_sync.org_tokens import FAILED_REFRESH_PAUSE_SECONDS, OrgToken
from tests.fakes import FakeClock

ORG = "org-beta"


class Minter:
    """Hands out token-1, token-2, ... (or raises `failing`), each valid `seconds`."""

    def __init__(self, seconds: int = 1000) -> None:
        self.seconds = seconds
        self.calls = 0
        self.failing: Exception | None = None
        self.answer: str | None = None

    def __call__(self) -> AccessToken:
        self.calls += 1
        if self.failing is not None:
            raise self.failing
        token = self.answer or f"token-{self.calls}"
        return AccessToken(access_token=SecretStr(token), expires_in=self.seconds)


class Kept:
    def __init__(self) -> None:
        self.stored: list[tuple[str, int, int]] = []

    def __call__(self, token: str, issued_at: int, expires_at: int) -> None:
        self.stored.append((token, issued_at, expires_at))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=10_000.0)


def fetched(clock: FakeClock, minter: Minter, kept: Kept, secret: list[str] | None = None) -> OrgToken:
    """A token fetched at `clock.now` for `minter.seconds`, as the runtime builds it from the registry."""
    now = int(clock())
    return OrgToken(
        ORG,
        "token-0",
        issued_at=now,
        expires_at=now + minter.seconds,
        mint=minter,
        keep=kept,
        read_secret=(lambda: secret[-1]) if secret is not None else None,
        clock=clock,
    )


def test_a_fetched_token_is_refreshed_before_it_expires_and_only_then(clock: FakeClock) -> None:
    minter, kept = Minter(seconds=1000), Kept()
    token = fetched(clock, minter, kept)
    clock.advance(1000 - 251)  # the margin is min(300 s, a quarter of the life: 250 s)
    assert token.token() == "token-0"
    assert minter.calls == 0
    clock.advance(2)
    assert token.token() == "token-1"
    assert kept.stored == [("token-1", int(clock()), int(clock()) + 1000)]
    assert token.token() == "token-1"  # the fresh one lives another 1000 s
    assert minter.calls == 1


def test_an_operators_token_without_an_expiry_is_never_refreshed_before_use(clock: FakeClock) -> None:
    minter = Minter()
    token = OrgToken(ORG, "operator-token", mint=minter, clock=clock)
    clock.advance(10 * 365 * 86400)
    assert token.token() == "operator-token"
    assert minter.calls == 0


def test_a_refused_token_is_first_looked_for_in_the_secret(clock: FakeClock) -> None:
    minter, kept, secret = Minter(), Kept(), ["token-0"]
    token = fetched(clock, minter, kept, secret)
    secret.append("set-by-an-operator")
    assert token.refused("token-0") == "set-by-an-operator"
    assert minter.calls == 0
    assert token.token() == "set-by-an-operator"


def test_a_refused_token_is_replaced_by_a_fetched_one_and_kept(clock: FakeClock) -> None:
    minter, kept, secret = Minter(), Kept(), ["token-0"]
    token = fetched(clock, minter, kept, secret)
    assert token.refused("token-0") == "token-1"
    assert [stored[0] for stored in kept.stored] == ["token-1"]
    # another thread refused the old token late: it gets the fresh one, nothing is fetched again
    assert token.refused("token-0") == "token-1"
    assert minter.calls == 1


def test_a_failed_refresh_is_not_repeated_for_a_while(clock: FakeClock) -> None:
    minter, kept = Minter(), Kept()
    minter.failing = ChartHopRejected("ChartHop refused to read the app's token (HTTP 404).", status=404)
    token = fetched(clock, minter, kept)
    assert token.refused("token-0") is None
    assert token.refused("token-0") is None
    assert minter.calls == 1
    clock.advance(FAILED_REFRESH_PAUSE_SECONDS)
    minter.failing = None
    assert token.refused("token-0") == "token-2"  # the minter's second answer
    assert minter.calls == 2


def test_a_refresh_that_breaks_unexpectedly_leaves_the_refusal_standing(clock: FakeClock) -> None:
    """E.g. the stack's own org's entry or secret cannot be read: no crash, no fresh token, no retry at once."""
    minter, kept = Minter(), Kept()
    minter.failing = RuntimeError("the registry could not be read")
    token = fetched(clock, minter, kept)
    assert token.refused("token-0") is None
    assert token.refused("token-0") is None
    assert minter.calls == 1


def test_the_refused_token_handed_back_is_no_fresh_token(clock: FakeClock) -> None:
    minter, kept = Minter(), Kept()
    minter.answer = "token-0"
    token = fetched(clock, minter, kept)
    assert token.refused("token-0") is None
    assert kept.stored == []


def test_an_unchanged_secret_does_not_undo_a_refresh_and_a_changed_one_is_taken(clock: FakeClock) -> None:
    minter, kept = Minter(), Kept()
    token = fetched(clock, minter, kept)
    assert token.refused("token-0") == "token-1"
    token.observe("token-0", issued_at=0, expires_at=0)  # the container's cache still holds the old value
    assert token.token() == "token-1"
    token.observe("rotated-by-an-operator", issued_at=0, expires_at=0)
    assert token.token() == "rotated-by-an-operator"


def test_the_stack_orgs_token_cannot_be_refreshed(clock: FakeClock) -> None:
    token = OrgToken("acme", "stack-token", read_secret=lambda: "stack-token", clock=clock)
    assert not token.can_refresh
    assert token.refused("stack-token") is None


def test_no_token_is_ever_logged(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    minter, kept = Minter(seconds=100), Kept()
    token = fetched(clock, minter, kept, ["token-0"])
    clock.advance(99)
    token.token()
    token.refused("token-1")
    minter.failing = ChartHopRejected("refused", status=403)
    token.refused("token-2")
    text = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    for value in ("token-0", "token-1", "token-2"):
        assert value not in text


# --- against the emulator: tokens that expire, in a warm container -------------------------------------------


@pytest.fixture
def charthop(clock: FakeClock) -> Iterator[ChartHopEmulator]:
    with ChartHopEmulator(EmulatorConfig(minted_token_seconds=600), clock=clock) as running:
        running.add_org(ORG, token="operator-token-of-beta")
        yield running


def emulator_token(emulator: ChartHopEmulator, clock: FakeClock) -> OrgToken:
    """The org's token as the runtime builds it: fetched with the developer (stack) org's token."""
    developer = ChartHopClient(emulator.config.token, base_url=emulator.base_url, retry=default_retry(total=0))
    app_user = emulator.orgs[ORG].app_user_id
    return OrgToken(
        ORG,
        "operator-token-of-beta",
        mint=lambda: ChartHopApps(developer).access_token(ORG, app_user),
        clock=clock,
    )


def test_a_warm_client_never_sends_an_expired_token(charthop: ChartHopEmulator, clock: FakeClock) -> None:
    token = emulator_token(charthop, clock)
    client = ChartHopClient(token, base_url=charthop.base_url, retry=default_retry(total=0))
    process = charthop.create_sync_process(org_id=ORG)
    charthop.revoke_token(ORG)  # the operator's token stops working: a fetched one takes over on the 401
    client.get_process(ORG, process["id"])
    [first] = charthop.issued_tokens(ORG)
    for _ in range(5):  # an hour of calls, ten minutes apart, on tokens that live ten minutes
        clock.advance(449)  # refreshed a quarter of its life (150 s) before it expires
        client.get_process(ORG, process["id"])
        clock.advance(151)
        client.get_process(ORG, process["id"])
    statuses = [call.status for call in charthop.calls_of("getProcess")]
    assert statuses == [401] + [200] * 11  # the one 401 was the revoked token's; none expired on the way
    issued = charthop.issued_tokens(ORG)
    assert issued[0] == first
    assert len(issued) == 6
    assert [call.status for call in charthop.calls_of("getAccessToken")] == [200] * 6


def test_a_revoked_token_without_a_fresh_one_is_refused_once_per_call(
    charthop: ChartHopEmulator, clock: FakeClock
) -> None:
    token = emulator_token(charthop, clock)
    client = ChartHopClient(token, base_url=charthop.base_url, retry=default_retry(total=0))
    process = charthop.create_sync_process(org_id=ORG)
    charthop.revoke_token(ORG, mintable=False)
    for _ in range(3):
        with pytest.raises(ChartHopTokenRefused):
            client.get_process(ORG, process["id"])
    assert [call.status for call in charthop.calls_of("getProcess")] == [401] * 3
    assert [call.status for call in charthop.calls_of("getAccessToken")] == [404]  # paused after the failure
