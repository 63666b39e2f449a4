"""Secrets from the shared inventory, each with its rotation function and schedule, and
the daily schedules around them (secret ages, rotate_iam's sweep of previous keys)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack, triggers
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.compliance import acknowledge
from cdk.queues import FailureQueue, dead_letter_queue
from functions.rotate_iam.key_sweep import SWEEP_EVENT
from functions.shared import names
from functions.shared.db.roles import PRODUCTION_ROLES
from functions.shared.inventory import INVENTORY, SecretSpec
from functions.shared.rotation.store import EMERGENCY_TAG, PROMOTED_TAG

# The tiers' secrets start on the group role's name; the first rotation (right
# after the migration) moves each to one of the tier's two alternating logins.
_DB_USERS = {"db-readonly": PRODUCTION_ROLES.readonly, "db-app": PRODUCTION_ROLES.app}
# A daily run EventBridge could not deliver, or Lambda could not finish, is tried this
# many times more and for at most this long.
DAILY_RUN_RETRIES = 2
DAILY_RUN_MAX_AGE = Duration.hours(6)


class Secrets(Construct):
    """Creates every secret in INVENTORY and schedules its rotation.

    Every secret outlives the stack, as the key, the tables and the database's final
    snapshot do: a database restored from that snapshot still has the logins whose
    passwords the secrets hold, and the key still decrypts them.

    Secrets whose real value only the rotation function can make (the JWT key
    pair, the IAM access key) start with a bootstrap placeholder; Secrets
    Manager rotates a secret as soon as its schedule is created, so the
    placeholder is replaced during the deploy itself.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        database: rds.DatabaseInstance,
        admin_secret: secretsmanager.ISecret,
        rotation_functions: Mapping[str, lambda_.Function],
        api: lambda_.Function,
        migrate: lambda_.Function,
        secret_age: lambda_.Function,
        rotate_after: Construct,
    ) -> None:
        super().__init__(scope, construct_id)
        self._key = key
        self.partner_export_user = iam.User(
            self, "PartnerExportUser", user_name=names.PARTNER_EXPORT_USER
        )
        # The user's data permissions arrive with the export feature; the group
        # exists so that they are granted to a group, never to the user itself.
        iam.Group(self, "PartnerExporters").add_user(self.partner_export_user)

        self.by_name: dict[str, secretsmanager.ISecret] = {}
        self.schedules: dict[str, secretsmanager.RotationSchedule] = {}
        for spec in INVENTORY:
            secret = (
                admin_secret
                if spec.name == "db-admin"
                else self._create(spec, database, admin_secret)
            )
            self.by_name[spec.name] = secret
            schedule = secret.add_rotation_schedule(
                "Rotation",
                rotation_lambda=rotation_functions[spec.method],
                automatically_after=Duration.days(spec.period_days),
                # The tiers rotate at once (their first value names the NOLOGIN group
                # role). The admin's password is fresh from this deploy: its rotation
                # waits for its window rather than run beside the tiers' first ones,
                # whose steps log in as the admin (rotate_db follows AWSPENDING there).
                rotate_immediately_on_update=spec.name != "db-admin",
            )
            if spec.name in _DB_USERS or spec.name == "db-admin":
                # The tier users exist only once the migration has created them. From
                # the admin's setSecret to its finishSecret the database holds a
                # password that AWSCURRENT does not: the migration, which logs in with
                # AWSCURRENT, runs before any admin rotation can start.
                schedule.node.add_dependency(rotate_after)
            self.schedules[spec.name] = schedule

        # Secrets Manager may invoke a rotation function only for this account's
        # secrets, and of those only the platform's (CDK's grant names the service,
        # not the account or the secret). One pattern for all of them, not each
        # secret's ARN: a function rotates several secrets through one permission.
        # Lambda compares SourceArn with StringLike; a secret's ARN ends in a random
        # suffix after its name (`babyshield/db-app-AbCdEf`).
        platform_secrets = Stack.of(self).format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{names.SECRET_PREFIX}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        for function in rotation_functions.values():
            for child in function.node.children:
                if isinstance(child, lambda_.CfnPermission) and (
                    child.principal == "secretsmanager.amazonaws.com"
                ):
                    child.source_account = Stack.of(self).account
                    child.source_arn = platform_secrets

        for function in rotation_functions.values():
            acknowledge(
                function.role,  # type: ignore[arg-type]
                "AwsSolutions-IAM5",
                "secretsmanager:GetRandomPassword (added by CDK's rotation schedule) and "
                "the X-Ray trace APIs support no resource-level permissions.",
                applies_to=["Resource::*"],
            )

        for spec in INVENTORY:
            secret_arn = self.by_name[spec.name].secret_arn
            # Every step starts by reading the version stages (SecretStore.describe):
            # CDK's rotation grant covers Describe/Get/Put/UpdateVersionStage only.
            rotation_functions[spec.method].add_to_role_policy(
                iam.PolicyStatement(
                    actions=["secretsmanager:ListSecretVersionIds"],
                    resources=[secret_arn],
                )
            )
            # The last step of an emergency rotation removes the tag that marked it
            # (functions/shared/rotation/store.py); only that tag, only this secret.
            rotation_functions[spec.method].add_to_role_policy(
                iam.PolicyStatement(
                    actions=["secretsmanager:UntagResource"],
                    resources=[secret_arn],
                    conditions={"ForAllValues:StringEquals": {"aws:TagKeys": [EMERGENCY_TAG]}},
                )
            )
            # finishSecret dates its promotion with a tag (the JWT guard reads it);
            # only that tag, only this secret.
            rotation_functions[spec.method].add_to_role_policy(
                iam.PolicyStatement(
                    actions=["secretsmanager:TagResource"],
                    resources=[secret_arn],
                    conditions={"ForAllValues:StringEquals": {"aws:TagKeys": [PROMOTED_TAG]}},
                )
            )
            # The daily age check reads metadata only, never a value.
            secret_age.add_to_role_policy(
                iam.PolicyStatement(
                    actions=[
                        "secretsmanager:DescribeSecret",
                        "secretsmanager:ListSecretVersionIds",
                    ],
                    resources=[secret_arn],
                )
            )
        # The deploy-time run below invokes the function's current version, whose
        # invocations take that version's configuration, not $LATEST's: both get the
        # failure queue.
        self.secret_age_dead_letters = self._daily_run(
            "SecretAge",
            secret_age,
            queue_name=names.SECRET_AGE_DLQ,
            rule_name=names.SECRET_AGE_RULE,
            description="Once a day: SecretAgeDays per inventory secret",
            holds="the daily secret-age EventBridge target",
            key=key,
            also_invoked=[secret_age.current_version],
        )
        # The daily rule first fires a day after it is created, and the overdue alarm
        # counts days without a run as overdue: without a run at deploy, a new stack
        # pages on-call until the next day. Asynchronous, so a failing age check
        # (retried, then dead-lettered like a daily one) never fails the deploy.
        # After the rotation schedules: their tiers' users exist by then.
        self.age_on_deploy = triggers.Trigger(
            self,
            "SecretAgeOnDeploy",
            handler=secret_age,
            execute_after=list(self.schedules.values()),
            invocation_type=triggers.InvocationType.EVENT,
        )
        acknowledge(
            secret_age.role,  # type: ignore[arg-type]
            "AwsSolutions-IAM5",
            "The send grant on its dead-letter queue, encrypted with the platform key: "
            "limited to that one key and to calls through SQS (kms:ViaService).",
            applies_to=["Action::kms:GenerateDataKey*"],
        )
        self._previous_key_sweep(rotation_functions["rotate_iam"], key)

        # Multi-user rotation logs in as the admin user to change the others.
        admin_secret.grant_read(rotation_functions["rotate_db"])
        admin_secret.grant_read(migrate)
        for name in ("db-readonly", "db-app", "jwt-signing-key", "webhook-signing-secret"):
            self.by_name[name].grant_read(api)
        rotation_functions["rotate_iam"].add_to_role_policy(
            iam.PolicyStatement(
                sid="RotatePartnerExportKeys",
                actions=[
                    "iam:CreateAccessKey",
                    "iam:DeleteAccessKey",
                    "iam:GetUser",
                    "iam:ListAccessKeys",
                    "iam:UpdateAccessKey",
                ],
                resources=[self.partner_export_user.user_arn],
            )
        )

        # Who may read each secret; anything else reading it raises an alert.
        rotators = {spec.name: rotation_functions[spec.method] for spec in INVENTORY}
        readers: dict[str, list[lambda_.Function]] = {
            "db-readonly": [api],
            "db-app": [api],
            "db-admin": [migrate],
            "jwt-signing-key": [api],
            "iam-partner-export": [],
            "webhook-signing-secret": [api],
        }
        self.expected_readers: dict[str, list[iam.IRole]] = {}
        for name, functions in readers.items():
            roles = [fn.role for fn in [rotators[name], *functions] if fn.role is not None]
            self.expected_readers[name] = list(dict.fromkeys(roles))

    def _previous_key_sweep(self, rotate_iam: lambda_.Function, key: kms.IKey) -> None:
        """Once a day rotate_iam deactivates a previous access key whose overlap window
        has passed (functions/rotate_iam/key_sweep.py), with the calls and the secret
        reads its rotation is granted already. Only its asynchronous invocations take
        the failure queue: Secrets Manager invokes the rotation steps synchronously and
        retries them itself."""
        self.iam_key_sweep_dead_letters = self._daily_run(
            "IamKeySweep",
            rotate_iam,
            queue_name=names.IAM_KEY_SWEEP_DLQ,
            rule_name=names.IAM_KEY_SWEEP_RULE,
            description="Once a day: rotate_iam deactivates previous access keys past "
            "their overlap window",
            holds="the daily IAM key sweep's EventBridge target",
            key=key,
            # The one input the handler takes for the sweep; any other event is a
            # rotation step's and meets the rotation gate.
            event=events.RuleTargetInput.from_object(dict(SWEEP_EVENT)),
        )

    def _daily_run(
        self,
        construct_id: str,
        function: lambda_.Function,
        *,
        queue_name: str,
        rule_name: str,
        description: str,
        holds: str,
        key: kms.IKey,
        event: events.RuleTargetInput | None = None,
        also_invoked: Sequence[lambda_.IFunction] = (),
    ) -> sqs.Queue:
        """A daily EventBridge rule invoking `function`, and the queue (which the
        detection construct alarms on) where a run is kept that EventBridge could not
        deliver or that failed Lambda's retries: no day's run is lost silently.
        EventBridge's queue holds only undelivered events; Lambda runs the delivered
        ones asynchronously, so the function (and `also_invoked`) fail into it too."""
        dead_letters = dead_letter_queue(
            self, f"{construct_id}DeadLetters", queue_name=queue_name, key=key, holds=holds
        )
        events.Rule(
            self,
            f"{construct_id}Daily",
            rule_name=rule_name,
            description=description,
            schedule=events.Schedule.rate(Duration.days(1)),
            targets=[
                targets.LambdaFunction(
                    function,
                    event=event,
                    dead_letter_queue=dead_letters,
                    retry_attempts=DAILY_RUN_RETRIES,
                    max_event_age=DAILY_RUN_MAX_AGE,
                )
            ],
        )
        for invoked in (function, *also_invoked):
            invoked.configure_async_invoke(
                on_failure=FailureQueue(dead_letters),
                retry_attempts=DAILY_RUN_RETRIES,
                max_event_age=DAILY_RUN_MAX_AGE,
            )
        return dead_letters

    def _create(
        self,
        spec: SecretSpec,
        database: rds.DatabaseInstance,
        admin_secret: secretsmanager.ISecret,
    ) -> secretsmanager.ISecret:
        construct_id = spec.name
        if spec.kind == "database":
            database_secret = rds.DatabaseSecret(
                self,
                construct_id,
                username=_DB_USERS[spec.name],
                secret_name=spec.secret_name,
                encryption_key=self._key,
                master_secret=admin_secret,
            )
            database_secret.apply_removal_policy(RemovalPolicy.RETAIN)
            return database_secret.attach(database)
        if spec.kind == "generated":
            generator = secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"kind": spec.kind}),
                generate_string_key="secret",
                password_length=64,
                exclude_punctuation=True,
            )
        else:
            template: dict[str, str] = {"kind": spec.kind}
            if spec.kind == "iam-access-key":
                template["UserName"] = names.PARTNER_EXPORT_USER
            generator = secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps(template),
                generate_string_key="bootstrap",
                exclude_punctuation=True,
            )
        secret = secretsmanager.Secret(
            self,
            construct_id,
            secret_name=spec.secret_name,
            description=spec.description,
            encryption_key=self._key,
            generate_secret_string=generator,
            removal_policy=RemovalPolicy.RETAIN,
        )
        return secret
