"""The emulator must refuse what ChartHop refuses, or tests against it prove nothing."""

from __future__ import annotations

import requests

from offline.charthop_emulator import ChartHopEmulator, EmulatorConfig, ImportBehaviour

FLAGS = {
    "skipErrors": "true",
    "upsert": "true",
    "createGroups": "false",
    "disableSyncHireDate": "false",
    "disableOverwritePerson": "false",
    "importDryRun": "false",
}
CSV = b"Employee ID,First Name\nE1,Ada\nE2,Grace\n"


def _auth(emulator: ChartHopEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator.config.token}"}


def _import(emulator: ChartHopEmulator, params: dict[str, str], body: bytes = CSV) -> requests.Response:
    return requests.post(
        f"{emulator.base_url}/v1/org/{emulator.config.org_id}/import/csv/data",
        params=params,
        files={"file": ("roster.csv", body, "text/csv")},
        headers=_auth(emulator),
        timeout=5,
    )


def test_missing_or_wrong_bearer_token_is_401(emulator: ChartHopEmulator) -> None:
    process = emulator.create_sync_process()
    url = f"{emulator.base_url}/v1/org/{emulator.config.org_id}/process/{process['id']}"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    assert requests.get(url, headers=_auth(emulator), timeout=5).status_code == 200


def test_other_org_is_403(emulator: ChartHopEmulator) -> None:
    url = f"{emulator.base_url}/v1/org/someone-else/process"
    assert requests.get(url, headers=_auth(emulator), timeout=5).status_code == 403


def test_import_requires_every_required_boolean(emulator: ChartHopEmulator) -> None:
    for missing in FLAGS:
        params = {key: value for key, value in FLAGS.items() if key != missing}
        response = _import(emulator, params)
        assert response.status_code == 400
        assert missing in response.json()["message"]
    assert _import(emulator, {**FLAGS, "upsert": "yes"}).status_code == 400
    assert _import(emulator, FLAGS).status_code == 200


def test_import_requires_multipart_file_part(emulator: ChartHopEmulator) -> None:
    response = requests.post(
        f"{emulator.base_url}/v1/org/{emulator.config.org_id}/import/csv/data",
        params=FLAGS,
        files={"data": ("roster.csv", CSV, "text/csv")},
        headers=_auth(emulator),
        timeout=5,
    )
    assert response.status_code == 400
    assert "'file'" in response.json()["message"]


def test_import_rejects_unknown_parent_and_empty_file(emulator: ChartHopEmulator) -> None:
    assert _import(emulator, {**FLAGS, "parentProcessId": "000000000000000000000000"}).status_code == 400
    assert _import(emulator, FLAGS, body=b"").status_code == 400


def test_update_process_validates_status_and_progress(emulator: ChartHopEmulator) -> None:
    process = emulator.create_sync_process()
    url = f"{emulator.base_url}/v1/org/{emulator.config.org_id}/process/{process['id']}"
    assert requests.patch(url, json={"status": "FINISHED"}, headers=_auth(emulator), timeout=5).status_code == 400
    assert requests.patch(url, json={"progress": 1.5}, headers=_auth(emulator), timeout=5).status_code == 400
    assert requests.patch(url, json={"progress": "half"}, headers=_auth(emulator), timeout=5).status_code == 400
    ok = requests.patch(
        url, json={"status": "RUNNING", "progress": 0.5, "message": "half way"}, headers=_auth(emulator), timeout=5
    )
    assert ok.status_code == 200
    assert emulator.updates_for(process["id"]) == [{"status": "RUNNING", "progress": 0.5, "message": "half way"}]
    assert emulator.process(process["id"])["progress"] == 0.5


def test_create_process_requires_spec_fields(emulator: ChartHopEmulator) -> None:
    url = f"{emulator.base_url}/v1/org/{emulator.config.org_id}/process"
    body = {
        "orgId": emulator.config.org_id,
        "label": "x",
        "type": "sync",
        "status": "PENDING",
        "runUserId": emulator.config.app_user_id,
        "options": {},
    }
    for missing in ("label", "runUserId", "options"):
        partial = {key: value for key, value in body.items() if key != missing}
        assert requests.post(url, json=partial, headers=_auth(emulator), timeout=5).status_code == 400
    created = requests.post(url, json=body, headers=_auth(emulator), timeout=5)
    assert created.status_code == 201
    assert created.json()["status"] == "PENDING"


def test_unknown_process_is_404(emulator: ChartHopEmulator) -> None:
    url = f"{emulator.base_url}/v1/org/{emulator.config.org_id}/process/ffffffffffffffffffffffff"
    assert requests.get(url, headers=_auth(emulator), timeout=5).status_code == 404


def test_import_advances_with_the_emulator_clock() -> None:
    now = [100.0]
    with ChartHopEmulator(clock=lambda: now[0]) as emulator:
        emulator.import_behaviour = ImportBehaviour(duration_s=10)
        process = _import(emulator, FLAGS).json()
        assert emulator.process(process["id"])["status"] == "PENDING"
        now[0] += 5
        halfway = emulator.process(process["id"])
        assert (halfway["status"], halfway["progress"]) == ("RUNNING", 0.5)
        now[0] += 5
        done = emulator.process(process["id"])
        assert done["status"] == "DONE"
        assert done["results"] == {"rows": 2, "created": 2, "updated": 0, "errors": 0}


def test_ragged_rows_fail_the_import_unless_skip_errors(emulator: ChartHopEmulator) -> None:
    emulator.import_behaviour = ImportBehaviour(duration_s=0)
    ragged = b"Employee ID,First Name\nE1,Ada\nE2,Grace,extra\n"
    strict = _import(emulator, {**FLAGS, "skipErrors": "false"}, body=ragged).json()
    assert emulator.process(strict["id"])["status"] == "ERROR"
    lenient = _import(emulator, FLAGS, body=ragged).json()
    done = emulator.process(lenient["id"])
    assert done["status"] == "DONE"
    assert done["results"]["errors"] == 1


def test_find_processes_filters_by_parent(emulator: ChartHopEmulator) -> None:
    parent = emulator.create_sync_process()
    child = _import(emulator, {**FLAGS, "parentProcessId": parent["id"]}).json()
    _import(emulator, FLAGS)
    found = requests.get(
        f"{emulator.base_url}/v1/org/{emulator.config.org_id}/process",
        params={"parentProcessId": parent["id"]},
        headers=_auth(emulator),
        timeout=5,
    ).json()
    assert [process["id"] for process in found["data"]] == [child["id"]]


def _find(emulator: ChartHopEmulator, **params: str) -> requests.Response:
    return requests.get(
        f"{emulator.base_url}/v1/org/{emulator.config.org_id}/process",
        params=params,
        headers=_auth(emulator),
        timeout=5,
    )


def test_find_processes_pages_with_limit_next_and_from() -> None:
    """findProcesses pages as the spec says: at most `limit` per page, `next` passed back as `from`."""
    with ChartHopEmulator(EmulatorConfig(process_page_size=4)) as emulator:
        made = [emulator.create_sync_process()["id"] for _ in range(10)]
        first = _find(emulator).json()
        assert len(first["data"]) == 4  # the configured page size when `limit` is absent
        assert _find(emulator, limit="100").json()["data"] == first["data"]  # the emulator's cap wins
        assert len(_find(emulator, limit="3").json()["data"]) == 3
        seen, cursor = [p["id"] for p in first["data"]], first["next"]
        while cursor:
            page = _find(emulator, **{"from": cursor}).json()
            seen += [p["id"] for p in page["data"]]
            cursor = page.get("next")
        assert sorted(seen) == sorted(made)
        assert len(seen) == len(set(seen))


def test_find_processes_refuses_a_bad_limit_or_cursor(emulator: ChartHopEmulator) -> None:
    assert _find(emulator, limit="many").status_code == 400
    assert _find(emulator, limit="0").status_code == 400
    assert _find(emulator, **{"from": "no-such-process"}).status_code == 400


def test_find_processes_last_page_has_no_next(emulator: ChartHopEmulator) -> None:
    emulator.create_sync_process()
    assert "next" not in _find(emulator).json()


def test_import_process_type_is_configurable() -> None:
    with ChartHopEmulator(EmulatorConfig(import_process_type="CSV_IMPORT")) as emulator:
        assert _import(emulator, FLAGS).json()["type"] == "CSV_IMPORT"
