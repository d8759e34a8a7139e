"""Stands up template.yaml's resources in moto, so the real handlers and the real ASL run offline.

This is not a CloudFormation engine: it reads the SAM template, resolves the few intrinsics the
template uses, and creates the matching moto resources (bucket + notification, secret, settings
parameter, Lambda functions, state machine from the ASL file). Lambda invocations are routed to the
handler code in-process by `offline.lambda_runtime`.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
ACCOUNT_ID = "123456789012"  # moto's default account


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """Reads CloudFormation short-form tags (!Ref, !Sub, ...) as their long-form dicts."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open() as handle:
        data: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return data


@dataclass
class DeployedFunction:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, str]
    #: Lambda's asynchronous retries, and where an event goes once they are exhausted (EventInvokeConfig).
    async_retries: int = 2
    on_failure: Any = None


@dataclass
class OfflineStack:
    """The template's resources in moto. Call `deploy()` inside an active `mock_aws`."""

    parameters: dict[str, str]
    stack_name: str = "people-sync-local"
    region: str = "us-east-1"
    secret_values: dict[str, str] = field(default_factory=dict)
    template_path: Path = TEMPLATE_PATH
    template: dict[str, Any] = field(init=False)
    physical: dict[str, str] = field(init=False, default_factory=dict)
    arns: dict[str, str] = field(init=False, default_factory=dict)
    functions: dict[str, DeployedFunction] = field(init=False, default_factory=dict)
    api_routes: dict[tuple[str, str], str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.template = load_template(self.template_path)
        declared = self.template.get("Parameters", {})
        for name, spec in declared.items():
            if name not in self.parameters:
                if "Default" not in spec:
                    raise ValueError(f"parameter {name} has no default: pass it")
                self.parameters[name] = str(spec["Default"])

    # --- deployment ------------------------------------------------------------------------------

    def deploy(self) -> OfflineStack:
        resources = self.template["Resources"]
        self._name_resources(resources)
        self.role_arn = self._client("iam").create_role(
            RoleName=f"{self.stack_name}-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
        )["Role"]["Arn"]
        for logical_id, resource in resources.items():
            kind, props = resource["Type"], resource.get("Properties", {})
            if kind == "AWS::SecretsManager::Secret":
                self._deploy_secret(logical_id)
            elif kind == "AWS::DynamoDB::Table":
                indexes = (
                    {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]}
                    if "GlobalSecondaryIndexes" in props
                    else {}
                )
                self._client("dynamodb").create_table(
                    TableName=self.physical[logical_id],
                    AttributeDefinitions=props["AttributeDefinitions"],
                    KeySchema=props["KeySchema"],
                    BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
                    **indexes,
                )
            elif kind == "AWS::SQS::Queue":
                self.physical[logical_id] = self._client("sqs").create_queue(QueueName=self.physical[logical_id])[
                    "QueueUrl"
                ]
            elif kind == "AWS::SSM::Parameter":
                self._client("ssm").put_parameter(
                    Name=self.physical[logical_id], Type="String", Value=str(self.resolve(props["Value"]))
                )
        for logical_id, resource in resources.items():
            if resource["Type"] == "AWS::Serverless::Function":
                self._deploy_function(logical_id, resource.get("Properties", {}))
        for logical_id, resource in resources.items():
            if resource["Type"] == "AWS::Serverless::StateMachine":
                self._deploy_state_machine(logical_id, resource["Properties"])
        for logical_id, resource in resources.items():
            if resource["Type"] == "AWS::S3::Bucket":
                self._deploy_bucket(logical_id, resource.get("Properties", {}))
        self._finish_function_environments()
        return self

    def _name_resources(self, resources: dict[str, Any]) -> None:
        """Physical names and ARNs, decided up front so references resolve in any order."""
        for logical_id, resource in resources.items():
            kind, props = resource["Type"], resource.get("Properties", {})
            name = f"{self.stack_name}-{logical_id}"
            if kind == "AWS::S3::Bucket":
                name = str(self.resolve(props.get("BucketName", name.lower())))
                self.arns[logical_id] = f"arn:aws:s3:::{name}"
            elif kind == "AWS::Serverless::Function":
                self.arns[logical_id] = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}"
            elif kind == "AWS::Serverless::StateMachine":
                name = str(self.resolve(props.get("Name", name)))  # named in the template: its ARN is known up front
                self.arns[logical_id] = f"arn:aws:states:{self.region}:{ACCOUNT_ID}:stateMachine:{name}"
            elif kind == "AWS::DynamoDB::Table":
                self.arns[logical_id] = f"arn:aws:dynamodb:{self.region}:{ACCOUNT_ID}:table/{name}"
            elif kind == "AWS::SQS::Queue":
                self.arns[logical_id] = f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{name}"
            elif kind == "AWS::SSM::Parameter":
                name = f"/{self.stack_name}/{logical_id}"
            self.physical[logical_id] = name
            # Ref of a function, bucket or parameter is its name; of a state machine or secret its ARN.
            if kind in ("AWS::Serverless::StateMachine",):
                self.physical[logical_id] = self.arns[logical_id]

    def _deploy_secret(self, logical_id: str) -> None:
        value = self.secret_values.get(logical_id, "placeholder-token")
        arn = self._client("secretsmanager").create_secret(Name=f"{self.stack_name}-{logical_id}", SecretString=value)[
            "ARN"
        ]
        self.physical[logical_id] = arn
        self.arns[logical_id] = arn

    def _deploy_function(self, logical_id: str, props: dict[str, Any]) -> None:
        globals_ = self.template.get("Globals", {}).get("Function", {})
        env = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        function = DeployedFunction(
            logical_id=logical_id,
            name=self.physical[logical_id],
            arn=self.arns[logical_id],
            code_dir=REPO_ROOT / props["CodeUri"],
            handler=props.get("Handler", globals_.get("Handler", "app.lambda_handler")),
            timeout=int(props.get("Timeout", globals_.get("Timeout", 3))),
            memory=int(props.get("MemorySize", globals_.get("MemorySize", 128))),
            environment=env,  # resolved once every resource has a name
            async_retries=int(props.get("EventInvokeConfig", {}).get("MaximumRetryAttempts", 2)),
            on_failure=props.get("EventInvokeConfig", {}).get("DestinationConfig", {}).get("OnFailure"),
        )
        self._client("lambda").create_function(
            FunctionName=function.name,
            Runtime=props.get("Runtime", globals_.get("Runtime", "python3.13")),
            Role=self.role_arn,
            Handler=function.handler,
            Code={"ZipFile": _zip_dir(function.code_dir)},
            Timeout=function.timeout,
            MemorySize=function.memory,
        )
        self.functions[logical_id] = function
        for event in props.get("Events", {}).values():
            if event["Type"] == "Api":
                self.api_routes[(event["Properties"]["Method"].upper(), event["Properties"]["Path"])] = logical_id

    def _finish_function_environments(self) -> None:
        for function in self.functions.values():
            function.environment = {key: str(self.resolve(value)) for key, value in function.environment.items()}
            self._client("lambda").update_function_configuration(
                FunctionName=function.name, Environment={"Variables": function.environment}
            )

    def _deploy_state_machine(self, logical_id: str, props: dict[str, Any]) -> None:
        definition = (REPO_ROOT / props["DefinitionUri"]).read_text()
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + key + "}", str(self.resolve(value)))
        json.loads(definition)  # the substituted definition must still be valid JSON
        self._client("stepfunctions").create_state_machine(
            name=self.arns[logical_id].rsplit(":", 1)[-1],
            definition=definition,
            roleArn=self.role_arn,
            type=props.get("Type", "STANDARD"),
        )

    def _deploy_bucket(self, logical_id: str, props: dict[str, Any]) -> None:
        s3 = self._client("s3")
        bucket = self.physical[logical_id]
        s3.create_bucket(Bucket=bucket)
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        if "BucketEncryption" in props:
            rules = [
                {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})  # type: ignore[typeddict-item]
        configs = []
        for config in props.get("NotificationConfiguration", {}).get("LambdaConfigurations", []):
            rules = config.get("Filter", {}).get("S3Key", {}).get("Rules", [])
            configs.append(
                {
                    "LambdaFunctionArn": str(self.resolve(config["Function"])),
                    "Events": [config["Event"]],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": rule["Name"], "Value": str(self.resolve(rule["Value"]))} for rule in rules
                            ]
                        }
                    },
                }
            )
        if configs:
            s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration={"LambdaFunctionConfigurations": configs},  # type: ignore[typeddict-item]
            )

    # --- intrinsics ------------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """Resolves the intrinsics template.yaml uses: Ref, Sub, GetAtt, If, Join, Split, Not, Equals."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self.condition(condition) else when_false)
            if key == "Fn::Join":
                return str(arg[0]).join(str(part) for part in self.resolve(arg[1]))
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::Equals":
                return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
            if key == "Fn::GetAtt":
                return self._get_att(*arg)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                local = {name: self.resolve(val) for name, val in variables.items()}
                return re.sub(
                    r"\$\{([^}]+)\}",
                    lambda m: str(local[m.group(1)] if m.group(1) in local else self._sub_var(m.group(1))),
                    text,
                )
        return value

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def _sub_var(self, name: str) -> Any:
        if "." in name:
            return self._get_att(*name.split(".", 1))
        return self._ref(name)

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.physical[name]

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arns[logical_id]
        if attribute == "Name":
            return self.arns[logical_id].rsplit(":", 1)[-1]
        raise KeyError(f"Fn::GetAtt {logical_id}.{attribute} is not supported offline")

    def _client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.region)  # type: ignore[call-overload]

    # --- lookups ---------------------------------------------------------------------------------

    def function(self, logical_id: str) -> DeployedFunction:
        return self.functions[logical_id]

    def queue_url_for_arn(self, arn: str) -> str:
        logical_id = next(key for key, value in self.arns.items() if value == arn)
        return self.physical[logical_id]

    def bucket(self, logical_id: str = "StagingBucket") -> str:
        return self.physical[logical_id]

    def state_machine_arn(self, logical_id: str = "SyncStatusStateMachine") -> str:
        return self.arns[logical_id]


def _zip_dir(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(path.rglob("*.py")):
            archive.write(file, file.relative_to(path))
    return buffer.getvalue()
