"""Network and database: VPC, PostgreSQL on RDS, endpoints, and the migration step."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack, triggers
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.compliance import acknowledge, skip_checkov
from functions.shared import names

DB_ADMIN_USER = names.DB_MASTER_USER
DB_NAME = "babyshield"
DB_INSTANCE_ID = f"{names.PREFIX}-postgres"
DB_LOG_EXPORTS = ("postgresql", "upgrade")
DB_PORT = 5432
POSTGRES_VERSION = rds.PostgresEngineVersion.VER_17_9

# rds.force_ssl: no plaintext connections. pgaudit records DDL, role changes and
# writes (reads are too many and carry no privilege change); connection logging
# shows who logged in from where, which a rotation or an intrusion both leave.
# rds.restrict_password_commands: PostgreSQL lets any login change its own password,
# so SQL injected on a tier's connection could lock the tier out until the next
# rotation (the refetched secret holds the old one). With it, only members of
# rds_password change passwords: rds_superuser, which the master user that
# rotate_db logs in as holds.
DB_PARAMETERS = {
    "rds.force_ssl": "1",
    "shared_preload_libraries": "pg_stat_statements,pgaudit",
    "pgaudit.log": "ddl,role,write",
    "pgaudit.log_parameter": "0",
    "pgaudit.role": "rds_pgaudit",
    "log_connections": "1",
    "log_disconnections": "1",
    "password_encryption": "scram-sha-256",
    "rds.restrict_password_commands": "1",
    # A tier may lift its own statement_timeout (docs/DATABASE.md), so nothing else
    # bounds the temporary files one statement spills: injected SQL sorting a cross
    # join would fill the storage and stop the database. Only a superuser can raise
    # this per session. In kB: 2 GiB, far more than any query of the API needs.
    "temp_file_limit": str(2 * 1024 * 1024),
    # Every 10 s of a running statement the server checks that its client is still
    # there and ends the statement (its locks, its connection slot) when it is not: a
    # Lambda that timed out mid-statement, whose statement would otherwise run on, an
    # injected one with the statement timeout lifted holding its locks for good. The
    # tier logins carry it too (sql/024); this covers every other login. In ms. A
    # session may SET it to 0 for itself (user-settable): docs/DATABASE.md.
    "client_connection_check_interval": "10000",
}


class NetworkAndDatabase(Construct):
    """A VPC without internet routes, and PostgreSQL reachable only from admitted functions.

    Isolated subnets have no NAT and no internet gateway: functions in the VPC
    reach AWS through interface endpoints (Secrets Manager, SSM, X-Ray, WAF) and the
    DynamoDB gateway endpoint, and nothing else; each function only those of the
    services its code calls (`admit`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        instance_class: str,
        multi_az: bool,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=log_retention,
            encryption_key=key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                )
            ],
            flow_logs={
                "all": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
            restrict_default_security_group=True,
        )
        acknowledge(
            self.vpc,
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "CDK's flow-log delivery role has one inline policy for its one log group; "
            "it belongs to that role alone and is deleted with it.",
        )
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        # The database's and the endpoints' groups, which hold the ingress rules that
        # admit() adds: what a function's first connection must wait for.
        self.answering_groups: list[ec2.SecurityGroup] = []

        def inbound_only(group_id: str, description: str) -> ec2.SecurityGroup:
            # The database and the endpoints only answer; no egress rule means
            # they cannot open a connection anywhere (CDK's default allows all).
            group = ec2.SecurityGroup(
                self,
                group_id,
                vpc=self.vpc,
                description=description,
                allow_all_outbound=False,
                allow_all_ipv6_outbound=False,
            )
            self.answering_groups.append(group)
            return group

        dynamodb_endpoint = self.vpc.add_gateway_endpoint(
            "DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=[self.subnets]
        )
        # IAM prefix of the service -> its interface endpoint.
        self.endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {
            prefix: self.vpc.add_interface_endpoint(
                endpoint_id,
                service=service,
                subnets=self.subnets,
                private_dns_enabled=True,
                open=False,  # only admitted functions, not the whole VPC CIDR
                security_groups=[
                    inbound_only(f"{endpoint_id}EndpointSecurityGroup", f"{endpoint_id} endpoint")
                ],
            )
            for prefix, endpoint_id, service in (
                (
                    "secretsmanager",
                    "SecretsManager",
                    ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
                ),
                ("ssm", "Ssm", ec2.InterfaceVpcEndpointAwsService.SSM),
                ("xray", "XRay", ec2.InterfaceVpcEndpointAwsService.XRAY),
                # The admin block routes (/admin/blocks) update the auto-block IP sets.
                ("wafv2", "Wafv2", ec2.InterfaceVpcEndpointAwsService.WAFV2),
            )
        }
        # The endpoints are the VPC's only way out. Without a policy each takes any
        # request, also one signed with another account's credentials, or one of ours
        # for another account's secret or table: code running in a function could copy
        # data out through them. Each admits this account's principals only, and the
        # two that hold data (DynamoDB, Secrets Manager) this account's resources only.
        # X-Ray, SSM and WAF calls name no resource of another account here.
        account = Stack.of(self).account
        endpoint_services: list[tuple[ec2.IVpcEndpoint, bool]] = [
            (dynamodb_endpoint, True),
            *((e, e.node.id == "SecretsManager") for e in self.endpoints.values()),
        ]
        for endpoint, resources_here in endpoint_services:
            conditions = {"aws:PrincipalAccount": account}
            if resources_here:
                conditions["aws:ResourceAccount"] = account
            endpoint.add_to_policy(  # type: ignore[attr-defined]
                iam.PolicyStatement(
                    sid="ThisAccountOnly",
                    principals=[iam.AnyPrincipal()],
                    actions=["*"],
                    resources=["*"],
                    conditions={"StringEquals": conditions},
                )
            )

        parameter_group = rds.ParameterGroup(
            self,
            "Parameters",
            engine=rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION),
            description="BabyShield: TLS only, pgaudit, connection logging",
            parameters=DB_PARAMETERS,
        )
        # Created here rather than by RDS so that they are encrypted and have a
        # retention without CDK's log-retention custom resource.
        db_log_groups = [
            logs.LogGroup(
                self,
                f"PostgresLogs-{export}",
                log_group_name=f"/aws/rds/instance/{DB_INSTANCE_ID}/{export}",
                retention=log_retention,
                encryption_key=key,
                removal_policy=RemovalPolicy.RETAIN,
            )
            for export in DB_LOG_EXPORTS
        ]
        self.database = rds.DatabaseInstance(
            self,
            "Postgres",
            instance_identifier=DB_INSTANCE_ID,
            port=DB_PORT,
            engine=rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION),
            instance_type=ec2.InstanceType(instance_class),
            vpc=self.vpc,
            vpc_subnets=self.subnets,
            security_groups=[inbound_only("PostgresSecurityGroup", "PostgreSQL")],
            database_name=DB_NAME,
            credentials=rds.Credentials.from_generated_secret(
                DB_ADMIN_USER,
                secret_name=names.secret_name("db-admin"),
                encryption_key=key,
                exclude_characters=" %+~`#$&*()|[]{}:;<>?!'/@\"\\",
            ),
            parameter_group=parameter_group,
            storage_encrypted=True,
            storage_encryption_key=key,
            publicly_accessible=False,
            deletion_protection=True,
            multi_az=multi_az,
            backup_retention=Duration.days(14),
            delete_automated_backups=False,
            removal_policy=RemovalPolicy.SNAPSHOT,
            auto_minor_version_upgrade=True,
            # Every login is a password from Secrets Manager; nothing holds rds-db:connect
            # or the rds_iam role, so IAM authentication would only be a way in to watch.
            iam_authentication=False,
            cloudwatch_logs_exports=list(DB_LOG_EXPORTS),
            # RDS writes these into its own account-wide RDSOSMetrics group, not one of
            # ours: every instance in the account and region shares it, so the stack
            # must not own it (docs/INFRASTRUCTURE.md, "Log groups").
            monitoring_interval=Duration.seconds(60),
            enable_performance_insights=True,
            performance_insight_encryption_key=key,
            copy_tags_to_snapshot=True,
            allocated_storage=20,
            max_allocated_storage=100,
        )
        for group in db_log_groups:
            self.database.node.add_dependency(group)
        if self.database.secret is None:  # pragma: no cover - from_generated_secret always sets it
            raise RuntimeError("the database was created without an admin secret")
        self.admin_secret = self.database.secret
        # Kept when the stack goes, as the key and the final snapshot are: a database
        # restored from the snapshot takes the master password this secret holds.
        admin_secret = self.database.node.find_child("Secret")
        if not isinstance(admin_secret, secretsmanager.Secret):  # pragma: no cover - CDK's id
            raise RuntimeError("the database's generated admin secret was not found")
        admin_secret.apply_removal_policy(RemovalPolicy.RETAIN)
        # What the migration needs of the database: the instance, and the admin secret
        # completed with its host (the attachment's own resource). Not the whole
        # construct: the admin secret's rotation schedule is added under the
        # attachment, and its first rotation starts when the schedule is created; the
        # schedule waits for the migration instead (cdk/secrets.py).
        # (The instance's secret is the attachment: the secret with its host attached.)
        self.database_ready: list[Construct] = [
            self.database.node.default_child,  # type: ignore[list-item]
            self.admin_secret.node.default_child,  # type: ignore[list-item]
        ]
        skip_checkov(
            self.database,
            "CKV_AWS_161",
            "IAM database authentication is off: every login is a Secrets Manager password "
            "and no principal is granted rds-db:connect, so it would only add a way in.",
        )
        acknowledge(
            self.database,
            "AwsSolutions-RDS11",
            "The port is not a control here: the security group admits only the "
            "functions that use the database, and the VPC has no internet route.",
        )
        acknowledge(
            self.database,
            "AwsSolutions-IAM4",
            "RDS enhanced monitoring needs its AWS-managed service role; it only "
            "publishes OS metrics to CloudWatch Logs.",
            applies_to=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonRDSEnhancedMonitoringRole"
            ],
        )

    def admit(self, name: str, function: lambda_.Function, services: Sequence[str]) -> None:
        """Let `function` reach PostgreSQL and the endpoints of `services` (IAM prefixes:
        the AWS services its code calls), and X-Ray's for its traces; nothing more."""
        unknown = sorted(set(services) - {*self.endpoints, "dynamodb"})
        if unknown:
            # Without an endpoint the call would hang to its timeout: no route out.
            raise ValueError(f"{name} calls {unknown}, which have no endpoint in the VPC")
        # Literal ports, not the instance's port token, so that rule packs can
        # evaluate the security group rules.
        self.database.connections.allow_from(
            function, ec2.Port.tcp(DB_PORT), f"{name} to PostgreSQL"
        )
        for prefix in sorted({*services, "xray"} - {"dynamodb"}):
            self.endpoints[prefix].connections.allow_from(
                function, ec2.Port.tcp(443), f"{name} to {prefix}"
            )
        if "dynamodb" in services:
            # The DynamoDB gateway endpoint is reached through a prefix list whose id
            # is only known in the deployed region; isolated subnets have no other
            # route for port 443, so this rule cannot reach the internet.
            function.connections.allow_to(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "DynamoDB")


class Migration(Construct):
    """Runs the migration function on deploy, after everything in `after`.

    `after` must hold the database and the network rules that let the function
    reach it; a trigger otherwise only waits for its own function.

    A CDK trigger re-runs it whenever the function's code (which includes
    `sql/`) changes, so a deploy that adds a migration applies it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.Function,
        after: list[Construct],
    ) -> None:
        super().__init__(scope, construct_id)
        self.trigger = triggers.Trigger(
            self,
            "Run",
            handler=function,
            execute_after=after,
            execute_on_handler_change=True,
            invocation_type=triggers.InvocationType.REQUEST_RESPONSE,
            # The provider's Invoke waits this long for the answer, then retries: it
            # must outwait the function's own timeout and cold start, so a run that
            # uses its whole budget fails the deploy with its error, once.
            timeout=(function.timeout or Duration.minutes(5)).plus(Duration.minutes(1)),
        )
