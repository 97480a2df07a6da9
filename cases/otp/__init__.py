"""The admins' second factor: TOTP (django-otp) with recovery codes, asked for by one middleware.

``services`` enrols, verifies and resets devices; ``middleware`` keeps an admin whose session has
no verified second factor on the verify or enrol page, whatever page they ask for (the admin
site, the audit export and every staff page to come); ``views`` are those pages. A provider that
asserts a second factor in ``amr`` (``PNEUMO_OIDC_MFA_AMR``) satisfies it at single sign-on.
"""
