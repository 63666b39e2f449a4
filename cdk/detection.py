"""Detection and response: state tables, on-call topic, alarms and the event wiring.

An alarm on WAF blocks or failed sign-ins fires an EventBridge "CloudWatch Alarm
State Change" event that invokes `waf_responder` (retried, with a dead-letter
queue); a 5-minute schedule runs its expiry sweep; CloudTrail management events
raise an alert when a secret is read by a role that is not one of its readers
(CloudFormation's reads for the deploy aside: `_unexpected_readers`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from aws_cdk import ArnFormat, DefaultStackSynthesizer, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.compliance import acknowledge, skip_checkov
from cdk.keys import grant_key_through
from cdk.queues import FailureQueue, dead_letter_queue
from functions.shared import names

FIVE_MINUTES = Duration.minutes(5)
RESPONDER_RETRIES = 4
# CloudTrail's `userIdentity.invokedBy` for a call CloudFormation makes on a
# principal's behalf, as it does when it deploys the stack.
CLOUDFORMATION = "cloudformation.amazonaws.com"

# Function package -> table -> the DynamoDB actions its code calls on that table,
# each for the reason given. Only these are granted, per table (CDK's read/write
# data grant is twelve actions, Scan and the stream reads among them, on every
# table it names). The API's code never touches the idempotency table, so it has
# no grant there. tests/infrastructure/test_function_permissions.py holds each
# role to this mapping and to the calls the code makes.
TABLE_ACTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "api": {
        names.RATE_LIMIT_TABLE: (
            # A rate-limit hit, a sign-in failure's count and its lock: conditional updates.
            "dynamodb:UpdateItem",
            # A sign-in failure count that starts over once its window has passed.
            "dynamodb:PutItem",
            # Sign-in reads the account's and the source IP's lock in one request.
            "dynamodb:BatchGetItem",
            # A correct password clears the account's failure count.
            "dynamodb:DeleteItem",
        ),
        names.WEBHOOK_NONCE_TABLE: (
            # Claiming a webhook id (a conditional put: a replay finds it taken).
            "dynamodb:PutItem",
            # Releasing it when processing failed, so the sender's retry is not a replay.
            "dynamodb:DeleteItem",
            # Settling it once the recall is stored (the claim's lease is removed), and
            # noting which version of the webhook secret signed it.
            "dynamodb:UpdateItem",
            # A signed delivery refused before the replay check: a replay of one
            # received already pages no one (functions/api/recalls/feed.py).
            "dynamodb:GetItem",
        ),
        names.BLOCK_REGISTRY_TABLE: (
            # /admin/blocks lists the registry, and every IP set sync reads it whole.
            "dynamodb:Scan",
            # Block and unblock put and delete entries in batches of 25.
            "dynamodb:BatchWriteItem",
            # ... after claiming each with a conditional put (blocks.BlockRegistry.claim).
            "dynamodb:PutItem",
        ),
    },
    "rotate_iam": {
        # A routine rotation of the webhook secret reads which version the sender last
        # signed with (functions/rotate_iam/generated.py).
        names.WEBHOOK_NONCE_TABLE: ("dynamodb:GetItem",),
    },
    "secret_age": {
        # The daily check reads which version of the webhook secret the feed last
        # signed with (functions/shared/rotation/age.py).
        names.WEBHOOK_NONCE_TABLE: ("dynamodb:GetItem",),
    },
    "waf_responder": {
        # The same registry operations as the API's (functions/shared/blocks.py).
        names.BLOCK_REGISTRY_TABLE: (
            "dynamodb:Scan",
            "dynamodb:BatchWriteItem",
            # Each block is claimed with a conditional put (blocks.BlockRegistry.claim).
            "dynamodb:PutItem",
        ),
        # Powertools idempotency (DynamoDBPersistenceLayer): reads a record, claims it
        # with a conditional put, completes it, and deletes it when handling fails so
        # that EventBridge's retry runs the flow again.
        names.IDEMPOTENCY_TABLE: (
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        ),
    },
}
# Table.grant leaves the table's key out. DynamoDB uses the key on the caller's
# behalf for reads and writes; these are the key actions CDK's data grants give on
# a table encrypted with a customer managed key, kept as they were.
TABLE_KEY_ACTIONS = (
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
)


# What a publisher needs of an encrypted topic's key (SNS makes and reads data keys).
PUBLISH_KEY_ACTIONS = ("kms:GenerateDataKey*", "kms:Decrypt")


def _custom_metric(name: str, statistic: str = "Sum") -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=names.METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": names.METRICS_SERVICE},
        statistic=statistic,
        period=FIVE_MINUTES,
    )


def _sustained_failure_alarm(
    scope: Construct, construct_id: str, *, alarm_name: str, metric: str, description: str
) -> cloudwatch.Alarm:
    """A failure the code survives by design (logged and counted, no retry to a
    DLQ): one blip passes, ten minutes of it page on-call."""
    return cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=alarm_name,
        alarm_description=description,
        metric=_custom_metric(metric),
        threshold=1,
        evaluation_periods=2,
        datapoints_to_alarm=2,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


# How long a new daily-run alarm waits before its first evaluation: the deploy's run
# is queued (Lambda retries a failed one after about 1 and 3 minutes), runs, and its
# EMF line becomes a datapoint in CloudWatch.
DAILY_RUN_WARM_UP_MINUTES = 30


def _daily_run_alarm(
    scope: Construct,
    construct_id: str,
    *,
    alarm_name: str,
    metric: str,
    description: str,
    days: int,
    missing_breaches: bool,
) -> cloudwatch.Alarm:
    """On a value the daily secret-age run reports once (Maximum per day): pages when
    it is at least 1 on `days` days running; `missing_breaches`: a day without it
    counts as breaching too.

    Such an alarm waits out a warm-up after it is created or changed: the deploy's
    own run (SecretAgeOnDeploy) is only queued when CloudFormation creates it, and
    evaluated at once, with no datapoint yet, it would page that a secret is overdue.
    """
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=alarm_name,
        alarm_description=description,
        metric=_custom_metric(metric, "Maximum").with_(period=Duration.days(1)),
        threshold=1,
        evaluation_periods=days,
        datapoints_to_alarm=days,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=(
            cloudwatch.TreatMissingData.BREACHING
            if missing_breaches
            else cloudwatch.TreatMissingData.NOT_BREACHING
        ),
    )
    if missing_breaches:
        cfn = cast(cloudwatch.CfnAlarm, alarm.node.default_child)
        cfn.warm_up_configuration = cloudwatch.CfnAlarm.WarmUpConfigurationProperty(
            warm_up_period_duration_in_minutes=DAILY_RUN_WARM_UP_MINUTES
        )
    return alarm


def _queue_not_empty_alarm(
    scope: Construct, construct_id: str, queue: sqs.IQueue, *, alarm_name: str, description: str
) -> cloudwatch.Alarm:
    """Pages as soon as a dead-letter queue holds anything: each message is work lost."""
    return cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=alarm_name,
        alarm_description=description,
        metric=queue.metric_approximate_number_of_messages_visible(
            period=FIVE_MINUTES, statistic="Maximum"
        ),
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


def waf_blocked_metric(web_acl_name: str, region: str, rule: str = "ALL") -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/WAFV2",
        metric_name="BlockedRequests",
        dimensions_map={"WebACL": web_acl_name, "Region": region, "Rule": rule},
        statistic="Sum",
        period=FIVE_MINUTES,
    )


def waf_evidence_metric(web_acl_name: str, region: str) -> cloudwatch.MathExpression:
    """Blocked requests that are evidence of an attack: every rule's blocks but the
    auto-block rules' own, which the responder's query leaves out too. Counted with
    them, an address blocked for hours that keeps knocking held the alarm in ALARM,
    and a second attack in that time raised no new alarm."""
    return cloudwatch.MathExpression(
        expression="FILL(blocked, 0) - FILL(autov4, 0) - FILL(autov6, 0)",
        using_metrics={
            "blocked": waf_blocked_metric(web_acl_name, region),
            "autov4": waf_blocked_metric(web_acl_name, region, names.AUTO_BLOCK_RULE_V4),
            "autov6": waf_blocked_metric(web_acl_name, region, names.AUTO_BLOCK_RULE_V6),
        },
        period=FIVE_MINUTES,
        label="Blocked requests but the auto-block rules'",
    )


def _grant_table(table: dynamodb.Table, function: lambda_.Function, actions: Sequence[str]) -> None:
    """`actions` on this table only, and the use of its key that DynamoDB needs."""
    table.grant(function, *actions)
    key = table.encryption_key
    if key is None:  # pragma: no cover - _table always gives the platform key
        raise ValueError(f"{table.node.path} has no key of its own to grant")
    grant_key_through(function, key, "dynamodb", TABLE_KEY_ACTIONS)


def _deploy_role_arn(stack: Stack) -> str:
    """The role CloudFormation deploys the stack with: CDK's bootstrap execution role."""
    synthesizer = stack.synthesizer
    if not isinstance(synthesizer, DefaultStackSynthesizer):
        # Another synthesizer deploys with another role: the secret-read rules must
        # be told which one, or every deploy pages on-call again.
        raise TypeError(
            f"{stack.stack_name} uses {type(synthesizer).__name__}; the unexpected-secret-read "
            "rules know only the DefaultStackSynthesizer's CloudFormation execution role"
        )
    # The synthesizer's ARN keeps ${AWS::Partition} (and the account, when the stack
    # has none) as placeholders for the CLI: Fn::Sub fills them in the template.
    return Fn.sub(synthesizer.cloud_formation_execution_role_arn)


def _unexpected_readers(readers: Sequence[str], *, deploy_role_arn: str) -> list[object]:
    """The callers whose GetSecretValue pages on-call (the branches of one "$or").

    Every role but the secret's readers, however it called, except the deploy role
    when CloudFormation read for it (`{{resolve:secretsmanager:...}}`, the secret
    target attachments): CloudTrail names the service that made a call on a
    principal's behalf in `invokedBy`, and only AWS writes the field. The deploy role
    calling itself, or through any other service, still pages; so does CloudFormation
    reading for anyone else (a stack of theirs could resolve the secret into a
    resource they can read). EventBridge's anything-but never matches a field that is
    absent, so a direct call (no invokedBy) is a branch of its own.
    """

    def issuer(arns: list[object]) -> dict[str, object]:
        return {"sessionContext": {"sessionIssuer": {"arn": arns}}}

    not_a_reader = issuer([{"anything-but": list(readers)}])
    return [
        {"userIdentity": {**not_a_reader, "invokedBy": [{"exists": False}]}},
        {"userIdentity": {**not_a_reader, "invokedBy": [{"anything-but": CLOUDFORMATION}]}},
        {
            "userIdentity": {
                **issuer([{"anything-but": [*readers, deploy_role_arn]}]),
                "invokedBy": [CLOUDFORMATION],
            }
        },
        # IAM users and the root user carry no session issuer: they page, whoever
        # made the call.
        {"userIdentity": {"type": ["IAMUser", "Root"]}},
    ]


class DetectionAndResponse(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        log_retention: logs.RetentionDays,
        rest_api: apigateway.RestApi,
        api: lambda_.Function,
        waf_responder: lambda_.Function,
        rotate_iam: lambda_.Function,
        secret_age: lambda_.Function,
        rotation_functions: Sequence[lambda_.Function],
        web_acl_name: str,
        secret_readers: Mapping[str, Sequence[iam.IRole]],
        waf_blocked_threshold: int,
        failed_signin_threshold: int,
        api_5xx_threshold: int,
        oncall_email: str | None,
        secret_age_dead_letters: sqs.IQueue,
        iam_key_sweep_dead_letters: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._key = key

        # --- state -------------------------------------------------------
        self.rate_limits = self._table("RateLimits", names.RATE_LIMIT_TABLE)
        self.webhook_nonces = self._table("WebhookNonces", names.WEBHOOK_NONCE_TABLE)
        self.block_registry = self._table("BlockRegistry", names.BLOCK_REGISTRY_TABLE)
        self.idempotency = self._table("Idempotency", names.IDEMPOTENCY_TABLE)
        self.tables = [self.rate_limits, self.webhook_nonces, self.block_registry, self.idempotency]
        tables_by_name = {
            names.RATE_LIMIT_TABLE: self.rate_limits,
            names.WEBHOOK_NONCE_TABLE: self.webhook_nonces,
            names.BLOCK_REGISTRY_TABLE: self.block_registry,
            names.IDEMPOTENCY_TABLE: self.idempotency,
        }
        functions = {
            "api": api,
            "rotate_iam": rotate_iam,
            "secret_age": secret_age,
            "waf_responder": waf_responder,
        }
        for package, table_actions in TABLE_ACTIONS.items():
            for table_name, actions in table_actions.items():
                _grant_table(tables_by_name[table_name], functions[package], actions)
        for function in functions.values():
            acknowledge(
                function.role,  # type: ignore[arg-type]
                "AwsSolutions-IAM5",
                "DynamoDB (and, for the responder, SNS and SQS) use the platform key on "
                "the caller's behalf (TABLE_KEY_ACTIONS and the publish and send grants); "
                "each KMS grant is limited to that one key and to calls through its service "
                "(kms:ViaService).",
                applies_to=["Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"],
            )

        # --- on-call -----------------------------------------------------
        self.topic = sns.Topic(
            self,
            "OnCall",
            topic_name=names.ONCALL_TOPIC,
            display_name="BabyShield on-call",
            master_key=key,
            enforce_ssl=True,
        )
        if oncall_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(oncall_email))
        # The topic's policy replaces SNS's default one, so the alarms' publisher is
        # named: CloudWatch, for this account's alarms only.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsOfThisStackPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name=f"{names.PREFIX}-*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                    "StringEquals": {"aws:SourceAccount": stack.account},
                },
            )
        )
        # CDK's EventBridge target allows events.amazonaws.com without a condition:
        # any account's rule could then page on-call. Only this stack's rules may.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyThisStacksRulesPublish",
                effect=iam.Effect.DENY,
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "ArnNotLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="events", resource="rule", resource_name=f"{names.PREFIX}-*"
                        )
                    }
                },
            )
        )
        waf_responder.add_to_role_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn])
        )
        grant_key_through(waf_responder, key, "sns", PUBLISH_KEY_ACTIONS)
        waf_responder.add_environment("ONCALL_TOPIC_ARN", self.topic.topic_arn)
        notify = cloudwatch_actions.SnsAction(self.topic)

        # --- alarms ------------------------------------------------------
        self.waf_blocked_alarm = cloudwatch.Alarm(
            self,
            "WafBlocked",
            alarm_name=names.ALARM_WAF_BLOCKED,
            alarm_description="WAF blocked more requests than usual: likely an attack",
            metric=waf_evidence_metric(web_acl_name, stack.region),
            threshold=waf_blocked_threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.waf_rate_alarm = cloudwatch.Alarm(
            self,
            "WafRateLimited",
            alarm_name=names.ALARM_WAF_RATE,
            alarm_description="Callers hit the per-IP rate limit",
            metric=waf_blocked_metric(web_acl_name, stack.region, names.RATE_RULE),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.failed_signins_alarm = cloudwatch.Alarm(
            self,
            "FailedSignIns",
            alarm_name=names.ALARM_FAILED_SIGNINS,
            alarm_description="Failed sign-ins above normal: credential stuffing or brute force",
            metric=_custom_metric(names.METRIC_FAILED_SIGNINS),
            threshold=failed_signin_threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        # These alarms count every client over one period; the responder blocks a client
        # whose own count over its offender window (15 minutes, holding that period)
        # reaches the same threshold: one that sets an alarm off alone is always found,
        # none is blocked on less. Left to the responder's defaults, a threshold tuned in
        # context would part them (an alarm whose look finds nobody, or the reverse).
        waf_responder.add_environment("BLOCKED_REQUESTS_THRESHOLD", str(waf_blocked_threshold))
        waf_responder.add_environment("FAILED_SIGN_INS_THRESHOLD", str(failed_signin_threshold))
        # A failed rotation shows as the functions' own failure metric or as a
        # Lambda error (a crash before the metric is flushed); either alarms.
        rotation_terms = {"failures": _custom_metric(names.METRIC_ROTATION_FAILURES)}
        for index, function in enumerate(rotation_functions):
            rotation_terms[f"errors{index}"] = function.metric_errors(period=FIVE_MINUTES)
        self.rotation_alarm = cloudwatch.Alarm(
            self,
            "RotationFailures",
            alarm_name=names.ALARM_ROTATION_FAILURES,
            alarm_description="A secret rotation failed; the secret keeps its old value",
            metric=cloudwatch.MathExpression(
                expression=f"FILL({' , 0) + FILL('.join(rotation_terms)}, 0)",
                using_metrics=rotation_terms,
                period=FIVE_MINUTES,
                label="rotation failures and errors",
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.api_5xx_alarm = cloudwatch.Alarm(
            self,
            "Api5xx",
            alarm_name=names.ALARM_API_5XX,
            alarm_description="The API answers with server errors",
            metric=rest_api.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
            threshold=api_5xx_threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        # A delivery the recall feed signed, refused for what it holds (an attack
        # shape, a body that is not JSON, a recall the event model does not take): a
        # recall not published, which every retry of the feed meets again.
        self.feed_refused_alarm = cloudwatch.Alarm(
            self,
            "FeedDeliveryRefused",
            alarm_name=names.ALARM_FEED_DELIVERY_REFUSED,
            alarm_description="A signed recall-feed delivery was refused for what it "
            "holds: a recall not stored (RUNBOOK, 'A signed feed delivery was refused')",
            metric=_custom_metric(names.METRIC_FEED_DELIVERIES_REFUSED),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        # The API lets a keyed request through when its per-key limiter cannot ask
        # DynamoDB (functions/api/middleware/authentication.py): a control that is
        # off until someone notices.
        self.rate_limiter_alarm = _sustained_failure_alarm(
            self,
            "RateLimiterUnavailable",
            alarm_name=f"{names.PREFIX}-rate-limiter-unavailable",
            metric=names.METRIC_RATE_LIMITER_UNAVAILABLE,
            description="Per-key rate limits are failing open: DynamoDB cannot be asked",
        )
        # A sweep's recheck of an alarm still in ALARM that fails is logged and
        # counted, and fails the sweep's invocation, which Lambda retries and then
        # dead-letters; this pages sooner, on failures in a row.
        self.responder_errors_alarm = _sustained_failure_alarm(
            self,
            "ResponderErrors",
            alarm_name=f"{names.PREFIX}-waf-responder-errors",
            metric=names.METRIC_WAF_RESPONDER_ERRORS,
            description="waf_responder keeps failing to look for offenders or to sweep "
            "(RUNBOOK, 'The WAF responder failed')",
        )
        # One SecretsOverdue datapoint per daily run (functions/shared/rotation/age.py).
        # Two daily periods: a late run, or a secret met on its due day before its
        # rotation window, does not page; two days overdue, or without a run, do.
        self.secrets_overdue_alarm = _daily_run_alarm(
            self,
            "SecretsOverdue",
            alarm_name=f"{names.PREFIX}-secrets-overdue",
            metric=names.METRIC_SECRETS_OVERDUE,
            description="A secret is past its rotation period or unreadable, or the "
            "daily secret-age check has stopped reporting (RUNBOOK, 'A secret is overdue "
            "for rotation')",
            days=2,
            missing_breaches=True,
        )
        # One datapoint per daily run: 1 while the feed's last accepted delivery was
        # signed with another version of the webhook secret than AWSCURRENT. Right
        # after a rotation that is the reminder to give the feed its new secret; left
        # alone, the next routine rotation is refused for it
        # (functions/rotate_iam/generated.py). After an emergency rotation, which
        # retires the old value at once, the feed's deliveries are 401s that no other
        # alarm counts. No datapoint (the run failed or could not read it) is the
        # overdue alarm's to catch.
        self.feed_on_previous_alarm = _daily_run_alarm(
            self,
            "WebhookFeedOnPreviousSecret",
            alarm_name=f"{names.PREFIX}-webhook-feed-on-previous-secret",
            metric=names.METRIC_WEBHOOK_FEED_ON_PREVIOUS,
            description="The recall feed still signs with the previous webhook "
            "secret, or one an emergency rotation retired (its deliveries are refused): "
            "give it the current one (RUNBOOK, 'The webhook secret rotated')",
            days=1,
            missing_breaches=False,
        )
        # One datapoint per daily run: rotations unfinished for over an hour. The
        # RotationFailures alarm pages when a step fails; this one pages again the
        # next day while the rotation is left stopped (an emergency's leaked value
        # not retired, every later rotation of the secret refused).
        self.rotations_stuck_alarm = _daily_run_alarm(
            self,
            "RotationsStuck",
            alarm_name=f"{names.PREFIX}-rotation-stuck",
            metric=names.METRIC_ROTATIONS_STUCK,
            description="A secret's rotation has been left unfinished: resume or cancel "
            "it (RUNBOOK, 'A rotation failed')",
            days=1,
            missing_breaches=False,
        )
        self.rotation_drift_alarm = _daily_run_alarm(
            self,
            "RotationSettingsDrift",
            alarm_name=f"{names.PREFIX}-rotation-settings-drift",
            metric=names.METRIC_ROTATION_SETTINGS_DRIFT,
            description="A secret's rotation is off, scheduled less often than its "
            "period, or runs another function (RUNBOOK, 'Rotation switched off or "
            "re-scheduled')",
            days=1,
            missing_breaches=False,
        )
        self.alarms = [
            self.waf_blocked_alarm,
            self.waf_rate_alarm,
            self.failed_signins_alarm,
            self.rotation_alarm,
            self.api_5xx_alarm,
            self.feed_refused_alarm,
            self.rate_limiter_alarm,
            self.responder_errors_alarm,
            self.secrets_overdue_alarm,
            self.feed_on_previous_alarm,
            self.rotations_stuck_alarm,
            self.rotation_drift_alarm,
        ]

        # --- alarm -> responder ------------------------------------------
        self.dead_letters = dead_letter_queue(
            self,
            "ResponderDeadLetters",
            queue_name=names.WAF_RESPONDER_DLQ,
            key=key,
            holds="the responder's EventBridge targets",
        )
        dead_letter_alarm = _queue_not_empty_alarm(
            self,
            "ResponderDeadLettersAlarm",
            self.dead_letters,
            alarm_name=f"{names.WAF_RESPONDER_DLQ}-not-empty",
            description="waf_responder could not be sent, or could not handle, an attack "
            "or sweep event: its blocks may be unannounced (RUNBOOK, 'The WAF responder "
            "failed')",
        )
        self.alarms.append(dead_letter_alarm)
        self.alarms.append(
            _queue_not_empty_alarm(
                self,
                "SecretAgeDeadLettersAlarm",
                secret_age_dead_letters,
                alarm_name=f"{names.SECRET_AGE_DLQ}-not-empty",
                description="The daily secret-age check failed after its retries",
            )
        )
        self.alarms.append(
            _queue_not_empty_alarm(
                self,
                "IamKeySweepDeadLettersAlarm",
                iam_key_sweep_dead_letters,
                alarm_name=f"{names.IAM_KEY_SWEEP_DLQ}-not-empty",
                description="The daily sweep of previous IAM access keys failed after its "
                "retries: a key past its overlap window may still be active (RUNBOOK, "
                "'The IAM key sweep failed')",
            )
        )
        for alarm in self.alarms:
            alarm.add_alarm_action(notify)

        # The alarms the responder acts on: their changes into ALARM start it, and
        # the sweep looks again for the offenders of one that stays in ALARM
        # (functions/waf_responder/respond.py::recheck_alarms), reading their states.
        responder_alarm_arns = [
            self.waf_blocked_alarm.alarm_arn,
            self.waf_rate_alarm.alarm_arn,
            self.failed_signins_alarm.alarm_arn,
        ]
        waf_responder.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadResponderAlarmStates",
                actions=["cloudwatch:DescribeAlarms"],
                resources=responder_alarm_arns,
            )
        )
        # EventBridge's queue holds only events it could not deliver; Lambda runs the
        # delivered ones asynchronously, and an alarm the responder failed to act on
        # after Lambda's retries lands here too, so the alarm above pages on-call.
        waf_responder.configure_async_invoke(
            on_failure=FailureQueue(self.dead_letters),
            retry_attempts=2,
            max_event_age=Duration.hours(1),
        )

        def responder_target() -> targets.LambdaFunction:
            return targets.LambdaFunction(
                waf_responder,
                dead_letter_queue=self.dead_letters,
                retry_attempts=RESPONDER_RETRIES,
                max_event_age=Duration.hours(1),
            )

        self.alarm_rule = events.Rule(
            self,
            "AlarmToResponder",
            rule_name=names.WAF_ALARM_RULE,
            description="WAF and sign-in alarms entering ALARM invoke waf_responder",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                resources=responder_alarm_arns,
                detail={"state": {"value": ["ALARM"]}},
            ),
            targets=[responder_target()],
        )
        self.sweep_rule = events.Rule(
            self,
            "ExpirySweep",
            rule_name=names.WAF_SWEEP_RULE,
            description="Every 5 minutes waf_responder removes expired blocks",
            schedule=events.Schedule.rate(FIVE_MINUTES),
            targets=[responder_target()],
        )

        # --- unexpected secret reads ---------------------------------------
        self._secret_read_alerts(secret_readers, log_retention, key=key, notify=notify)

    def _table(self, construct_id: str, table_name: str) -> dynamodb.Table:
        """A table as names.TABLES declares it (the local stack creates the same)."""
        spec = next(table for table in names.TABLES if table.name == table_name)
        partition_key, ttl = spec.partition_key, spec.ttl_attribute
        return dynamodb.Table(
            self,
            construct_id,
            table_name=table_name,
            partition_key=dynamodb.Attribute(
                name=partition_key, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self._key,
            time_to_live_attribute=ttl,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _secret_read_alerts(
        self,
        secret_readers: Mapping[str, Sequence[iam.IRole]],
        log_retention: logs.RetentionDays,
        *,
        key: kms.IKey,
        notify: cloudwatch_actions.SnsAction,
    ) -> None:
        stack = Stack.of(self)
        access_logs = s3.Bucket(
            self,
            "TrailAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 access logging cannot write to SSE-KMS
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
        )
        no_self_logging = (
            "This bucket receives the trail bucket's access logs; logging it to itself would loop."
        )
        acknowledge(access_logs, "AwsSolutions-S1", no_self_logging)
        skip_checkov(access_logs, "CKV_AWS_18", no_self_logging)
        acknowledge(
            access_logs,
            "NIST.800.53.R5-S3DefaultEncryptionKMS",
            "S3 server access logging can only deliver to a bucket encrypted with "
            "S3-managed keys (SSE-S3), not SSE-KMS.",
        )
        trail_bucket = s3.Bucket(
            self,
            "TrailBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self._key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="trail-bucket/",
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.trail = cloudtrail.Trail(
            self,
            "Trail",
            trail_name=names.TRAIL,
            bucket=trail_bucket,
            encryption_key=self._key,
            enable_file_validation=True,
            include_global_service_events=True,
            is_multi_region_trail=True,
            management_events=cloudtrail.ReadWriteType.ALL,
            send_to_cloud_watch_logs=True,
            cloud_watch_log_group=logs.LogGroup(
                self,
                "TrailLogs",
                retention=log_retention,
                encryption_key=self._key,
                removal_policy=RemovalPolicy.RETAIN,
            ),
        )
        single_region = (
            "The trail is multi-region and its files carry digest validation; a replica "
            "needs a bucket in a second region, which this single-region stack does not own."
        )
        for bucket in (access_logs, trail_bucket):
            acknowledge(bucket, "NIST.800.53.R5-S3BucketReplicationEnabled", single_region)
        acknowledge(
            self.trail,
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "CDK's trail-to-CloudWatch-Logs role has one inline policy for its one log "
            "group; it belongs to that role alone and is deleted with it.",
        )
        # The alerts publish with a role of this stack: CDK's default grants
        # events.amazonaws.com the topic's key in the key policy without a condition,
        # for any account's rules. An alert EventBridge could not publish after its
        # retries is kept, and its queue pages on its own.
        publisher = iam.Role(
            self,
            "SecretReadAlertPublisher",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
            description="EventBridge publishes the unexpected-secret-read alerts to on-call",
        )
        # The role publishes to the one topic, and uses the topic's key only through
        # SNS: CDK's target would grant it with topic.grantPublish, whose key statement
        # has no condition and would let the role's credentials decrypt anything made
        # under the key. The target gets a view of the role that takes no grants.
        publisher.add_to_principal_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn])
        )
        grant_key_through(publisher, key, "sns", PUBLISH_KEY_ACTIONS)
        acknowledge(
            publisher,
            "AwsSolutions-IAM5",
            "Publishing to the encrypted on-call topic needs the topic key's data keys "
            "(GenerateDataKey and its variants, which SNS picks); the grant names that "
            "one key, through SNS only (kms:ViaService).",
            applies_to=["Action::kms:GenerateDataKey*"],
        )
        acknowledge(
            publisher,
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "The role's only policy (publish to the one topic, its key through SNS) "
            "belongs to this role alone and is deleted with it.",
        )
        alert_dead_letters = dead_letter_queue(
            self,
            "SecretReadAlertDeadLetters",
            queue_name=names.SECRET_READ_ALERT_DLQ,
            key=key,
            holds="the unexpected-secret-read alerts EventBridge could not publish",
        )
        undelivered = _queue_not_empty_alarm(
            self,
            "SecretReadAlertDeadLettersAlarm",
            alert_dead_letters,
            alarm_name=f"{names.SECRET_READ_ALERT_DLQ}-not-empty",
            description="An unexpected-secret-read alert could not be published to "
            "on-call: read it from the queue",
        )
        undelivered.add_alarm_action(notify)
        self.alarms.append(undelivered)
        deploy_role_arn = _deploy_role_arn(stack)
        self.secret_read_rules: dict[str, events.Rule] = {}
        for name, roles in secret_readers.items():
            secret_id = names.secret_name(name)
            secret_arn_prefix = stack.format_arn(
                service="secretsmanager",
                resource="secret",
                resource_name=secret_id,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            rule = events.Rule(
                self,
                f"SecretRead-{name}",
                rule_name=f"{names.SECRET_READ_RULE}-{name}",
                description=f"{secret_id} read by a principal that is not one of its readers",
                event_pattern=events.EventPattern(
                    source=["aws.secretsmanager"],
                    detail_type=["AWS API Call via CloudTrail"],
                    detail={
                        "eventSource": ["secretsmanager.amazonaws.com"],
                        "eventName": ["GetSecretValue"],
                        # Callers name a secret by name or by ARN (with a suffix).
                        "requestParameters": {
                            "secretId": [
                                {"prefix": secret_id},
                                {"prefix": secret_arn_prefix},
                            ]
                        },
                        "$or": _unexpected_readers(
                            [r.role_arn for r in roles], deploy_role_arn=deploy_role_arn
                        ),
                    },
                ),
                targets=[
                    targets.SnsTopic(
                        self.topic,
                        authorize_using_role=True,
                        role=publisher.without_policy_updates(),
                        dead_letter_queue=alert_dead_letters,
                        retry_attempts=RESPONDER_RETRIES,
                        max_event_age=Duration.hours(24),
                        message=events.RuleTargetInput.from_text(
                            f"Unexpected read of {secret_id} by "
                            f"{events.EventField.from_path('$.detail.userIdentity.arn')} "
                            f"from {events.EventField.from_path('$.detail.sourceIPAddress')}"
                        ),
                    )
                ],
            )
            # A read is a read-only management event: a rule in the plain ENABLED
            # state never sees one (EventBridge delivers those only to rules that
            # ask). CloudFormation takes the state; CDK's Rule does not expose it.
            cfn_rule = rule.node.default_child
            assert isinstance(cfn_rule, events.CfnRule)
            cfn_rule.state = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
            self.secret_read_rules[name] = rule
