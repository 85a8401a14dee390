"""URLs of the OAuth endpoints and discovery documents (included at the site root)."""

from django.urls import path

from tasks import oauth, well_known

urlpatterns = [
    path("oauth/token", oauth.token, name="oauth-token"),
    path("oauth/introspect", oauth.introspect, name="oauth-introspect"),
    path("oauth/revoke", oauth.revoke, name="oauth-revoke"),
    path(".well-known/jwks.json", well_known.jwks, name="jwks"),
    path(".well-known/spiffe-bundle", well_known.spiffe_bundle, name="spiffe-bundle"),
    path(".well-known/openid-configuration", well_known.openid_configuration, name="openid-configuration"),
    path(
        ".well-known/oauth-authorization-server",
        well_known.authorization_server_metadata,
        name="oauth-authorization-server",
    ),
]
