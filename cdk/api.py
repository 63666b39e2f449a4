"""API Gateway REST API in front of the `api` function."""

from __future__ import annotations

from typing import cast

from aws_cdk import Fn, RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.compliance import acknowledge, skip_checkov
from functions.api.middleware.security_headers import GATEWAY_RESPONSE_HEADERS
from functions.shared import names

# Without a policy of its own, a regional API's default execute-api endpoint keeps
# the legacy TLS_1_0 policy and accepts TLS 1.0 and 1.1. This enhanced policy takes
# TLS 1.3, and TLS 1.2 with ECDHE AES-GCM suites only: forward secrecy, hybrid
# post-quantum key exchange, no CBC (AWS "Supported security policies" for Regional
# APIs). A custom domain added here takes the same policy and access mode.
TLS_SECURITY_POLICY = "SecurityPolicy_TLS13_1_2_PFS_PQ_2025_09"
# An enhanced policy needs an access mode. STRICT also refuses a request whose TLS
# SNI does not match its Host; AWS's path for an API already in use is BASIC
# first, STRICT once the access logs are checked, and going back from STRICT
# leaves the endpoint unavailable for about 15 minutes.
ENDPOINT_ACCESS_MODE = "BASIC"

# API Gateway's throttle is a token bucket refilled at the stage's rate limit every
# second, so a request refused by it finds a token again within one second.
THROTTLED_RETRY_AFTER_SECONDS = 1
# The body of the platform's other 429s (the WAF rate rule's, cdk/waf.py), with the
# request id the gateway can add and WAF cannot.
THROTTLED_BODY_TEMPLATE = (
    '{"error":{"code":"rate_limited",'
    f'"message":"Too many requests. Retry after {THROTTLED_RETRY_AFTER_SECONDS} second.",'
    '"correlation_id":"$context.requestId"}}'
)

# One JSON object per request. `ip` is API Gateway's own view of the caller
# (the TCP peer), the same value the function trusts.
# API Gateway puts a variable's value into the format as it is, escaping nothing, so
# only values the gateway makes or checks itself are logged here: a user agent or a
# path the client writes could close the string and add fields (`"ip":"<someone
# else>"`) or break the line's JSON. The WAF's log keeps both for every request
# (`httpRequest.uri`, `httpRequest.headers`), JSON-encoded by AWS.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
    "wafResponseCode": "$context.wafResponseCode",
    "wafError": "$context.waf.error",
    "xrayTraceId": "$context.xrayTraceId",
}


def gateway_security_headers() -> dict[str, str]:
    """SECURITY_HEADERS as API Gateway's static header mappings ('value').

    The Content-Security-Policy is left out: its 'none' carries single quotes,
    which a static mapping cannot hold (AWS documents no escape for a quote inside
    one, and a wrong value fails the deploy). A gateway error is a short JSON body
    sent with nosniff and X-Frame-Options DENY, so it is neither rendered nor framed.
    The audit knows these answers by `x-amzn-ErrorType` and does not require the CSP
    on them (ops/audit.py); the local edge renders them with these headers too
    (ops/local_edge.py).
    """
    return {name: f"'{value}'" for name, value in GATEWAY_RESPONSE_HEADERS.items()}


class Api(Construct):
    """A regional REST API: every path proxied to the function.

    Routing, authentication and body validation live in the function
    (Powertools resolver with pydantic models); the gateway validates request
    parameters, throttles the stage, logs every request as JSON and traces it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: lambda_.IFunction,
        key: kms.IKey,
        log_retention: logs.RetentionDays,
        rate_limit: int,
        burst_limit: int,
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            log_group_name=names.API_ACCESS_LOG_GROUP,
            retention=log_retention,
            encryption_key=key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.rest_api = apigateway.RestApi(
            self,
            "RestApi",
            rest_api_name=names.REST_API,
            description="BabyShield recall API",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigateway.StageOptions(
                stage_name=names.API_STAGE,
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.custom(_json_access_log_format()),
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # full request logging would write tokens to logs
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
            ),
        )
        # The L2 RestApi has no props for these; the L1 has.
        cfn_rest_api = cast(apigateway.CfnRestApi, self.rest_api.node.default_child)
        cfn_rest_api.security_policy = TLS_SECURITY_POLICY
        cfn_rest_api.endpoint_access_mode = ENDPOINT_ACCESS_MODE
        # AWS asks for a redeployment after a policy change: a new policy or mode
        # gives the deployment a new logical id, so CloudFormation makes one.
        if self.rest_api.latest_deployment is not None:
            self.rest_api.latest_deployment.add_to_logical_id(
                {"securityPolicy": TLS_SECURITY_POLICY, "endpointAccessMode": ENDPOINT_ACCESS_MODE}
            )
        self.validator = self.rest_api.add_request_validator(
            "Validator", validate_request_parameters=True, validate_request_body=True
        )
        # Every route takes a JSON object (or nothing, which the gateway
        # validates as `{}`); malformed JSON is refused before the function
        # runs. The routes' own pydantic models check the fields.
        json_object = self.rest_api.add_model(
            "JsonObject",
            content_type="application/json",
            schema=apigateway.JsonSchema(
                schema=apigateway.JsonSchemaVersion.DRAFT4,
                title="JsonObject",
                type=apigateway.JsonSchemaType.OBJECT,
            ),
        )
        integration = apigateway.LambdaIntegration(handler, proxy=True)
        models = {"application/json": json_object}
        self.rest_api.root.add_method(
            "ANY", integration, request_validator=self.validator, request_models=models
        )
        self.rest_api.root.add_resource("{proxy+}").add_method(
            "ANY",
            integration,
            request_validator=self.validator,
            request_models=models,
            request_parameters={"method.request.path.proxy": True},
        )
        self.stage = self.rest_api.deployment_stage
        # Execution logging (ERROR) makes API Gateway create this group on its first
        # error, never expiring and not encrypted, unless it already exists.
        execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=Fn.join(
                "",
                ["API-Gateway-Execution-Logs_", self.rest_api.rest_api_id, f"/{names.API_STAGE}"],
            ),
            retention=log_retention,
            encryption_key=key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.stage.node.add_dependency(execution_logs)
        # What API Gateway answers itself (the validator's 400, its throttle's 429, a
        # WAF block's 403, a timeout's 504) never reaches the function, whose last
        # step sets the security headers: they are set here as well, and the body
        # takes the API's error shape.
        for response_type, code in (
            (apigateway.ResponseType.DEFAULT_4_XX, "request_refused"),
            (apigateway.ResponseType.DEFAULT_5_XX, "gateway_error"),
        ):
            self.rest_api.add_gateway_response(
                f"Gateway{code.title().replace('_', '')}",
                type=response_type,
                response_headers=gateway_security_headers(),
                templates={
                    "application/json": (
                        f'{{"error":{{"code":"{code}",'
                        '"message":$context.error.messageString,'
                        '"correlation_id":"$context.requestId"}}'
                    )
                },
            )
        # The throttle's 429 would otherwise be DEFAULT_4XX's, with no Retry-After to
        # back off by. No usage plan, so no quota: QUOTA_EXCEEDED never answers.
        self.rest_api.add_gateway_response(
            "GatewayThrottled",
            type=apigateway.ResponseType.THROTTLED,
            status_code="429",
            response_headers={
                **gateway_security_headers(),
                "Retry-After": f"'{THROTTLED_RETRY_AFTER_SECONDS}'",
            },
            templates={"application/json": THROTTLED_BODY_TEMPLATE},
        )

        no_gateway_auth = (
            "Authentication is the API's own: public recall reads need none, and "
            "protected routes verify a JWT in the function's middleware; /admin is "
            "also behind the WAF allowlist."
        )
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            acknowledge(self.rest_api, rule, no_gateway_auth)
        acknowledge(
            self.rest_api,
            "AwsSolutions-IAM4",
            "API Gateway's account-level CloudWatch role needs this AWS-managed "
            "policy to write execution logs.",
            applies_to=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs"
            ],
        )
        for method in self.rest_api.methods:
            skip_checkov(method, "CKV_AWS_59", no_gateway_auth)
        no_cache = (
            "No response cache: answers depend on the caller's token and must not be "
            "served to another caller."
        )
        skip_checkov(self.stage, "CKV_AWS_120", no_cache)
        acknowledge(self.stage, "NIST.800.53.R5-APIGWCacheEnabledAndEncrypted", no_cache)
        acknowledge(
            self.stage,
            "NIST.800.53.R5-APIGWSSLEnabled",
            "A stage client certificate authenticates API Gateway to an HTTP backend; "
            "this stage's only integration is Lambda, invoked through IAM.",
        )


def _json_access_log_format() -> str:
    parts = [f'"{field}":"{value}"' for field, value in ACCESS_LOG_FIELDS.items()]
    return "{" + ",".join(parts) + "}"
