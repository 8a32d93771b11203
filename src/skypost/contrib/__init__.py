"""Integrations with the frameworks a site already runs (Django, Wagtail)."""
