"""Sign-in lockout: wrong passwords for one account from one address lock that pair only, the right
password is refused while locked, failures are on the audit record, and an admin can unlock."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from audit.models import AuditChain, AuditEvent
from audit.services import verify_chain

pytestmark = pytest.mark.django_db

RIGHT = "correct horse battery staple"
ATTACKER = "203.0.113.9"
ADMIN_DESK = "198.51.100.20"


def sign_in(client, username, password, address=ATTACKER, **extra):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address, **extra)


def fail(times, username="ada", address=ATTACKER, **extra):
    client = Client()
    for _ in range(times):
        sign_in(client, username, "wrong password", address, **extra)
    return client


def signed_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/"


def test_the_right_password_is_refused_once_the_account_is_locked_from_that_address(settings, admin):
    client = fail(settings.MANDATE_LOGIN_FAILURE_LIMIT)

    response = sign_in(client, "ada", RIGHT)

    assert response.status_code == 429
    assert "locked" in response.content.decode().lower()
    assert not signed_in(response)
    assert "_auth_user_id" not in client.session


def test_fewer_failures_than_the_limit_do_not_lock(settings, admin):
    client = fail(settings.MANDATE_LOGIN_FAILURE_LIMIT - 1)
    assert signed_in(sign_in(client, "ada", RIGHT))


def test_a_lockout_from_one_address_does_not_lock_the_account_out_elsewhere(settings, admin):
    fail(settings.MANDATE_LOGIN_FAILURE_LIMIT + 3)

    assert signed_in(sign_in(Client(), "ada", RIGHT, address=ADMIN_DESK))


def test_a_forwarded_for_header_from_an_untrusted_peer_cannot_dodge_the_lockout(settings, admin):
    client = Client()
    for n in range(settings.MANDATE_LOGIN_FAILURE_LIMIT):
        sign_in(client, "ada", "wrong password", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")

    response = sign_in(client, "ada", RIGHT, HTTP_X_FORWARDED_FOR="192.0.2.200")

    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_the_key(settings, admin):
    settings.MANDATE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    fail(settings.MANDATE_LOGIN_FAILURE_LIMIT, address="10.1.2.3", HTTP_X_FORWARDED_FOR=ATTACKER)

    locked = sign_in(Client(), "ada", RIGHT, address="10.1.2.3", HTTP_X_FORWARDED_FOR=ATTACKER)
    other_client = sign_in(Client(), "ada", RIGHT, address="10.1.2.3", HTTP_X_FORWARDED_FOR=ADMIN_DESK)

    assert locked.status_code == 429
    assert signed_in(other_client)


def test_failed_sign_ins_and_the_lockout_are_on_the_audit_record_on_a_chain_of_their_own(settings, admin):
    limit = settings.MANDATE_LOGIN_FAILURE_LIMIT
    client = fail(limit)
    sign_in(client, "ada", RIGHT)  # refused while locked: counted by the lockout, not a new row
    sign_in(client, "ada", "wrong again")

    failed = AuditEvent.objects.filter(verb="account.sign_in_failed")
    assert failed.count() == limit
    assert {e.target_label for e in failed} == {"ada"}
    assert all(e.after["address"] == ATTACKER for e in failed)
    locked = AuditEvent.objects.get(verb="account.locked_out")
    assert locked.after["address"] == ATTACKER and locked.after["failures"] == limit
    # Not the global chain: failed sign-ins never queue other audit writes behind their head.
    assert set(AuditEvent.objects.filter(verb__startswith="account.").values_list("chain", flat=True)) == {"signin"}
    assert not AuditChain.objects.filter(key="global").exists()
    assert verify_chain().ok
    # Nothing the attacker typed as a password reaches the record.
    assert not AuditEvent.objects.filter(after__icontains="wrong").exists()


def test_unlock_by_command_is_audited_and_lets_the_right_password_in(settings, admin):
    client = fail(settings.MANDATE_LOGIN_FAILURE_LIMIT)
    out = StringIO()

    call_command("unlock_sign_in", "ada", "--reason", "called the help desk", stdout=out)

    assert "ada" in out.getvalue()
    unlocked = AuditEvent.objects.get(verb="account.unlocked")
    assert unlocked.reason == "called the help desk" and unlocked.chain == "signin"
    assert signed_in(sign_in(client, "ada", RIGHT))


def test_unlock_command_for_one_address_leaves_other_addresses_locked(settings, admin):
    fail(settings.MANDATE_LOGIN_FAILURE_LIMIT)
    fail(settings.MANDATE_LOGIN_FAILURE_LIMIT, address=ADMIN_DESK)

    call_command("unlock_sign_in", "ada", "--address", ADMIN_DESK, stdout=StringIO())

    assert signed_in(sign_in(Client(), "ada", RIGHT, address=ADMIN_DESK))
    assert sign_in(Client(), "ada", RIGHT).status_code == 429


def test_unlock_command_with_nothing_locked_says_so_and_records_nothing(admin):
    out = StringIO()
    call_command("unlock_sign_in", "ada", stdout=out)
    assert "not locked out" in out.getvalue()
    assert not AuditEvent.objects.filter(verb="account.unlocked").exists()


def test_unlock_command_refuses_an_address_that_is_not_one(admin):
    with pytest.raises(CommandError, match="address"):
        call_command("unlock_sign_in", "ada", "--address", "not-an-ip", stdout=StringIO())


def test_identity_admins_see_and_unlock_locked_accounts_in_the_console(settings, admin, second_admin):
    fail(settings.MANDATE_LOGIN_FAILURE_LIMIT, username="alan")
    console = Client()
    console.force_login(admin)

    page = console.get("/sign-in-lockouts/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "alan" in text and ATTACKER in text

    response = console.post("/sign-in-lockouts/unlock", {"username": "alan", "address": ATTACKER}, follow=True)

    assert response.status_code == 200
    assert "unlocked" in response.content.decode().lower()
    event = AuditEvent.objects.get(verb="account.unlocked")
    assert event.actor == "ada" and event.target_label == "alan"
    assert signed_in(sign_in(Client(), "alan", RIGHT))


def test_only_identity_admins_may_unlock(settings, admin, owner):
    fail(settings.MANDATE_LOGIN_FAILURE_LIMIT)
    console = Client()
    console.force_login(owner)

    assert console.get("/sign-in-lockouts/").status_code == 403
    assert console.post("/sign-in-lockouts/unlock", {"username": "ada", "address": ATTACKER}).status_code == 403
    assert sign_in(Client(), "ada", RIGHT).status_code == 429


def test_unlocking_an_account_that_is_not_locked_is_a_clear_message(admin):
    console = Client()
    console.force_login(admin)
    response = console.post("/sign-in-lockouts/unlock", {"username": "nobody", "address": ATTACKER}, follow=True)
    assert response.status_code == 200
    assert "not locked" in response.content.decode()
    assert not AuditEvent.objects.filter(verb="account.unlocked").exists()


def test_the_lockout_bookkeeping_keeps_no_password_or_form_secret(settings, admin):
    from axes.models import AccessAttempt

    client = Client()
    client.get("/login/")
    client.post(
        "/login/",
        {"username": "ada", "password": "hunter2-guess", "csrfmiddlewaretoken": "form-secret-value"},
        REMOTE_ADDR=ATTACKER,
    )

    attempt = AccessAttempt.objects.get()
    assert "hunter2-guess" not in attempt.post_data
    assert "form-secret-value" not in attempt.post_data


def test_sign_ins_without_a_username_such_as_sso_callbacks_are_never_locked_or_counted(rf, settings, admin):
    """A failed single sign-on callback is the identity provider's business, and keying a lockout on
    (no account, address) would lock everybody behind one NAT out of SSO."""
    from axes.models import AccessAttempt
    from django.contrib.auth import authenticate

    for _ in range(settings.MANDATE_LOGIN_FAILURE_LIMIT + 2):
        request = rf.get("/oidc/callback/", REMOTE_ADDR=ATTACKER)
        request.session = {}
        assert authenticate(request, nonce="n", code_verifier="v") is None

    assert not AccessAttempt.objects.exists()
    assert not AuditEvent.objects.filter(verb__startswith="account.").exists()
    assert signed_in(sign_in(Client(), "ada", RIGHT))
