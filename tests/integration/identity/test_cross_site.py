"""Cross-site request forgery has nothing to ride on.

A browser attaches cookies to a cross-site request by itself; it never attaches
an `Authorization` or `X-API-Key` header it was not told to send, and a page on
another origin can send a JSON body only after a CORS preflight the API does not
grant. So the API stays out of reach of a forged request as long as it never
takes a credential from a cookie, never sets one, answers no preflight with CORS
grants, and refuses the bodies an HTML form can send.
"""

from __future__ import annotations

import json

import pytest

from tests.support.api import ApiResponse, call_api

CROSS_ORIGIN = "https://attacker.example"
SIGN_IN = {"email": "parent@example.com", "password": "correct horse"}  # pragma: allowlist secret
CORS_GRANTS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
)


def assert_no_cookie_and_no_cors_grant(response: ApiResponse) -> None:
    assert response.header("Set-Cookie") is None
    for name in CORS_GRANTS:
        assert response.header(name) is None, name


def test_credentials_sent_in_a_cookie_authenticate_nothing(world):
    # Given a user with a valid access token and a valid API key
    user_id = world.create_user("parent@example.com", "correct horse")
    token = world.token(user_id)
    api_key = world.create_key(user_id)
    cookie = f"Authorization=Bearer {token}; access_token={token}; X-API-Key={api_key}"
    # When the credentials arrive only as cookies, as a browser would send them
    me = call_api("GET", "/auth/me", headers={"Cookie": cookie, "Origin": CROSS_ORIGIN})
    subscribe = call_api(
        "POST",
        "/me/subscriptions",
        headers={"Cookie": cookie, "Origin": CROSS_ORIGIN},
        json_body={"product": "crib"},
    )
    # Then neither request is the user's
    assert me.status == 401
    assert subscribe.status == 401
    assert world.query("SELECT count(*) FROM subscriptions")[0][0] == 0
    # And the same token in its header does work (the cookie was the only difference)
    header_me = call_api("GET", "/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert header_me.status == 200


def test_no_answer_sets_a_cookie_or_grants_a_cross_origin_read(world):
    user_id = world.create_user("parent@example.com", "correct horse")
    token = world.token(user_id)
    api_key = world.create_key(user_id)
    origin = {"Origin": CROSS_ORIGIN}
    answers = [
        call_api(
            "POST",
            "/auth/login",
            headers=origin,
            json_body=SIGN_IN,
        ),
        call_api("GET", "/auth/me", headers={**origin, "Authorization": f"Bearer {token}"}),
        call_api("GET", "/recalls", headers={**origin, "X-API-Key": api_key}),
        call_api("GET", "/health", headers=origin),
        # The preflight a page must pass before it may send a JSON body or a header
        call_api(
            "OPTIONS",
            "/me/subscriptions",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        ),
    ]
    assert [answer.status for answer in answers[:4]] == [200, 200, 200, 200]
    # The preflight is refused, not granted
    assert answers[4].status >= 400
    for answer in answers:
        assert_no_cookie_and_no_cors_grant(answer)


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"],
)
def test_a_body_an_html_form_can_send_is_refused_before_sign_in(world, content_type):
    # Given a user, and a form on another site posting their credentials as JSON
    # text (text/plain is how a form smuggles JSON without a preflight)
    world.create_user("parent@example.com", "correct horse")
    body = json.dumps(SIGN_IN)
    # When the form posts to the sign-in route
    response = call_api(
        "POST",
        "/auth/login",
        headers={"Content-Type": content_type, "Origin": CROSS_ORIGIN},
        body=body,
    )
    # Then it is refused for its media type and no token is handed out
    assert response.status == 415
    assert "access_token" not in response.body
    assert_no_cookie_and_no_cors_grant(response)
