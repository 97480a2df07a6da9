"""Which threshold a site's results are judged at: the version's own, or the site's once its evidence backs one.

The newest ``SiteThreshold`` of a site and version is in force; a version that
has none at a site (a newly activated one, say) uses its own threshold there.
Each prediction records the threshold applied and its source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference.models import ModelVersion, SiteThreshold, ThresholdSource

if TYPE_CHECKING:
    from cases.models import Site


def site_threshold_in_force(*, site: Site, version: ModelVersion) -> SiteThreshold | None:
    return SiteThreshold.objects.filter(site=site, model_version=version).order_by("-created_at", "-pk").first()


def threshold_in_force(*, site: Site, version: ModelVersion) -> tuple[float, str]:
    """(threshold, source) for results of ``version`` at ``site``."""
    chosen = site_threshold_in_force(site=site, version=version)
    if chosen is not None:
        return chosen.threshold, ThresholdSource.SITE
    return version.threshold, ThresholdSource.MODEL
