"""Which deployment the tool works on: the names of its org table, secrets and settings, read from the
CloudFormation stack (outputs and parameters) with the user's AWS credentials, or taken from the offline
stack (moto) directly."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3

from people_sync.csv_checks import CsvRules
from people_sync.models import ImportOptions
from people_sync.org_registry import FURTHER_TARGETS, Elma365Config, OrgRegistry, OrgvueConfig, StackDefaults

if TYPE_CHECKING:
    from offline.aws_stack import OfflineStack

#: Stack outputs the tool needs (template.yaml); a stack deployed before the org registry has none of them.
REQUIRED_OUTPUTS = ("OrgTableName", "OrgTokenSecretPrefix", "ChartHopApiTokenSecretArn", "SettingsParameterName")
#: Outputs the `syncs`, `failed` and `events` commands use (issue 14); a command needing a missing one says so.
OPERATING_OUTPUTS = ("SyncHistoryTableName", "StagingBucketName", "FailedEventsQueueUrl", "SyncFinalizerFunctionName")
#: A further target is configured when its base URL parameter is set (routing.enabled_targets).
TARGET_URL_PARAMETERS = {"orgvue": "OrgvueBaseUrl", "elma365": "Elma365BaseUrl"}


class StackNotReady(Exception):
    """The stack cannot be used by this tool (missing, or deployed before the org registry)."""


@dataclass(frozen=True)
class StackTarget:
    stack_name: str
    org_table: str
    token_secret_prefix: str
    default_org_id: str
    default_app_user_id: str
    default_token_secret: str
    settings_parameter: str
    charthop_base_url: str
    app_id: str = ""
    further_targets: tuple[str, ...] = ()
    import_on_upload: bool = True
    history_table: str = ""
    bucket: str = ""
    staging_prefix: str = "staging/"
    failed_events_queue: str = ""
    finalizer_function: str = ""
    retention_days: int = 30
    #: The stack's Orgvue and ELMA365 parameters (what an org's `orgvue.*` / `elma365.*` settings override).
    orgvue: OrgvueConfig = field(default_factory=OrgvueConfig)
    elma365: Elma365Config = field(default_factory=Elma365Config)

    def org_secret_name(self, org_id: str, target: str = "charthop") -> str:
        """The secret holding a registered org's ChartHop token, or its API token for a further target (the
        functions may read <prefix>*): <prefix><orgId>/charthop-token, .../orgvue-token, .../elma365-token."""
        return f"{self.token_secret_prefix}{org_id}/{target}-token"

    @classmethod
    def from_parameters(cls, stack_name: str, outputs: Mapping[str, str], parameters: Mapping[str, str]) -> StackTarget:
        missing = [key for key in REQUIRED_OUTPUTS if not outputs.get(key)]
        if missing:
            raise StackNotReady(
                f"stack {stack_name} has no output {', '.join(missing)}: deploy this version of template.yaml first"
            )
        return cls(
            stack_name=stack_name,
            org_table=outputs["OrgTableName"],
            token_secret_prefix=outputs["OrgTokenSecretPrefix"],
            default_org_id=parameters.get("ChartHopOrgId", ""),
            default_app_user_id=parameters.get("ChartHopAppUserId", ""),
            default_token_secret=outputs["ChartHopApiTokenSecretArn"],
            settings_parameter=outputs["SettingsParameterName"],
            charthop_base_url=parameters.get("ChartHopBaseUrl") or "https://api.charthop.com",
            app_id=parameters.get("ChartHopAppId", ""),
            further_targets=tuple(t for t in FURTHER_TARGETS if parameters.get(TARGET_URL_PARAMETERS[t])),
            import_on_upload=parameters.get("ImportOnUpload", "true").lower() == "true",
            history_table=outputs.get("SyncHistoryTableName", ""),
            bucket=outputs.get("StagingBucketName", ""),
            staging_prefix=parameters.get("StagingPrefix") or "staging/",
            failed_events_queue=outputs.get("FailedEventsQueueUrl", ""),
            finalizer_function=outputs.get("SyncFinalizerFunctionName", ""),
            retention_days=int(parameters.get("PersonalDataRetentionDays") or 30),
            orgvue=OrgvueConfig(
                base_url=parameters.get("OrgvueBaseUrl", ""),
                tenant_id=parameters.get("OrgvueTenantId", ""),
                dataset_id=parameters.get("OrgvueDatasetId", ""),
                default_action=parameters.get("OrgvueDefaultAction", ""),
                id_key=parameters.get("OrgvueIdKey", ""),
                date_format=parameters.get("OrgvueDateFormat") or "YYYY-MM-DD",
                implicit_delete=parameters.get("OrgvueImplicitDelete", "false").lower() == "true",
            ),
            elma365=Elma365Config(
                base_url=parameters.get("Elma365BaseUrl", ""),
                namespace=parameters.get("Elma365Namespace", ""),
                code=parameters.get("Elma365Code", ""),
                chunk_rows=int(parameters.get("Elma365ChunkRows") or 50_000),
                directory_id=parameters.get("Elma365DirectoryId", "").strip(),
            ),
        )


def from_cloudformation(stack_name: str, cloudformation: Any) -> StackTarget:
    """The deployed stack's names, from its outputs and parameters (cloudformation:DescribeStacks)."""
    try:
        [stack] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except cloudformation.exceptions.ClientError as exc:
        raise StackNotReady(f"cannot read stack {stack_name}: {exc}") from None
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    return StackTarget.from_parameters(stack_name, outputs, parameters)


def from_offline_stack(stack: OfflineStack) -> StackTarget:
    """The offline stack's names (moto has no CloudFormation outputs for it: the same values, resolved)."""
    outputs = {
        name: str(stack.resolve(spec["Value"]))
        for name, spec in stack.template.get("Outputs", {}).items()
        if name in REQUIRED_OUTPUTS + OPERATING_OUTPUTS
    }
    return StackTarget.from_parameters(stack.stack_name, outputs, stack.parameters)


@dataclass
class Deployment:
    """A stack and the AWS clients to reach it (the user's credentials, or moto's)."""

    target: StackTarget
    session: boto3.Session = field(default_factory=boto3.Session)
    endpoint_url: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            kwargs = {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}
            self._clients[service] = self.session.client(service, **kwargs)  # type: ignore[call-overload]
        return self._clients[service]

    @property
    def registry(self) -> OrgRegistry:
        return OrgRegistry(self.target.org_table, self.client("dynamodb"))

    def stack_defaults(self) -> StackDefaults:
        """The defaults every org inherits: stack parameters and the settings parameter's current value."""
        raw = self.client("ssm").get_parameter(Name=self.target.settings_parameter)["Parameter"]["Value"]
        document = json.loads(raw) if raw else {}
        rules = CsvRules.model_validate(document.get("csvRules", {}))
        return StackDefaults(
            org_id=self.target.default_org_id,
            app_user_id=self.target.default_app_user_id,
            token_secret=self.target.default_token_secret,
            import_options=ImportOptions.model_validate(document.get("importOptions", {})),
            required_columns=tuple(rules.required_columns),
            further_targets=self.target.further_targets,
            import_on_upload=self.target.import_on_upload,
            csv_rules=rules.model_dump(by_alias=True, exclude={"required_columns"}),
            orgvue=self.target.orgvue,
            elma365=self.target.elma365,
        )
