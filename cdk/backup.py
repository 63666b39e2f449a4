"""AWS Backup for the stores that hold state: PostgreSQL and the DynamoDB tables."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_backup as backup
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from constructs import Construct

from cdk.compliance import acknowledge
from functions.shared import names


class Backups(Construct):
    """Daily backups kept 35 days, monthly kept a year, in a vault under the platform key.

    RDS automated backups and DynamoDB point-in-time recovery cover the last
    days; the vault keeps copies that survive a deleted instance or table.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        resources: Sequence[backup.BackupResource],
    ) -> None:
        super().__init__(scope, construct_id)
        self.vault = backup.BackupVault(
            self,
            "Vault",
            backup_vault_name=f"{names.PREFIX}-vault",
            encryption_key=key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.plan = backup.BackupPlan(
            self,
            "Plan",
            backup_plan_name=f"{names.PREFIX}-backups",
            backup_vault=self.vault,
            backup_plan_rules=[
                backup.BackupPlanRule(
                    rule_name="daily",
                    schedule_expression=events.Schedule.cron(hour="3", minute="0"),
                    delete_after=Duration.days(35),
                ),
                backup.BackupPlanRule(
                    rule_name="monthly",
                    schedule_expression=events.Schedule.cron(day="1", hour="4", minute="0"),
                    move_to_cold_storage_after=Duration.days(30),
                    delete_after=Duration.days(365),
                ),
            ],
        )
        selection = self.plan.add_selection("Stores", resources=list(resources))
        acknowledge(
            selection,
            "AwsSolutions-IAM4",
            "AWS Backup's selection role uses the AWS-managed backup policy, which "
            "AWS keeps current as services add backup APIs.",
            applies_to=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSBackupServiceRolePolicyForBackup"
            ],
        )
