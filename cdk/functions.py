"""Every Lambda of the platform, built one way.

Latest Python runtime, arm64, JSON logs into a KMS-encrypted log group with a
fixed retention, X-Ray active tracing, environment encrypted with the platform
key, reserved concurrency, and a role of its own that starts with nothing but
its log group (and, in the VPC, Lambda's own calls for the function's network
interfaces). Other constructs add exactly the grants each function needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import AssetHashType, Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.assets import (
    LAMBDA_PYTHON_VERSION,
    LAMBDA_TASK_ROOT,
    REPO_ROOT,
    dependency_layer_dir,
    function_code_dir,
)
from cdk.compliance import acknowledge, skip_checkov
from functions.shared import names

OUTSIDE_VPC_REASON = (
    "Reaches only AWS APIs (Secrets Manager, IAM, WAF, DynamoDB, SNS, Logs); no "
    "database access, so a VPC would add endpoints and no protection."
)
NO_FUNCTION_DLQ_REASON = (
    "Invoked synchronously (API Gateway, Secrets Manager, CloudFormation), where the "
    "caller sees the error, or by EventBridge, whose target has a DLQ and whose "
    "asynchronous runs have an on-failure destination to the same queue."
)
PREVIOUS_RUNTIME_REASON = (
    f"python{LAMBDA_PYTHON_VERSION} is a supported runtime and the newest Python the build "
    "machines carry: the assets ship bytecode compiled by that version, which keeps module "
    "compilation out of every cold start (cdk/assets.py)."
)
INLINE_POLICY_REASON = (
    "CDK grants write one inline policy that belongs to this role alone and is deleted "
    "with it; a managed policy would be a separately attachable object and narrow nothing."
)

# What Lambda does with the execution role of a function in a VPC: its network
# interfaces (Lambda developer guide, "Giving Lambda functions access to resources in
# an Amazon VPC", the permissions of AWSLambdaVPCAccessExecutionRole but its logs ones,
# which would let the function write into every log group of the account).
NETWORK_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
# Lambda puts the function's ARN in the request context of every call made with the
# role from inside the execution environment, and not in its own EC2 calls for the
# function's network interfaces (Lambda developer guide, "Using source function ARN to
# control function access behavior"): with the key required absent, only Lambda may.
LAMBDA_ITSELF = {"Null": {"lambda:SourceFunctionArn": "true"}}
NETWORK_INTERFACES_REASON = (
    "Lambda's network-interface calls: DescribeNetworkInterfaces works only on '*', and "
    "the statement holds only when lambda:SourceFunctionArn is absent, which is Lambda "
    "itself, never the function's code."
)


def _network_interfaces_for_lambda_only() -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="LambdaManagesNetworkInterfaces",
        actions=list(NETWORK_INTERFACE_ACTIONS),
        resources=["*"],
        conditions=LAMBDA_ITSELF,
    )


# The version the assets' bytecode is compiled for: LAMBDA_PYTHON_VERSION, which
# test_function_is_built_the_standard_way holds it to.
RUNTIME = lambda_.Runtime.PYTHON_3_13

# The RDS CAs (cdk/certs/README.md), shipped with every function that reaches the
# database, which verifies the server's certificate and name against them.
RDS_CA_BUNDLE = REPO_ROOT / "cdk" / "certs" / "rds-global-bundle.pem"
RDS_CA_IN_ASSET = "certs/rds-global-bundle.pem"
ARCHITECTURE = lambda_.Architecture.ARM_64


@dataclass(frozen=True)
class FunctionSpec:
    """What differs between functions; everything else is the same for all."""

    package: str
    description: str
    timeout: Duration
    reserved_concurrency: int
    in_vpc: bool
    memory_mb: int = 512
    # In the VPC: the AWS services the code calls (IAM prefixes), whose endpoints the
    # function is let through to (cdk/network.py::admit), besides X-Ray's for tracing.
    endpoint_services: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    extra_assets: Mapping[str, Path] = field(default_factory=dict)


# Rotation steps and the secret-age run call AWS with the background budget
# (functions/shared/aws_clients.py: one stalled call can take 74 s before it
# raises). Two minutes let that call fail with its own error, logged, instead of
# Lambda killing the step mid-way with nothing said.
ROTATION_TIMEOUT = Duration.minutes(2)


def _secret_environment() -> dict[str, str]:
    return {
        "DB_READONLY_SECRET_ID": names.secret_name("db-readonly"),
        "DB_APP_SECRET_ID": names.secret_name("db-app"),
        "DB_ADMIN_SECRET_ID": names.secret_name("db-admin"),
        "JWT_SECRET_ID": names.secret_name("jwt-signing-key"),
        "WEBHOOK_SECRET_ID": names.secret_name("webhook-signing-secret"),
    }


def _database_tls() -> dict[str, str]:
    return {"DB_SSL_ROOT_CERT": f"{LAMBDA_TASK_ROOT}/{RDS_CA_IN_ASSET}"}


def function_specs(
    api_reserved_concurrency: int,
    max_body_bytes: int,
    admin_signed_routes: Sequence[str] = (),
) -> tuple[FunctionSpec, ...]:
    secrets = _secret_environment()
    # Admin routes whose requests must be signed (the key proven, never sent); unset,
    # a client may still sign any admin request.
    signed = {"ADMIN_SIGNED_ROUTES": ",".join(admin_signed_routes)} if admin_signed_routes else {}
    database_tls = _database_tls()
    return (
        FunctionSpec(
            package="api",
            description="BabyShield REST API behind API Gateway and WAF",
            timeout=Duration.seconds(29),  # API Gateway's integration limit
            reserved_concurrency=api_reserved_concurrency,
            in_vpc=True,
            memory_mb=1024,
            endpoint_services=("dynamodb", "secretsmanager", "ssm", "wafv2"),
            environment={
                "ADMIN_ALLOWED_CIDRS_PARAMETER": names.ADMIN_ALLOWLIST_PARAMETER,
                # The WAF's body limit (cdk/waf.py): the API refuses the same bodies,
                # also when maxBodyBytes is set away from the default the two share.
                "MAX_BODY_BYTES": str(max_body_bytes),
                "RATE_LIMIT_TABLE": names.RATE_LIMIT_TABLE,
                "WEBHOOK_NONCE_TABLE": names.WEBHOOK_NONCE_TABLE,
                # /admin/blocks: the responder's registry, IP sets and never-block list.
                "BLOCK_REGISTRY_TABLE": names.BLOCK_REGISTRY_TABLE,
                "NEVER_BLOCK_CIDRS_PARAMETER": names.NEVER_BLOCK_PARAMETER,
                "AUTO_BLOCK_IPSET_V4_NAME": names.AUTO_BLOCK_IPSET_V4,
                "AUTO_BLOCK_IPSET_V6_NAME": names.AUTO_BLOCK_IPSET_V6,
                "DB_READONLY_SECRET_ID": secrets["DB_READONLY_SECRET_ID"],
                "DB_APP_SECRET_ID": secrets["DB_APP_SECRET_ID"],
                "JWT_SECRET_ID": secrets["JWT_SECRET_ID"],
                "WEBHOOK_SECRET_ID": secrets["WEBHOOK_SECRET_ID"],
                **signed,
                **database_tls,
            },
            extra_assets={RDS_CA_IN_ASSET: RDS_CA_BUNDLE},
        ),
        FunctionSpec(
            package="rotate_db",
            description="Secrets Manager rotation of the PostgreSQL users",
            timeout=ROTATION_TIMEOUT,
            # Secrets Manager rotates at most a few secrets at once; more would
            # only queue logins against the admin user.
            reserved_concurrency=3,
            in_vpc=True,
            endpoint_services=("secretsmanager",),
            environment={"DB_ADMIN_SECRET_ID": secrets["DB_ADMIN_SECRET_ID"], **database_tls},
            extra_assets={RDS_CA_IN_ASSET: RDS_CA_BUNDLE},
        ),
        FunctionSpec(
            package="rotate_jwt",
            description="Secrets Manager rotation of the JWT signing key pair",
            timeout=ROTATION_TIMEOUT,
            reserved_concurrency=2,
            in_vpc=False,
        ),
        FunctionSpec(
            package="rotate_iam",
            description="Rotation of IAM access keys and generated secrets",
            timeout=ROTATION_TIMEOUT,
            reserved_concurrency=2,
            in_vpc=False,
            # Which version of the webhook secret the sender last signed with.
            environment={"WEBHOOK_NONCE_TABLE": names.WEBHOOK_NONCE_TABLE},
        ),
        FunctionSpec(
            package="waf_responder",
            description="Alarm-driven WAF auto-block and the expiry sweep",
            # A Logs Insights query may run to its deadline (60 s) and a stalled call
            # take its whole retry budget (AWS_MAX_ATTEMPTS, 100 s at the default);
            # under the 5-minute sweep period, so one sweep ends before the next.
            timeout=Duration.minutes(4),
            # IP set updates use a lock token; a few concurrent writers are
            # enough and keep retries on WAFOptimisticLockException rare.
            reserved_concurrency=2,
            in_vpc=False,
            environment={
                "BLOCK_REGISTRY_TABLE": names.BLOCK_REGISTRY_TABLE,
                "IDEMPOTENCY_TABLE": names.IDEMPOTENCY_TABLE,
                "WAF_LOG_GROUP": names.WAF_LOG_GROUP,
                "API_LOG_GROUP": names.API_LOG_GROUP,
                "ADMIN_ALLOWED_CIDRS_PARAMETER": names.ADMIN_ALLOWLIST_PARAMETER,
                "NEVER_BLOCK_CIDRS_PARAMETER": names.NEVER_BLOCK_PARAMETER,
                "AUTO_BLOCK_IPSET_V4_NAME": names.AUTO_BLOCK_IPSET_V4,
                "AUTO_BLOCK_IPSET_V6_NAME": names.AUTO_BLOCK_IPSET_V6,
                "WEB_ACL_NAME": names.WEB_ACL,
                "RATE_RULE_NAME": names.RATE_RULE,
            },
        ),
        FunctionSpec(
            package="secret_age",
            description="Daily secret ages, and whether the feed has the current webhook secret",
            timeout=ROTATION_TIMEOUT,
            reserved_concurrency=1,
            in_vpc=False,
            memory_mb=256,
            # Which version of the webhook secret the feed last signed with.
            environment={"WEBHOOK_NONCE_TABLE": names.WEBHOOK_NONCE_TABLE},
        ),
        FunctionSpec(
            package="migrate",
            description="Applies sql/ migrations with the admin user on deploy",
            timeout=Duration.minutes(5),
            reserved_concurrency=1,  # two migration runs must never overlap
            in_vpc=True,
            endpoint_services=("secretsmanager",),
            environment={"DB_ADMIN_SECRET_ID": secrets["DB_ADMIN_SECRET_ID"], **database_tls},
            # functions/shared/db/migrations.py reads <asset root>/sql.
            extra_assets={"sql": REPO_ROOT / "sql", RDS_CA_IN_ASSET: RDS_CA_BUNDLE},
        ),
    )


class LambdaFunctions(Construct):
    """Builds the platform's functions; exposes each by package name."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        log_retention: logs.RetentionDays,
        api_reserved_concurrency: int,
        max_body_bytes: int,
        admin_signed_routes: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self._key = key
        self._vpc = vpc
        self._subnets = subnets
        self._log_retention = log_retention
        layer_dir, layer_hash = dependency_layer_dir()
        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            description="Third-party packages from requirements/runtime.lock (arm64)",
            code=lambda_.Code.from_asset(
                str(layer_dir), asset_hash=layer_hash, asset_hash_type=AssetHashType.CUSTOM
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )
        self.by_package: dict[str, lambda_.Function] = {}
        self.security_groups: dict[str, ec2.SecurityGroup] = {}
        # Package -> the services whose VPC endpoints it reaches, for the functions in it.
        self.endpoint_services: dict[str, tuple[str, ...]] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for spec in function_specs(api_reserved_concurrency, max_body_bytes, admin_signed_routes):
            self.by_package[spec.package] = self._build(spec)
            if spec.in_vpc:
                self.endpoint_services[spec.package] = spec.endpoint_services

    @property
    def api(self) -> lambda_.Function:
        return self.by_package["api"]

    @property
    def rotate_db(self) -> lambda_.Function:
        return self.by_package["rotate_db"]

    @property
    def rotate_jwt(self) -> lambda_.Function:
        return self.by_package["rotate_jwt"]

    @property
    def rotate_iam(self) -> lambda_.Function:
        return self.by_package["rotate_iam"]

    @property
    def waf_responder(self) -> lambda_.Function:
        return self.by_package["waf_responder"]

    @property
    def secret_age(self) -> lambda_.Function:
        return self.by_package["secret_age"]

    @property
    def migrate(self) -> lambda_.Function:
        return self.by_package["migrate"]

    def _build(self, spec: FunctionSpec) -> lambda_.Function:
        scope = Construct(self, spec.package.replace("_", "-"))
        function_name = names.function_name(spec.package)
        log_group = logs.LogGroup(
            scope,
            "Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=self._log_retention,
            encryption_key=self._key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        role = iam.Role(
            scope,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {function_name} only",
        )
        log_group.grant_write(role)
        security_groups: list[ec2.ISecurityGroup] = []
        if spec.in_vpc:
            role.add_to_policy(_network_interfaces_for_lambda_only())
            group = ec2.SecurityGroup(
                scope,
                "SecurityGroup",
                vpc=self._vpc,
                description=f"{function_name}: egress only to what it is admitted to",
                allow_all_outbound=False,
            )
            self.security_groups[spec.package] = group
            security_groups.append(group)
        code_dir, code_hash = function_code_dir(spec.package, spec.extra_assets)
        function = lambda_.Function(
            scope,
            "Function",
            function_name=function_name,
            description=spec.description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"functions.{spec.package}.handler.lambda_handler",
            code=lambda_.Code.from_asset(
                str(code_dir), asset_hash=code_hash, asset_hash_type=AssetHashType.CUSTOM
            ),
            layers=[self.layer],
            role=role,
            timeout=spec.timeout,
            memory_size=spec.memory_mb,
            reserved_concurrent_executions=spec.reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            environment={
                "POWERTOOLS_SERVICE_NAME": names.METRICS_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": names.METRICS_NAMESPACE,
                "BABYSHIELD_ENV": "aws",
                # No pydantic plugins are installed: without this, building the first
                # model scans every distribution's entry points on the path (the
                # layer's and the runtime's), part of each cold start.
                "PYDANTIC_DISABLE_PLUGINS": "__all__",
                **spec.environment,
            },
            environment_encryption=self._key,
            vpc=self._vpc if spec.in_vpc else None,
            vpc_subnets=self._subnets if spec.in_vpc else None,
            security_groups=security_groups or None,
        )
        self.log_groups[spec.package] = log_group
        # This covers every `*`-resource statement of the role, not only X-Ray's:
        # tests/infrastructure/test_function_permissions.py holds them to the actions
        # IAM offers no resource for.
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level "
            "permissions; CDK adds them for active tracing."
            + (f" {NETWORK_INTERFACES_REASON}" if spec.in_vpc else ""),
            applies_to=["Resource::*"],
        )
        if not spec.in_vpc:
            skip_checkov(function, "CKV_AWS_117", OUTSIDE_VPC_REASON)
            acknowledge(function, "NIST.800.53.R5-LambdaInsideVPC", OUTSIDE_VPC_REASON)
        skip_checkov(function, "CKV_AWS_116", NO_FUNCTION_DLQ_REASON)
        acknowledge(function, "NIST.800.53.R5-LambdaDLQ", NO_FUNCTION_DLQ_REASON)
        acknowledge(function, "AwsSolutions-L1", PREVIOUS_RUNTIME_REASON)
        acknowledge(role, "NIST.800.53.R5-IAMNoInlinePolicy", INLINE_POLICY_REASON)
        return function
