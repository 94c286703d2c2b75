"""The project's own tests share the suite's Hypothesis profiles: ``conformance`` unless
``--hypothesis-profile`` names another (ci, thorough)."""

from hypothesis import settings

from conformance import profiles

profiles.register()
settings.load_profile("conformance")
