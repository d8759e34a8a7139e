"""One context manager that brings up everything offline: emulator, moto stack, handlers, API shim."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from moto import mock_aws

from offline.apigw_shim import ApiGatewayShim
from offline.aws_stack import OfflineStack
from offline.charthop_emulator import ChartHopEmulator, EmulatorConfig, ImportBehaviour, OrgAccount
from offline.elma365_emulator import Elma365Emulator
from offline.lambda_runtime import InProcessLambdaRuntime
from offline.moto_workarounds import moto_workarounds
from offline.orgvue_emulator import OrgvueEmulator

TERMINAL = ("DONE", "ERROR")
#: The webhook secret of the offline stack (in AWS the stack generates it).
WEBHOOK_TOKEN = "offline-webhook-token-0123456789abcdef"  # noqa: S105 - a test value


@dataclass
class Offline:
    emulator: ChartHopEmulator
    stack: OfflineStack
    runtime: InProcessLambdaRuntime
    api: ApiGatewayShim
    #: The further targets' emulators (offline_environment(further_targets=True)).
    orgvue: OrgvueEmulator | None = None
    elma365: Elma365Emulator | None = None

    @property
    def org_id(self) -> str:
        return self.emulator.config.org_id

    @property
    def bucket(self) -> str:
        return self.stack.bucket()

    @property
    def webhook_url(self) -> str:
        """The webhook without its token (what a stranger would call)."""
        return f"{self.api.base_url}/webhook"

    @property
    def authorised_webhook_url(self) -> str:
        """The webhook URL as configured in ChartHop, token included."""
        return f"{self.webhook_url}?token={WEBHOOK_TOKEN}"

    def add_org(
        self, org_id: str, *, token: str | None = None, state: str = "active", charthop_token: str | None = None
    ) -> OrgAccount:
        """Another org installs the app: the emulator serves it (its own token and app user) and the operator
        registers it with the admin tool's onboarding (the org's entry, its token in a secret of its own),
        then sets its state ("active", "paused", "uninstalled"). `token` is what the org's secret holds (a
        wrong one to test a bad token); `charthop_token` what ChartHop accepts (default: a fresh one)."""
        from people_sync.org_registry import OrgState
        from tools.people_sync_admin.onboarding import Onboarding
        from tools.people_sync_admin.stack import Deployment, from_offline_stack

        account = self.emulator.add_org(org_id, token=charthop_token or f"token-of-{org_id}-{uuid.uuid4().hex[:8]}")
        onboarding = Onboarding(Deployment(from_offline_stack(self.stack), boto3.Session()))
        onboarding.add(org_id, account.app_user_id, token=account.token if token is None else token)
        if state != "active":
            onboarding.set_state(org_id, OrgState(state))
        return account

    def staged_key(self, file_name: str, folder: str | None = None) -> str:
        return f"{self.stack.parameters['StagingPrefix']}{folder or self.org_id}/{file_name}"

    def stage(self, file_name: str, body: bytes, folder: str | None = None) -> str:
        """Uploads a file to the staging prefix (ChartHop's folder, or e.g. "orgvue"), as an HRIS export would."""
        return self.put(self.staged_key(file_name, folder), body)

    def execution_for_file(self, target: str, timeout: float = 30.0) -> dict[str, Any]:
        """The newest status loop of a sync into `target` (its executions are named sync-<target>-...)."""
        sfn = boto3.client("stepfunctions", region_name=self.stack.region)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            executions = sfn.list_executions(stateMachineArn=self.stack.state_machine_arn())["executions"]
            mine = [e for e in executions if e["name"].startswith(f"sync-{target}-")]
            if mine:
                return dict(max(mine, key=lambda e: e["startDate"]))
            time.sleep(0.05)
        raise TimeoutError(f"no status loop started for {target}")

    def wait_for_execution(self, execution_arn: str, timeout: float = 60.0) -> dict[str, Any]:
        sfn = boto3.client("stepfunctions", region_name=self.stack.region)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            execution = sfn.describe_execution(executionArn=execution_arn)
            if execution["status"] != "RUNNING":
                return dict(execution)
            time.sleep(0.05)
        raise TimeoutError(f"{execution_arn} still running")

    def put(self, key: str, body: bytes) -> str:
        boto3.client("s3", region_name=self.stack.region).put_object(Bucket=self.bucket, Key=key, Body=body)
        return key

    def staged_keys(self) -> list[str]:
        """Keys currently staged (current versions under the staging prefix)."""
        s3 = boto3.client("s3", region_name=self.stack.region)
        listing = s3.list_objects_v2(Bucket=self.bucket, Prefix=self.stack.parameters["StagingPrefix"])
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def read(self, key: str) -> bytes:
        s3 = boto3.client("s3", region_name=self.stack.region)
        body: bytes = s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def failed_reports(self) -> list[dict[str, Any]]:
        """The JSON reports written beside files moved to failed/, oldest first."""
        s3 = boto3.client("s3", region_name=self.stack.region)
        listing = s3.list_objects_v2(Bucket=self.bucket, Prefix="failed/")
        keys = sorted(item["Key"] for item in listing.get("Contents", []) if item["Key"].endswith(".report.json"))
        return [json.loads(s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()) for key in keys]

    def wait_for_process(self, process_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Waits until ChartHop shows the process DONE or ERROR (and nothing is left running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.emulator.process(process_id)
            if process["status"] in TERMINAL and not self.execution_running(process_id):
                return process
            time.sleep(0.05)
        raise TimeoutError(f"process {process_id} did not finish: {self.emulator.process(process_id)}")

    def sync_processes(self) -> list[dict[str, Any]]:
        return [p for p in self.emulator.processes.values() if p["type"] != "import"]

    def sync_processes_of(self, org_id: str) -> list[dict[str, Any]]:
        """One org's sync processes (what that org's admins see in ChartHop)."""
        return [p for p in self.emulator.processes_of(org_id) if p["type"] != "import"]

    def wait_for_new_sync(self, known: set[str], timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.sync_processes():
                if process["id"] not in known:
                    return process
            time.sleep(0.05)
        raise TimeoutError("no sync process appeared in ChartHop")

    def execution(self, sync_id: str) -> dict[str, Any] | None:
        sfn = boto3.client("stepfunctions", region_name=self.stack.region)
        arn = self.stack.state_machine_arn().replace(":stateMachine:", ":execution:") + f":sync-{sync_id}"
        try:
            result: dict[str, Any] = sfn.describe_execution(executionArn=arn)  # type: ignore[assignment]
            return result
        except sfn.exceptions.ExecutionDoesNotExist:
            return None

    def stop_status_loops(self, settle_seconds: float = 1.5) -> None:
        """Stops executions still running, and lets their threads notice before the mock goes away."""
        sfn = boto3.client("stepfunctions", region_name=self.stack.region)
        running = sfn.list_executions(stateMachineArn=self.stack.state_machine_arn(), statusFilter="RUNNING")
        for execution in running["executions"]:
            self.stop_execution(execution["executionArn"])
        if running["executions"]:
            time.sleep(settle_seconds)  # a Wait state in progress finishes its (test-sized) wait first
        self.runtime.wait_idle()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Waits until the triggers have run and every sync's start (its loop's first task, which checks
        and uploads the file) is over: what the import starter alone did before the loop owned the start."""
        deadline = time.monotonic() + timeout
        sfn = boto3.client("stepfunctions", region_name=self.stack.region)
        while True:
            self.runtime.wait_idle(max(0.1, deadline - time.monotonic()))
            executions = sfn.list_executions(stateMachineArn=self.stack.state_machine_arn())["executions"]
            starting = [e for e in executions if e["status"] == "RUNNING" and not self._past_start(sfn, e)]
            if not starting:
                self.runtime.wait_idle(max(0.1, deadline - time.monotonic()))
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(starting)} sync start(s) did not finish")
            time.sleep(0.05)

    @staticmethod
    def _past_start(sfn: Any, execution: Any) -> bool:
        events = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
        return any(event.get("stateEnteredEventDetails", {}).get("name") == "FollowImport" for event in events)

    def stop_execution(self, execution_arn: str, timeout: float = 10.0) -> None:
        """Stops an execution once it has entered its first state: moto fails a stop that arrives before
        its worker thread has set the execution up (AttributeError in moto; Step Functions has no such window)."""
        sfn = boto3.client("stepfunctions", region_name=self.stack.region)
        deadline = time.monotonic() + timeout
        while not any(
            event["type"].endswith("StateEntered")
            for event in sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} entered no state within {timeout} s")
            time.sleep(0.02)
        sfn.stop_execution(executionArn=execution_arn)

    def execution_status(self, sync_id: str) -> str | None:
        execution = self.execution(sync_id)
        return None if execution is None else str(execution["status"])

    def execution_running(self, sync_id: str) -> bool:
        return self.execution_status(sync_id) == "RUNNING"

    def execution_history(self, sync_id: str) -> list[dict[str, Any]]:
        execution = self.execution(sync_id)
        if execution is None:
            return []
        sfn = boto3.client("stepfunctions", region_name=self.stack.region)
        events: list[dict[str, Any]] = sfn.get_execution_history(  # type: ignore[assignment]
            executionArn=execution["executionArn"], maxResults=1000
        )["events"]
        return events

    def progress_values(self, process_id: str) -> list[float]:
        return [u["progress"] for u in self.emulator.updates_for(process_id) if "progress" in u]

    def final_update(self, process_id: str) -> dict[str, Any]:
        return [u for u in self.emulator.updates_for(process_id) if u.get("status") in TERMINAL][-1]

    def dump(self, process_id: str) -> str:
        return json.dumps(self.emulator.updates_for(process_id), indent=2)

    def sync_table_items(self) -> list[dict[str, Any]]:
        """Every item of the sync table (slots, Sync Now slots, loop memory), as DynamoDB returns them."""
        ddb = boto3.client("dynamodb", region_name=self.stack.region)
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.stack.physical["SyncTable"]}
        while True:
            page = ddb.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def redrive_failed_events(self) -> dict[str, Any]:
        """Runs the failed-events redriver once, as its 5-minute schedule does in AWS (moto runs no schedules)."""
        answer = boto3.client("lambda", region_name=self.stack.region).invoke(
            FunctionName=self.stack.function("EventRedriverFunction").name,
            InvocationType="RequestResponse",
            Payload=b"{}",
        )
        result: dict[str, Any] = json.loads(answer["Payload"].read() or b"{}")
        return result

    def failed_events(self) -> int:
        """Messages in the failed-events queue (visible or being redriven)."""
        url = self.stack.queue_url_for_arn(str(self.stack.resolve({"Fn::GetAtt": ["FailedEventsQueue", "Arn"]})))
        attributes = boto3.client("sqs", region_name=self.stack.region).get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def deliver_execution_end(self, execution_arn: str) -> None:
        """Hands an execution that ended FAILED, TIMED_OUT or ABORTED to the finalizer, as the template's
        EventBridge rule does in AWS (moto emits no such events); asynchronously, as EventBridge invokes."""
        sfn = boto3.client("stepfunctions", region_name=self.stack.region)
        execution = sfn.describe_execution(executionArn=execution_arn)
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "region": self.stack.region,
            "resources": [execution_arn],
            "detail": {
                "executionArn": execution_arn,
                "stateMachineArn": execution["stateMachineArn"],
                "name": execution["name"],
                "status": execution["status"],
                "input": execution["input"],
                "output": None,
            },
        }
        boto3.client("lambda", region_name=self.stack.region).invoke(
            FunctionName=self.stack.function("SyncFinalizerFunction").name,
            InvocationType="Event",
            Payload=json.dumps(event).encode(),
        )


@contextmanager
def offline_environment(
    *,
    import_behaviour: ImportBehaviour | None = None,
    poll_initial_seconds: int = 1,
    poll_max_seconds: int = 1,
    import_timeout_seconds: int = 120,
    import_on_upload: bool = True,
    queue_settle_seconds: float = 1.0,
    parameters: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
    further_targets: bool = False,
    echo_process_events: bool = True,
    execute_state_machine: bool = True,
    emulator_clock: Callable[[], float] | None = None,
) -> Iterator[Offline]:
    """Everything the app talks to, on loopback and in moto; nothing leaves the machine.

    With `further_targets`, Orgvue and ELMA365 emulators run too and the stack routes staging/orgvue/
    and staging/elma365/ to them. With `echo_process_events` (the default) the ChartHop emulator delivers
    `process.create.<app>` for every process the app creates, as ChartHop may: the app must ignore those.
    Without `execute_state_machine`, moto only records the status loops started (a driver of its own steps
    them: bench/simulated_clock.py); `emulator_clock` is the clock ChartHop's emulator runs its imports and
    records its calls on (default: time.monotonic). Waits are test-sized: QueueSettleSeconds is
    `queue_settle_seconds` (1 s; 2 s deployed)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log lines from the local servers
    with ExitStack() as servers:
        emulator = servers.enter_context(
            ChartHopEmulator(
                EmulatorConfig(echo_process_events=echo_process_events), clock=emulator_clock or time.monotonic
            )
        )
        if import_behaviour is not None:
            emulator.import_behaviour = import_behaviour
        orgvue = servers.enter_context(OrgvueEmulator()) if further_targets else None
        elma365 = servers.enter_context(Elma365Emulator()) if further_targets else None
        target_parameters: dict[str, str] = {}
        target_tokens: dict[str, str] = {}
        if orgvue is not None and elma365 is not None:
            [(namespace, code)] = elma365.config.apps[:1]
            target_parameters = {
                "OrgvueBaseUrl": orgvue.base_url,
                "OrgvueTenantId": orgvue.config.tenant_id,
                "OrgvueDatasetId": orgvue.config.dataset_id,
                "Elma365BaseUrl": elma365.base_url,
                "Elma365Namespace": namespace,
                "Elma365Code": code,
            }
            target_tokens = {"orgvue": orgvue.config.token, "elma365": elma365.config.token}
        with mock_aws(config={"stepfunctions": {"execute_state_machine": execute_state_machine}}), moto_workarounds():
            stack = OfflineStack(
                # a fresh name each time: a status loop left over from an earlier run cannot reach these functions
                stack_name=f"people-sync-{uuid.uuid4().hex[:6]}",
                parameters={
                    "ChartHopOrgId": emulator.config.org_id,
                    "ChartHopAppName": emulator.config.app_name,
                    "ChartHopAppUserId": emulator.config.app_user_id,
                    "ChartHopAppId": emulator.config.app_id,
                    "ChartHopBaseUrl": emulator.base_url,
                    "PollInitialSeconds": str(poll_initial_seconds),
                    "PollMaxSeconds": str(poll_max_seconds),
                    "ImportTimeoutSeconds": str(import_timeout_seconds),
                    "ImportOnUpload": "true" if import_on_upload else "false",
                    "QueueSettleSeconds": str(queue_settle_seconds),
                    **target_parameters,
                    **(parameters or {}),
                },
                secret_values={
                    "ChartHopApiTokenSecret": emulator.config.token,
                    "WebhookTokenSecret": WEBHOOK_TOKEN,
                    "TargetTokensSecret": json.dumps(target_tokens),
                    "CallbackSigningSecret": "offline-callback-signing-key",
                },
            ).deploy()
            with ApiGatewayShim(stack) as api:
                env = {
                    "CHARTHOP_RETRY_BACKOFF_SECONDS": "0.01",
                    "CHARTHOP_READ_TIMEOUT_SECONDS": "2",
                    "QUEUE_WAIT_SECONDS": "1",  # a queued start asks again every second (5 s deployed)
                    # Lambda retries a failed trigger after a minute, the offline runtime after a second:
                    # a dead trigger's "in progress" record (45 s deployed) runs out before that here too
                    "TRIGGER_IN_PROGRESS_SECONDS": "0.8",
                    # in AWS the stack names the callback API's URL; offline it is the shim's
                    "TARGET_CALLBACK_URL": f"{api.base_url}/callback/orgvue",
                    **(extra_env or {}),
                }
                with InProcessLambdaRuntime(stack, extra_env=env) as runtime:
                    offline = Offline(emulator, stack, runtime, api, orgvue, elma365)
                    emulator.config.webhook_url = offline.authorised_webhook_url
                    try:
                        yield offline
                    finally:
                        offline.stop_status_loops()
