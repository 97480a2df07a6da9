"""The local validation report page (admins): the same selector as ``GET /api/v1/validation/``, printable.

Without a site and a model it offers the choice; ``?print=1`` drops the navigation and the form for the
hospital's governance committee (the print stylesheet does the same when printed from the screen view).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from cases import selectors
from cases.audit import audit_record
from cases.validation import LIVE_READINGS_NOTE, validation_model, validation_report, validation_site
from inference.selectors import model_versions
from inference.thresholds import SiteThresholdRefused, evidence_shortfall, site_threshold_in_force, site_threshold_set

SPLIT_TITLES = (
    ("by_device", "By device (manufacturer and model)"),
    ("by_age_band", "By age band (years)"),
    ("by_view", "By view"),
    ("by_domain", "By scope check (the prediction's domain)"),
    ("by_mode", "By AI mode at reading"),
)


class ValidationQueryForm(forms.Form):
    site = forms.CharField(max_length=32)
    model = forms.CharField(max_length=100)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    target_sensitivity = forms.FloatField(min_value=0.0, max_value=1.0, required=False, initial=0.95)


@login_required
@require_GET
def validation_page(request: HttpRequest) -> HttpResponse:
    if not selectors.user_is_admin(user=request.user):
        raise PermissionDenied("The validation report is for admins.")
    asked = "site" in request.GET or "model" in request.GET
    form = ValidationQueryForm(request.GET if asked else None)
    context = {
        "form": form,
        "sites": selectors.sites_for_user(user=request.user).order_by("code"),
        "models": model_versions().order_by("name"),
        "printing": request.GET.get("print") == "1",
        "note": LIVE_READINGS_NOTE,
    }
    if not asked:
        return render(request, "validation/report.html", context)
    if not form.is_valid():
        return render(request, "validation/report.html", context, status=400)
    params = form.cleaned_data
    site = validation_site(user=request.user, code=params["site"])
    version = validation_model(name=params["model"])
    target = params["target_sensitivity"] if params["target_sensitivity"] is not None else 0.95
    report = validation_report(
        site=site, model_version=version, since=params["since"], until=params["until"], target_sensitivity=target
    )
    audit_record(
        action="view_validation_report", user=request.user, site=site, request=request,
        model_version_id=version.pk, n=report["n"],
    )  # fmt: skip
    splits = [(title, report[key]) for key, title in SPLIT_TITLES]
    context |= {"report": report, "version": version, "site": site, "target": target, "splits": splits,
                "generated_at": timezone.now(), "site_threshold": site_threshold_in_force(site=site, version=version),
                "shortfall": evidence_shortfall(n=report["n"], positives=report["positives"])}  # fmt: skip
    return render(request, "validation/report.html", context)


class SiteThresholdForm(forms.Form):
    site = forms.CharField(max_length=32)
    model = forms.CharField(max_length=100)
    threshold = forms.FloatField(min_value=0.0, max_value=1.0)
    reason = forms.CharField(max_length=2000, required=False)
    since = forms.DateField(required=False)
    until = forms.DateField(required=False)


@login_required
@require_POST
def validation_threshold_set(request: HttpRequest) -> HttpResponse:
    """Set the site's threshold from the report page (the service of ``POST /api/v1/site-thresholds/``)."""
    if not selectors.user_is_admin(user=request.user):
        raise PermissionDenied("Site thresholds are set by admins.")
    form = SiteThresholdForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Give a site, a model and a threshold between 0 and 1.")
    data = form.cleaned_data
    site = validation_site(user=request.user, code=data["site"])
    version = validation_model(name=data["model"])
    try:
        chosen = site_threshold_set(
            site=site, version=version, threshold=data["threshold"], reason=data["reason"], user=request.user,
            request=request, since=data["since"], until=data["until"],
        )  # fmt: skip
    except SiteThresholdRefused as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"{site.code} now flags {version.name}'s results at {chosen.threshold:.3f}.")
    query = {"site": site.code, "model": version.name}
    query |= {key: data[key].isoformat() for key in ("since", "until") if data[key]}
    return redirect(f"{reverse('validation')}?{urlencode(query)}")
