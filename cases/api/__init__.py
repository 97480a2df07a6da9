"""The JSON API (``/api/v1/``): thin views over the same selectors and services as the pages."""
