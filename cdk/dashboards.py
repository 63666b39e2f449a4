"""CloudWatch dashboards: WAF, authentication, rotation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from cdk.detection import waf_blocked_metric
from functions.shared import names
from functions.shared.inventory import INVENTORY

PERIOD = Duration.minutes(5)


def _metric(name: str, dimensions: Mapping[str, str] | None = None) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=names.METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": names.METRICS_SERVICE, **(dimensions or {})},
        statistic="Sum",
        period=PERIOD,
        label=name,
    )


class Dashboards(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        web_acl_name: str,
        waf_rule_names: Sequence[str],
        waf_log_group_name: str,
        rotation_functions: Mapping[str, lambda_.Function],
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region

        self.waf = cloudwatch.Dashboard(
            self,
            "Waf",
            dashboard_name=names.DASHBOARD_WAF,
            widgets=[
                [
                    cloudwatch.GraphWidget(
                        title="Blocked requests by rule",
                        left=[
                            waf_blocked_metric(web_acl_name, region, rule).with_(label=rule)
                            for rule in waf_rule_names
                        ],
                        width=12,
                        stacked=True,
                    ),
                    cloudwatch.GraphWidget(
                        title="Allowed and blocked (all rules)",
                        left=[
                            cloudwatch.Metric(
                                namespace="AWS/WAFV2",
                                metric_name="AllowedRequests",
                                dimensions_map={
                                    "WebACL": web_acl_name,
                                    "Region": region,
                                    "Rule": "ALL",
                                },
                                statistic="Sum",
                                period=PERIOD,
                            ),
                            waf_blocked_metric(web_acl_name, region),
                        ],
                        width=12,
                    ),
                ],
                [
                    cloudwatch.LogQueryWidget(
                        title="Top blocked client IPs",
                        log_group_names=[waf_log_group_name],
                        query_lines=[
                            "fields httpRequest.clientIp",
                            'filter action = "BLOCK"',
                            "stats count(*) as requests by httpRequest.clientIp",
                            "sort requests desc",
                            "limit 20",
                        ],
                        width=12,
                    ),
                    cloudwatch.LogQueryWidget(
                        title="Requests by country and action",
                        log_group_names=[waf_log_group_name],
                        query_lines=[
                            "fields httpRequest.country, action",
                            "stats count(*) as requests by httpRequest.country, action",
                            "sort requests desc",
                            "limit 30",
                        ],
                        width=12,
                    ),
                ],
            ],
        )

        self.auth = cloudwatch.Dashboard(
            self,
            "Authentication",
            dashboard_name=names.DASHBOARD_AUTH,
            widgets=[
                [
                    cloudwatch.GraphWidget(
                        title=title,
                        left=[_metric(metric)],
                        width=6,
                    )
                    for title, metric in (
                        ("Failed sign-ins", names.METRIC_FAILED_SIGNINS),
                        ("Token validation errors", names.METRIC_TOKEN_VALIDATION_ERRORS),
                        ("Account lockouts", names.METRIC_LOCKOUTS),
                        ("Refused by an account lock", names.METRIC_SIGN_INS_REFUSED_LOCKED),
                    )
                ]
            ],
        )

        # Rotations run every 30 to 90 days and the age check once a day: on CloudWatch's
        # default three hours, the age graph and the last results would open empty.
        longest_period = max(spec.period_days for spec in INVENTORY)
        self.rotation = cloudwatch.Dashboard(
            self,
            "Rotation",
            dashboard_name=names.DASHBOARD_ROTATION,
            start=f"-P{longest_period}D",
            widgets=[
                [
                    cloudwatch.GraphWidget(
                        title="Secret age (days) against its rotation period",
                        left=[
                            _metric(names.METRIC_SECRET_AGE_DAYS, {"secret": spec.name}).with_(
                                statistic="Maximum", label=f"{spec.name} (≤{spec.period_days})"
                            )
                            for spec in INVENTORY
                        ],
                        width=12,
                    ),
                    cloudwatch.SingleValueWidget(
                        title="Rotations in the last 24 hours",
                        metrics=[
                            _metric(names.METRIC_ROTATION_SUCCESSES).with_(period=Duration.days(1)),
                            _metric(names.METRIC_ROTATION_FAILURES).with_(period=Duration.days(1)),
                        ],
                        # One value over exactly the last day, whatever the dashboard shows.
                        start="-P1D",
                        set_period_to_time_range=True,
                        width=12,
                    ),
                ],
                [
                    cloudwatch.GraphWidget(
                        title="Rotation function errors",
                        left=[
                            function.metric_errors(period=PERIOD, label=package)
                            for package, function in rotation_functions.items()
                        ],
                        width=12,
                    ),
                    cloudwatch.LogQueryWidget(
                        title="Last result per secret and step",
                        log_group_names=[
                            f"/aws/lambda/{names.function_name(package)}"
                            for package in rotation_functions
                        ],
                        query_lines=[
                            "fields @timestamp, secret, step, level, message",
                            "filter ispresent(step)",
                            "stats latest(level) as result, latest(message) as detail, "
                            "max(@timestamp) as at by secret, step",
                            "sort at desc",
                        ],
                        width=12,
                    ),
                ],
            ],
        )
