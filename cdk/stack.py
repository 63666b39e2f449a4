"""The BabyShield stack: composes one construct per concern and nothing else."""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, RemovalPolicy, Stack
from aws_cdk import aws_backup as backup
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.api import Api
from cdk.backup import Backups
from cdk.compliance import cdk_provider_handlers, record_cdk_provider_exceptions
from cdk.config import DeploymentConfig
from cdk.dashboards import Dashboards
from cdk.detection import DetectionAndResponse
from cdk.functions import LambdaFunctions
from cdk.keys import Keys
from cdk.network import Migration, NetworkAndDatabase
from cdk.secrets import Secrets
from cdk.tls_only import deny_plain_http
from cdk.waf import WebAcl
from functions.shared import names

# The warning's id in the cloud assembly (`cdk synth` prints it).
NO_ONCALL_SUBSCRIBER = "babyshield:noOncallSubscriber"


class BabyShieldStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        retention = _retention(config.log_retention_days)

        self.keys = Keys(self, "Keys")
        key = self.keys.key
        self.network = NetworkAndDatabase(
            self,
            "Network",
            key=key,
            instance_class=config.db_instance_class,
            multi_az=config.db_multi_az,
            log_retention=retention,
        )
        self.functions = LambdaFunctions(
            self,
            "Functions",
            key=key,
            vpc=self.network.vpc,
            subnets=self.network.subnets,
            log_retention=retention,
            api_reserved_concurrency=config.api_reserved_concurrency,
            max_body_bytes=config.max_body_bytes,
            admin_signed_routes=config.admin_signed_routes,
        )
        for package, services in self.functions.endpoint_services.items():
            self.network.admit(package, self.functions.by_package[package], services)
        self.migration = Migration(
            self,
            "Migration",
            function=self.functions.migrate,
            # The groups' own rules too: the database's and the endpoints' groups hold
            # the ingress rules that admit the migrate function.
            after=[
                *self.network.database_ready,
                *self.network.answering_groups,
                self.functions.security_groups["migrate"],
            ],
        )
        # New API code must not meet a schema its migrations have not reached yet.
        self.functions.api.node.add_dependency(self.migration.trigger)
        rotation = {
            "rotate_db": self.functions.rotate_db,
            "rotate_jwt": self.functions.rotate_jwt,
            "rotate_iam": self.functions.rotate_iam,
        }
        self.secrets = Secrets(
            self,
            "Secrets",
            key=key,
            database=self.network.database,
            admin_secret=self.network.admin_secret,
            rotation_functions=rotation,
            api=self.functions.api,
            migrate=self.functions.migrate,
            secret_age=self.functions.secret_age,
            rotate_after=self.migration,
        )
        self.api = Api(
            self,
            "Api",
            handler=self.functions.api,
            key=key,
            log_retention=retention,
            rate_limit=config.api_rate_limit,
            burst_limit=config.api_burst_limit,
        )
        self.waf = WebAcl(
            self,
            "Waf",
            stage=self.api.stage,
            key=key,
            log_retention=retention,
            admin_cidrs_v4=config.admin_allowed_cidrs_v4,
            admin_cidrs_v6=config.admin_allowed_cidrs_v6,
            geo_block_countries=config.geo_block_countries,
            rate_limit=config.rate_limit_per_5_minutes,
            max_body_bytes=config.max_body_bytes,
        )
        self.waf.grant_api(self.functions.api)
        self.waf.grant_responder(
            self.functions.waf_responder, also_query=[self.functions.log_groups["api"]]
        )
        self.detection = DetectionAndResponse(
            self,
            "Detection",
            key=key,
            log_retention=retention,
            rest_api=self.api.rest_api,
            api=self.functions.api,
            waf_responder=self.functions.waf_responder,
            rotate_iam=self.functions.rotate_iam,
            secret_age=self.functions.secret_age,
            rotation_functions=list(rotation.values()),
            web_acl_name=self.waf.web_acl.name or "",
            secret_readers=self.secrets.expected_readers,
            waf_blocked_threshold=config.waf_blocked_threshold,
            failed_signin_threshold=config.failed_signin_threshold,
            api_5xx_threshold=config.api_5xx_threshold,
            oncall_email=config.oncall_email,
            secret_age_dead_letters=self.secrets.secret_age_dead_letters,
            iam_key_sweep_dead_letters=self.secrets.iam_key_sweep_dead_letters,
        )
        deny_plain_http(self.detection.topic)
        # Created once the deploy's own age check has started, not before it, so a
        # new stack does not open on two days without a datapoint.
        self.detection.secrets_overdue_alarm.node.add_dependency(self.secrets.age_on_deploy)
        if not config.oncall_email:
            # Not an error: on-call may subscribe a pager or chat to the topic by hand.
            Annotations.of(self.detection.topic).add_warning_v2(
                NO_ONCALL_SUBSCRIBER,
                "oncallEmail is not set: alarms and auto-blocks publish to the on-call "
                "topic, which has no subscriber. Set -c babyshield:oncallEmail=<address> "
                "or subscribe the topic yourself.",
            )
        self.dashboards = Dashboards(
            self,
            "Dashboards",
            web_acl_name=self.waf.web_acl.name or "",
            waf_rule_names=[rule.name for rule in self.waf.rules],
            waf_log_group_name=names.WAF_LOG_GROUP,
            rotation_functions=rotation,
        )
        self.backups = Backups(
            self,
            "Backups",
            key=key,
            resources=[
                backup.BackupResource.from_rds_database_instance(self.network.database),
                *(
                    backup.BackupResource.from_dynamo_db_table(table)
                    for table in self.detection.tables
                ),
            ],
        )
        record_cdk_provider_exceptions(self)
        self._log_cdk_providers(key, retention)

    def _log_cdk_providers(self, key: kms.IKey, retention: logs.RetentionDays) -> None:
        """CDK's deploy-time providers log where every other function does.

        Left alone, Lambda creates their groups on first run: kept forever and
        not encrypted with the platform key. Each gets a group like the others'
        (retained, encrypted), named in its LoggingConfig and created first.
        """
        for handler in cdk_provider_handlers(self):
            provider_id = handler.node.path.split("/")[-2]
            group = logs.LogGroup(
                self,
                f"{provider_id}Logs",
                retention=retention,
                encryption_key=key,
                removal_policy=RemovalPolicy.RETAIN,
            )
            handler.add_property_override("LoggingConfig.LogGroup", group.log_group_name)
            handler.node.add_dependency(group)


_RETENTION = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def _retention(days: int) -> logs.RetentionDays:
    try:
        return _RETENTION[days]
    except KeyError:
        allowed = ", ".join(map(str, _RETENTION))
        raise ValueError(f"logRetentionDays={days}: choose one of {allowed}") from None
