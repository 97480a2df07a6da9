"""Single sign-on with OpenID Connect: the authorisation code flow with PKCE against the issuer in settings.

``client`` speaks the protocol (discovery, token exchange, ID-token checks) without Django;
``services`` turns verified claims into a Pneumo user (linked by issuer and ``sub``, never by
e-mail or username) with the role and sites the claims give on every login; ``views`` are
the login, callback and logout edges. Off while ``PNEUMO_OIDC_ISSUER`` is empty.
"""
