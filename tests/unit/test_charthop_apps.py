"""ChartHop's app-install reads and an org's settings from its installed app's options."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest

from people_sync import charthop_apps
from people_sync.charthop_apps import ChartHopApps, OptionsSettingsReader, settings_from_options
from people_sync.charthop_client import ChartHopClient, default_retry
from people_sync.errors import ChartHopRejected
from people_sync.org_registry import InvalidOrgSettings, OrgRecord, SettingsSource
from tests.app_installs_server import APP_ID, DEVELOPER_TOKEN, AppInstallsServer, Install
from tests.fakes import FakeClock

INSTALLS = [
    Install("org-a", "user-a", "token-a", {"skipErrors": False, "requiredColumns": "Employee ID, Name"}),
    Install("org-b", "user-b", "token-b", {"importOnUpload": "false", "upsert": "", "welcome": "hi"}),
    Install("org-c", "user-c", "token-c", status="UNINSTALLED"),
]


@pytest.fixture
def server() -> Iterator[AppInstallsServer]:
    with AppInstallsServer(INSTALLS) as running:
        yield running


def client(server: AppInstallsServer, token: str) -> ChartHopClient:
    return ChartHopClient(token, base_url=server.base_url, retry=default_retry(total=1, backoff_factor=0.01))


def test_active_installs_are_read_page_after_page(server: AppInstallsServer) -> None:
    installs = list(ChartHopApps(client(server, DEVELOPER_TOKEN)).active_installs(APP_ID))

    assert [(i.org_id, i.id, i.installed) for i in installs] == [
        ("org-a", "user-a", True),
        ("org-b", "user-b", True),
        ("org-c", "user-c", False),
    ]
    assert [path for path, _ in server.requests] == [f"/v1/app/install/{APP_ID}"] * 2
    assert "secrets" not in installs[0].model_dump()  # write-only secrets are never kept


def test_the_listing_stops_and_is_truncated_when_charthop_ignores_the_cursor() -> None:
    """getActiveAppInstalls defines no `from` (App API spec): should ChartHop ignore it while still naming a
    `next`, the client stops at the first page that brings no new install and says the listing is truncated.
    (Review finding: it read the same first page MAX_INSTALL_PAGES (100) times.)"""
    with AppInstallsServer(INSTALLS, ignores_from=True) as server:
        apps = ChartHopApps(client(server, DEVELOPER_TOKEN))
        listing = apps.list_installs(APP_ID)
        assert len(server.requests) == 2, f"{len(server.requests)} requests for one repeated page"
        assert [install.id for install in listing.installs] == ["user-a", "user-b"]
        assert listing.truncated  # the same cursor again, and no new install
        assert [install.id for install in apps.active_installs(APP_ID)] == ["user-a", "user-b"]


class _Pages:
    """A client stand-in answering getActiveAppInstalls with the given pages, in turn."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.params: list[dict[str, Any]] = []

    def _json(self, method: str, path: str, *, what: str, params: dict[str, Any]) -> dict[str, Any]:
        self.params.append(dict(params))
        return self.pages[min(len(self.params), len(self.pages)) - 1]


def _user(user_id: str) -> dict[str, Any]:
    return Install(f"org-{user_id}", user_id, "t").user()


def test_a_repeated_cursor_ends_the_listing_as_truncated() -> None:
    pages = [
        {"data": [_user("u1")], "next": "c1"},
        {"data": [_user("u2")], "next": "c2"},
        {"data": [_user("u3")], "next": "c1"},  # a cursor already followed
    ]
    fake = _Pages(pages)
    listing = ChartHopApps(cast(ChartHopClient, fake)).list_installs(APP_ID)
    assert [install.id for install in listing.installs] == ["u1", "u2", "u3"]
    assert listing.truncated is not None
    assert "'c1' twice" in listing.truncated
    assert [params.get("from") for params in fake.params] == [None, "c1", "c2"]


def test_a_listing_that_hits_the_page_cap_is_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charthop_apps, "MAX_INSTALL_PAGES", 2)
    fake = _Pages([{"data": [_user(f"u{n}")], "next": f"c{n}"} for n in range(5)])
    listing = ChartHopApps(cast(ChartHopClient, fake)).list_installs(APP_ID)
    assert len(fake.params) == 2
    assert listing.truncated is not None
    assert "2 pages" in listing.truncated


def test_a_complete_listing_is_not_truncated(server: AppInstallsServer) -> None:
    listing = ChartHopApps(client(server, DEVELOPER_TOKEN)).list_installs(APP_ID)
    assert (len(listing.installs), listing.truncated) == (3, None)


def test_an_orgs_own_token_reads_its_install_but_not_the_list(server: AppInstallsServer) -> None:
    app = ChartHopApps(client(server, "token-a")).installed_app("org-a", "user-a")
    assert app.options["skipErrors"] is False
    with pytest.raises(ChartHopRejected) as refused:
        list(ChartHopApps(client(server, "token-a")).active_installs(APP_ID))
    assert refused.value.status == 403


def test_an_access_token_never_shows_in_a_repr(server: AppInstallsServer) -> None:
    token = ChartHopApps(client(server, DEVELOPER_TOKEN)).access_token("org-b", "user-b")
    assert token.access_token.get_secret_value() == "token-b"
    assert token.expires_in == 86400
    assert "token-b" not in repr(token)
    assert "token-b" not in str(token.model_dump())


def test_settings_from_options_take_booleans_as_booleans_or_words_and_skip_empty_fields() -> None:
    first = settings_from_options(INSTALLS[0].options)
    assert first.import_options == {"skipErrors": False}
    assert first.required_columns == ("Employee ID", "Name")
    second = settings_from_options(INSTALLS[1].options)
    assert second.import_on_upload is False
    assert second.import_options == {}  # "upsert": "" was left empty: the stack's default applies


def test_a_bad_value_on_the_configuration_page_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidOrgSettings, match=r"the app's configuration in ChartHop: .*skipErrors"):
        settings_from_options({"skipErrors": "sometimes"})


def test_the_reader_asks_charthop_with_the_orgs_own_token_and_reuses_the_answer_for_a_while(
    server: AppInstallsServer,
) -> None:
    secrets = {"secret-a": "token-a"}
    clock = FakeClock()
    reader = OptionsSettingsReader(lambda secret: client(server, secrets[secret]), max_age=60, clock=clock)
    record = OrgRecord("org-a", "user-a", token_secret="secret-a", settings_source=SettingsSource.CHARTHOP)

    assert reader(record, "secret-a").import_options == {"skipErrors": False}
    INSTALLS[0].options["skipErrors"] = True
    try:
        clock.advance(30)
        assert reader(record, "secret-a").import_options == {"skipErrors": False}
        clock.advance(31)
        assert reader(record, "secret-a").import_options == {"skipErrors": True}
    finally:
        INSTALLS[0].options["skipErrors"] = False
    assert {token for _, token in server.requests} == {"token-a"}
    assert len(server.requests) == 2
