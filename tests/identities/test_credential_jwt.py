import jwt
import pytest
from django.utils import timezone

from core.oauth_errors import TokenRejected
from identities import keys
from identities.credential_jwt import mint_credential, verify_access_token
from tasks import services
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def approved(owner, admin):
    instance = make_instance(make_agent(owner))
    envelope = make_envelope(instance)
    services.approve_envelope(envelope=envelope, actor=admin)
    envelope.refresh_from_db()
    return instance, envelope


def test_a_minted_token_verifies_and_names_its_instance(approved):
    instance, envelope = approved
    minted = mint_credential(
        instance=instance,
        envelope=envelope,
        scopes=["github:write"],
        audience="mandate",
        expires_at=timezone.now() + timezone.timedelta(minutes=5),
    )
    header = jwt.get_unverified_header(minted.token)
    assert set(header) == {"alg", "kid", "typ"} and header["alg"] == "ES256"
    verified = verify_access_token(minted.token)
    assert verified.sub == instance.spiffe_id and verified.jti == minted.credential.jti
    assert verified.envelope_id == str(envelope.id)


def test_a_token_from_a_key_we_do_not_publish_is_rejected(approved):
    instance, envelope = approved
    minted = mint_credential(
        instance=instance,
        envelope=envelope,
        scopes=["github:write"],
        audience="mandate",
        expires_at=timezone.now() + timezone.timedelta(minutes=5),
    )
    keys.rotate_signing_key(actor=None, immediately=True)
    # Retire the key that signed it and drop caches: the token no longer verifies.
    from identities.models import SigningKey

    SigningKey.objects.filter(kid=minted.credential.kid).update(status="retired")
    keys._invalidate()
    with pytest.raises(TokenRejected) as err:
        verify_access_token(minted.token)
    assert err.value.reason == "token_invalid"


def test_private_keys_are_encrypted_at_rest(approved):
    from identities.models import SigningKey

    kid = keys.active_signing_key().kid
    key = SigningKey.objects.get(kid=kid)
    assert b"PRIVATE KEY" not in bytes(key.private_key_encrypted)
    assert "d" not in key.public_jwk
