"""ChartHop's published spec (contracts/charthop/) against the client, the emulator and the webhook.

Every ChartHop client method runs against the emulator with contract checks on: the emulator refuses any
request the spec does not define and records any answer of its own that leaves it. Broken requests and a
broken answer show that both checks bite. Webhook deliveries are checked against the Event API's `Event`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from typing import Any

import pytest
import requests

from offline.charthop_contract import SPEC_DIR, contract
from offline.charthop_emulator import ChartHopEmulator, EmulatorConfig, drain_contract_violations
from people_sync import api_assumptions as assumed
from people_sync.charthop_client import ChartHopClient, default_retry
from people_sync.errors import ChartHopRejected
from people_sync.models import ChartHopEvent, ImportOptions, ProcessStatus

ROSTER = b"Employee ID,Name\nE1,Ada\nE2,Grace\n"


@pytest.fixture
def emulator() -> Any:
    with ChartHopEmulator(EmulatorConfig(process_page_size=2)) as running:
        yield running


@pytest.fixture
def client(emulator: ChartHopEmulator) -> ChartHopClient:
    return ChartHopClient(
        emulator.config.token,
        base_url=emulator.base_url,
        timeout=(2.0, 2.0),
        retry=default_retry(total=0),
    )


def _auth(emulator: ChartHopEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator.config.token}"}


def test_the_vendored_files_are_the_published_ones() -> None:
    """The files are verbatim copies: their sha256 sums are the ones the contract README names."""
    readme = (SPEC_DIR / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `([^`]+\.yml)` \|.*\| `([0-9a-f]{64})` \|$", readme, flags=re.MULTILINE))
    assert len(listed) == 5
    for name, digest in listed.items():
        assert hashlib.sha256((SPEC_DIR / name).read_bytes()).hexdigest() == digest, name


def test_every_client_method_follows_the_contract(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    org = emulator.config.org_id
    app_id = emulator.config.app_id
    created = client.create_process(
        org,
        label="people-sync: roster.csv",
        process_type=assumed.CHARTHOP_SYNC_PROCESS_TYPE,
        run_user_id=emulator.config.app_user_id,
        options=assumed.own_process_options("people-sync", "upload", source="s3://b/k", versionId="v1"),
        message="Found roster.csv",
        app_id=app_id,
    )
    assert client.get_process(org, created.id).options == created.options
    client.update_process(org, created.id, status=ProcessStatus.RUNNING, progress=0.05, message="Uploading")
    options = ImportOptions(notify_user_ids=["u1", "u2"], notify_app_name="people-sync", import_source="people-sync")
    imported = client.import_csv(
        org,
        lambda: (io.BytesIO(ROSTER), len(ROSTER)),
        file_name="roster.csv",
        options=options,
        parent_process_id=created.id,
    )
    assert imported.parent_process_id == created.id
    for _ in range(4):  # more than a page (process_page_size=2), so `from`/`next` are used
        emulator.create_sync_process()
    listed = list(client.find_processes(org, statuses=["PENDING", "RUNNING"], app_id=app_id, limit=2))
    assert len(listed) == 5
    assert [p.id for p in client.find_processes(org, parent_process_id=created.id)] == [imported.id]
    client.update_process(
        org,
        created.id,
        status=ProcessStatus.DONE,
        progress=1.0,
        message="Imported roster.csv",
        results={"rows": 2, "created": 2, "file": "roster.csv"},
        summary="Imported roster.csv",
    )

    assert emulator.refused_requests == []
    assert emulator.contract_violations == []
    operations = {call.operation for call in emulator.calls if 200 <= call.status < 300}
    assert operations == {"createProcess", "getProcess", "updateProcess", "importDataCsv", "findProcesses"}
    pages = [call.query for call in emulator.calls_of("findProcesses")]
    assert any(assumed.CHARTHOP_PAGE_FROM_PARAM in query for query in pages), "paging was not exercised"
    assert all(query.get(assumed.CHARTHOP_PAGE_LIMIT_PARAM) for query in pages)
    # the checks themselves see every operation the client uses (none is skipped as unknown)
    for call in emulator.calls:
        assert contract().operation_id(call.method, call.path) == call.operation


IMPORT_FLAGS = dict.fromkeys(ImportOptions().to_query(None), "false")


def _import(emulator: ChartHopEmulator, query: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{emulator.base_url}/v1/org/{emulator.config.org_id}/import/csv/data",
        params=query,
        files={"file": ("roster.csv", ROSTER, "text/csv")},
        headers=_auth(emulator),
        timeout=5,
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown query parameter", "unknown query parameter 'pageSize'"),
        ("wrong method", "DELETE is not an operation"),
        ("status outside the enum", "'FINISHED' is not one of"),
        ("statuses filter outside its enum", "'FINISHED' is not one of"),
        ("missing required import flag", "Missing required query parameter: upsert"),
        ("import flag not a boolean", "skipErrors"),
        ("createProcess without required fields", "'runUserId' is a required property"),
    ],
)
def test_requests_outside_the_spec_are_refused(emulator: ChartHopEmulator, case: str, reason: str) -> None:
    org = emulator.config.org_id
    sync_id = emulator.create_sync_process()["id"]
    base = f"{emulator.base_url}/v1/org/{org}"
    auth = _auth(emulator)
    if case == "unknown query parameter":
        response = requests.get(f"{base}/process", params={"pageSize": "5"}, headers=auth, timeout=5)
    elif case == "wrong method":
        response = requests.delete(f"{base}/process/{sync_id}", headers=auth, timeout=5)
    elif case == "status outside the enum":
        response = requests.patch(f"{base}/process/{sync_id}", json={"status": "FINISHED"}, headers=auth, timeout=5)
    elif case == "statuses filter outside its enum":
        response = requests.get(f"{base}/process", params={"statuses": "RUNNING,FINISHED"}, headers=auth, timeout=5)
    elif case == "missing required import flag":
        response = _import(emulator, {k: v for k, v in IMPORT_FLAGS.items() if k != "upsert"})
    elif case == "import flag not a boolean":
        response = _import(emulator, {**IMPORT_FLAGS, "skipErrors": "maybe"})
    else:
        response = requests.post(f"{base}/process", json={"label": "x", "orgId": org}, headers=auth, timeout=5)
    assert response.status_code == 400
    assert reason in response.json()["message"]
    [refused] = emulator.refused_requests
    assert any(reason in text for text in refused.reasons)
    assert emulator.processes[sync_id]["status"] == "PENDING", "a refused request changed nothing"
    assert emulator.uploads == []


@pytest.mark.parametrize("content_type", [None, "text/plain"], ids=["no Content-Type", "text/plain"])
def test_a_json_body_without_the_json_media_type_is_refused_with_415(
    emulator: ChartHopEmulator, content_type: str | None
) -> None:
    """updateProcess's requestBody has only `application/json` content (process spec, PATCH
    /v1/org/{orgId}/process/{processId}): a body sent without that media type is not that request, and a JAX-RS
    API answers 415 (assumed, api_assumptions). (Review finding: the emulator took a missing Content-Type as
    application/json and applied the update.)"""
    sync_id = emulator.create_sync_process()["id"]
    url = f"{emulator.base_url}/v1/org/{emulator.config.org_id}/process/{sync_id}"
    headers = _auth(emulator) | ({"Content-Type": content_type} if content_type else {})
    prepared = requests.Request("PATCH", url, data=json.dumps({"status": "DONE"}), headers=headers).prepare()
    assert prepared.headers.get("Content-Type") == content_type
    response = requests.Session().send(prepared, timeout=5)
    assert response.status_code == assumed.CHARTHOP_UNSUPPORTED_MEDIA_TYPE_STATUS, "a body of no JSON media type"
    assert "updateProcess takes a body of application/json" in response.json()["message"]
    assert emulator.processes[sync_id]["status"] == "PENDING"
    [refused] = emulator.refused_requests
    assert refused.method == "PATCH"


def test_the_validator_flags_the_same_requests_directly() -> None:
    spec = contract()
    path = "/v1/org/acme/process"
    assert spec.check_request("GET", path, {"limit": "5", "from": "x", "statuses": "DONE_WITH_ERRORS"}) == []
    assert spec.check_request("GET", path, {"pageSize": "5"}) != []
    assert spec.check_request("GET", path, {"limit": "five"}) != []
    assert spec.check_request("PUT", f"{path}/abc", body=b"{}") != []
    assert spec.check_request("PATCH", f"{path}/abc", body=json.dumps({"status": "DONE"}).encode()) == []
    assert spec.check_request("PATCH", f"{path}/abc", body=json.dumps({"status": "done"}).encode()) != []
    done = json.dumps({"status": "DONE"}).encode()
    assert spec.check_request("PATCH", f"{path}/abc", body=done, content_type="application/json; charset=utf-8") == []
    assert spec.check_request("PATCH", f"{path}/abc", body=done, content_type="") != []  # no media type: not JSON


def test_an_emulator_answer_outside_the_spec_is_caught(
    emulator: ChartHopEmulator, client: ChartHopClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A getProcess answer without the Process's required `createAt` and with a status outside its enum."""
    sync_id = emulator.create_sync_process()["id"]
    del emulator.processes[sync_id]["createAt"]
    emulator.processes[sync_id]["status"] = "FINISHED"
    client.get_process(emulator.config.org_id, sync_id)  # the client itself reads it
    [violation] = emulator.contract_violations
    assert violation.side == "response"
    assert any("'createAt' is a required property" in reason for reason in violation.reasons)
    assert any("'FINISHED' is not one of" in reason for reason in violation.reasons)
    # the test suite's fixture (tests/conftest.py) fails any test that leaves such a violation behind
    assert drain_contract_violations() == [violation]


def test_an_undocumented_status_is_caught_unless_it_is_an_assumption() -> None:
    spec = contract()
    path = "/v1/org/acme/process/abc"
    assert spec.check_response("GET", path, assumed.CHARTHOP_NOT_FOUND_STATUS, b"{}") == []
    assert spec.check_response("GET", path, 503, b"") == []
    assert spec.check_response("GET", path, 418, b"{}") != []


def test_a_missing_process_is_an_assumed_404_not_a_violation(
    emulator: ChartHopEmulator, client: ChartHopClient
) -> None:
    with pytest.raises(ChartHopRejected):
        client.get_process(emulator.config.org_id, "000000000000000000000000")
    assert emulator.contract_violations == []


# --- webhook deliveries ------------------------------------------------------------------------------


def test_the_emulators_delivery_is_an_event(emulator: ChartHopEmulator) -> None:
    press = emulator.sync_now_event(emulator.create_sync_process())
    assert contract().check_event(press) == []
    assert assumed.is_sync_now_event(press, emulator.config.app_name)


def test_the_sample_delivery_is_an_event() -> None:
    """events/webhook_sync_now.json (for `sam local invoke`) is spelled as the Event schema says."""
    event = json.loads(json.loads((SPEC_DIR.parents[1] / "events" / "webhook_sync_now.json").read_text())["body"])
    assert contract().check_event(event) == []
    assert assumed.is_sync_now_event(event, "people-sync")


def test_the_old_delivery_spelling_is_not_an_event() -> None:
    """The check bites: `type` "process.create.<app>" is no Event type, and a null `subtype` is no string
    (the spelling the sample delivery had before the contract was checked; the webhook still accepts it)."""
    event = json.loads(json.loads((SPEC_DIR.parents[1] / "events" / "webhook_sync_now.json").read_text())["body"])
    event = {key: value for key, value in event.items() if key not in ("code", "processId")}
    event.update(type="process.create.people-sync", subtype=None)
    assert assumed.is_sync_now_event(event, "people-sync")
    reasons = contract().check_event(event)
    assert any(reason.startswith("Event.type:") for reason in reasons)
    assert any(reason.startswith("Event.subtype:") for reason in reasons)


def test_every_field_the_webhook_reads_is_in_the_event_schema_or_the_delivery_envelope() -> None:
    spec = contract()
    event_fields = spec.event_fields()
    envelope = spec.envelope_fields()  # lowercase names in the webhook summary
    read = {field.alias or name for name, field in ChartHopEvent.model_fields.items()}
    # what is_sync_now_event and own_process_echo read besides the model's fields
    read |= {"payload"}
    outside = {f for f in read if f not in event_fields and f.lower() not in envelope}
    assert outside == set()
    # the spellings of the event's kind: the Event schema's enums hold the values the webhook accepts
    assert "CREATE" in spec.event_enum("type")
    assert "PROCESS" in spec.event_enum("entityType")
    # fields only the envelope names (not the Event schema): appId and appName
    assert {f for f in read if f not in event_fields} == {"appId", "appName"}


def test_echoes_are_events_too(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    parent = emulator.create_sync_process()
    child = client.import_csv(
        emulator.config.org_id,
        lambda: (io.BytesIO(ROSTER), len(ROSTER)),
        file_name="roster.csv",
        options=ImportOptions(),
        parent_process_id=parent["id"],
    )
    echo = emulator.sync_now_event(emulator.process(child.id))
    assert contract().check_event(echo) == []
    assert assumed.own_process_echo(echo["payload"], emulator.config.app_name) is not None


# --- App API: getAccessToken (an org's fresh token, issue 13) -------------------------------------------------


def test_get_access_token_follows_the_contract_and_its_token_expires() -> None:
    """The developer org's token asks for another org's install token: AccessTokenResponse (access_token,
    expires_in); the token works in that org until `expires_in` has passed, then ChartHop answers 401."""
    from people_sync.charthop_apps import ChartHopApps
    from tests.fakes import FakeClock

    clock = FakeClock()
    with ChartHopEmulator(EmulatorConfig(minted_token_seconds=600), clock=clock) as emulator:
        other = emulator.add_org("org-beta", token="beta-token")
        developer = ChartHopClient(emulator.config.token, base_url=emulator.base_url, retry=default_retry(total=0))
        answer = ChartHopApps(developer).access_token("org-beta", other.app_user_id)
        assert answer.expires_in == 600
        fresh = answer.access_token.get_secret_value()
        assert emulator.issued_tokens("org-beta") == [fresh]
        beta = ChartHopClient(fresh, base_url=emulator.base_url, retry=default_retry(total=0))
        process = emulator.create_sync_process(org_id="org-beta")
        assert beta.get_process("org-beta", process["id"]).id == process["id"]
        clock.advance(600)
        with pytest.raises(ChartHopRejected) as refused:
            beta.get_process("org-beta", process["id"])
        assert refused.value.status == 401

        assert emulator.refused_requests == []
        assert emulator.contract_violations == []
        [asked] = emulator.calls_of("getAccessToken")
        assert (asked.org, asked.authorization, asked.status) == ("org-beta", f"Bearer {emulator.config.token}", 200)
        assert contract().operation_id(asked.method, asked.path) == "getAccessToken"


def test_only_the_developer_org_gets_tokens_and_only_for_installs_that_can_have_one() -> None:
    from people_sync.charthop_apps import ChartHopApps

    with ChartHopEmulator(EmulatorConfig()) as emulator:
        beta = emulator.add_org("org-beta", token="beta-token")
        gamma = emulator.add_org("org-gamma", token="gamma-token")
        as_beta = ChartHopApps(ChartHopClient("beta-token", base_url=emulator.base_url, retry=default_retry(total=0)))
        with pytest.raises(ChartHopRejected) as refused:
            as_beta.access_token("org-gamma", gamma.app_user_id)  # an installing org may not read another's
        assert refused.value.status == 403
        developer = ChartHopApps(
            ChartHopClient(emulator.config.token, base_url=emulator.base_url, retry=default_retry(total=0))
        )
        with pytest.raises(ChartHopRejected) as unknown:
            developer.access_token("org-beta", "000000000000000000000000")  # not the org's app user
        assert unknown.value.status == 404
        emulator.revoke_token("org-beta", mintable=False)
        with pytest.raises(ChartHopRejected) as gone:
            developer.access_token("org-beta", beta.app_user_id)
        assert gone.value.status == 404
        assert emulator.contract_violations == []


def test_the_validator_knows_get_access_token() -> None:
    spec = contract()
    path = "/v1/app/org/acme/install/64b0c0ffee64b0c0ffee0002/token"
    assert spec.operation_id("GET", path) == "getAccessToken"
    assert spec.check_request("GET", path) == []
    assert spec.check_request("GET", path, {"scope": "admin"}) != []  # getAccessToken takes no query parameters
    answer = json.dumps({"access_token": "t", "expires_in": 60, "token_type": "bearer"}).encode()
    assert spec.check_response("GET", path, 200, answer) == []
    assert spec.check_response("GET", path, 200, json.dumps({"access_token": "t"}).encode()) != []


# --- App API: getActiveAppInstalls and getInstalledApp (the admin tool's reads) --------------------------------


def test_active_installs_requests_follow_the_app_api_but_for_the_assumed_from() -> None:
    """getActiveAppInstalls (GET /v1/app/install/{appId}) has query parameters orgTypes, hasRunProcess and
    internalOptions only; the client's `from=<next>` is the one named allowance
    (api_assumptions.CHARTHOP_ASSUMED_QUERY_PARAMETERS). (Review finding: the stand-in took `from` unchecked.)"""
    from urllib.parse import parse_qsl, urlsplit

    from people_sync.charthop_apps import ChartHopApps
    from tests.app_installs_server import APP_ID, DEVELOPER_TOKEN, AppInstallsServer, Install

    installs = [Install(f"org-{n}", f"user-{n}", f"token-{n}") for n in "abc"]
    sent: list[requests.PreparedRequest] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *args, **kwargs: sent.append(response.request))
    with AppInstallsServer(installs) as server:
        client = ChartHopClient(DEVELOPER_TOKEN, base_url=server.base_url, session=session, retry=default_retry(0))
        assert len(list(ChartHopApps(client).active_installs(APP_ID))) == 3
        assert server.refused_requests == []
        assert server.contract_violations == []
    spec = contract()
    allowed: list[str] = []
    strict: list[str] = []
    for request in sent:
        url = urlsplit(str(request.url))
        allowed += spec.check_request(str(request.method), url.path, parse_qsl(url.query), allow_assumed=True)
        strict += spec.check_request(str(request.method), url.path, parse_qsl(url.query))
    assert allowed == []
    assert strict == ["unknown query parameter 'from' (not a parameter of getActiveAppInstalls)"]
    assert {"getActiveAppInstalls": frozenset({"from"})} == assumed.CHARTHOP_ASSUMED_QUERY_PARAMETERS


def test_the_app_installs_stand_in_refuses_what_the_app_api_does_not_define() -> None:
    from tests.app_installs_server import APP_ID, DEVELOPER_TOKEN, AppInstallsServer

    with AppInstallsServer([]) as server:
        answer = requests.get(
            f"{server.base_url}/v1/app/install/{APP_ID}",
            params={"limit": "5"},  # findProcesses pages with limit; getActiveAppInstalls has none
            headers={"Authorization": f"Bearer {DEVELOPER_TOKEN}"},
            timeout=5,
        )
        assert answer.status_code == 400
        [refused] = server.refused_requests
        assert "unknown query parameter 'limit'" in refused.reasons[0]


def test_the_app_installs_stand_in_answers_users_as_the_app_api_defines_them() -> None:
    """App API User requires `name`, and Name requires `last`. (Review finding: the stand-in's getInstalledApp and
    getActiveAppInstalls answers carried `{"first": ...}` only.)"""
    from tests.app_installs_server import Install

    user = Install("org-a", "user-a", "t").user()
    assert contract().check_response("GET", "/v1/app/org/org-a/install/user-a", 200, json.dumps(user).encode()) == []
    listing = json.dumps({"data": [user], "next": "2"}).encode()
    assert contract().check_response("GET", "/v1/app/install/any-app", 200, listing) == []
