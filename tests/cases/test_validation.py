"""The local validation report: its statistics against published examples, and its figures on known readings."""

from __future__ import annotations

import itertools
import math
from datetime import date, timedelta

import numpy as np
import pytest
from django.apps import apps
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from sklearn.metrics import roc_auc_score

from cases import validation
from cases import validation_stats as vs
from cases.imaging.eligibility import AGE_UNKNOWN
from cases.ingest import IncomingFile, studies_ingest
from cases.models import AuditEvent, Image, Review
from cases.validation import AGE_BANDS, age_band, device_label, validation_report
from inference.models import Prediction
from tests.dicom_factory import make_dicom, make_png, rewrite_dicom

# --- Wilson: Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 ---------------------


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_it_gives_newcombes_wilson_intervals(successes: int, n: int, low: float, high: float) -> None:
    interval = vs.wilson_interval(successes, n)
    assert interval == pytest.approx([low, high], abs=5e-5)


def test_it_gives_no_wilson_interval_without_cases() -> None:
    assert vs.wilson_interval(0, 0) is None


# --- AUC and DeLong's variance ----------------------------------------------------------------------


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def delong_quadratic(positives: list[float], negatives: list[float]) -> tuple[float, float]:
    """DeLong, DeLong and Clarke-Pearson (1988), eq. 2-4, straight from the definition: O(m n)."""
    m, n = len(positives), len(negatives)
    v10 = [sum(_psi(x, y) for y in negatives) / n for x in positives]
    v01 = [sum(_psi(x, y) for x in positives) / m for y in negatives]
    auc = sum(v10) / m
    s10 = sum((v - auc) ** 2 for v in v10) / (m - 1)
    s01 = sum((v - auc) ** 2 for v in v01) / (n - 1)
    return auc, s10 / m + s01 / n


def test_it_computes_a_hand_worked_delong_case() -> None:
    # Positives 0.9, 0.6, 0.4 and negatives 0.5, 0.2: V10 = (1, 1, 1/2), V01 = (2/3, 1), so
    # AUC = 5/6, S10 = 1/12, S01 = 1/18 and var = S10/3 + S01/2 = 1/18.
    auc, variance = vs.delong_auc(np.array([0.9, 0.6, 0.4]), np.array([0.5, 0.2]))
    assert auc == pytest.approx(5 / 6)
    assert variance == pytest.approx(1 / 18)
    _, interval = vs.auc_with_interval(np.array([1, 1, 1, 0, 0]), np.array([0.9, 0.6, 0.4, 0.5, 0.2]))
    assert interval == pytest.approx([5 / 6 - 1.96 * math.sqrt(1 / 18), 1.0])  # clipped at 1


def test_it_gives_hanley_and_mcneils_area_for_their_tied_ratings() -> None:
    # Hanley & McNeil (1982), Radiology 143:29-36, Table 1: five-point ratings of 58 normal and 51 abnormal
    # CT images, many tied; their area is 0.8932.
    negatives = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2]).astype(float)
    positives = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33]).astype(float)
    auc, variance = vs.delong_auc(positives, negatives)
    expected_auc, expected_variance = delong_quadratic(list(positives), list(negatives))
    assert auc == pytest.approx(0.8932, abs=5e-5)
    assert auc == pytest.approx(expected_auc)
    assert variance == pytest.approx(expected_variance)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_matches_the_quadratic_delong_on_random_scores_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    positives = np.round(rng.beta(3, 2, size=40), 1)  # rounded: many ties
    negatives = np.round(rng.beta(2, 3, size=55), 1)
    auc, variance = vs.delong_auc(positives, negatives)
    expected_auc, expected_variance = delong_quadratic(list(positives), list(negatives))
    assert auc == pytest.approx(expected_auc)
    assert variance == pytest.approx(expected_variance)
    labels = np.r_[np.ones(40), np.zeros(55)]
    assert auc == pytest.approx(roc_auc_score(labels, np.r_[positives, negatives]))


def test_it_gives_no_auc_with_one_class_and_no_interval_with_one_case_of_a_class() -> None:
    assert vs.auc_with_interval(np.array([1, 1]), np.array([0.2, 0.3])) == (None, None)
    auc, interval = vs.auc_with_interval(np.array([1, 0, 0]), np.array([0.8, 0.3, 0.9]))
    assert auc == pytest.approx(0.5) and interval is None


# --- Operating points and calibration ----------------------------------------------------------------


def test_it_finds_the_highest_threshold_reaching_the_target_sensitivity() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2, 0.1])
    assert vs.threshold_for_sensitivity(labels, scores, 0.75) == (0.6, pytest.approx(4 / 5))  # 3 of 4 at >= 0.6
    assert vs.threshold_for_sensitivity(labels, scores, 0.95) == (0.3, pytest.approx(2 / 5))  # all 4 needed
    assert vs.threshold_for_sensitivity(np.array([0, 0]), np.array([0.1, 0.2]), 0.95) == (None, None)


def test_it_bins_calibration_in_tenths_with_the_last_bin_closed() -> None:
    bins = vs.calibration(np.array([1, 0, 1, 1]), np.array([0.05, 0.15, 0.12, 1.0]))
    assert [b["n"] for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert bins[1] == {"low": 0.1, "high": 0.2, "n": 2, "mean_probability": pytest.approx(0.135), "observed": 0.5}
    assert bins[2]["mean_probability"] is None and bins[2]["observed"] is None
    assert bins[9]["observed"] == 1.0


def test_it_gives_nulls_for_everything_without_cases() -> None:
    figures = vs.validation_figures([], [], [], target_sensitivity=0.95)
    assert figures["n"] == 0 and figures["confusion_matrix"] == [[0, 0], [0, 0]]
    for key in ("prevalence", "auc", "auc_ci", "sensitivity", "sensitivity_ci", "ppv_ci", "suggested_threshold"):
        assert figures[key] is None


def test_it_names_age_bands_and_devices() -> None:
    bands = [age_band(a) for a in (None, 0.5, 1, 5.9, 6, 17.99, 18, 64.5, 65, 90)]
    assert bands == ["unknown", "<1", "1-5", "1-5", "6-17", "6-17", "18-64", "18-64", "65+", "65+"]
    assert device_label("ACME", " RX-1 ") == "ACME RX-1"
    assert device_label("", "") == "unknown"


# --- The report on known readings --------------------------------------------------------------------

_uid = itertools.count(1)


@pytest.fixture
def version(make_model_version):
    return make_model_version(name="val-model", threshold=0.5)


@pytest.fixture
def other_version(make_model_version):
    return make_model_version(name="other-model", threshold=0.5)


@pytest.fixture
def reading(demo_site, rad, make_study, make_image, version):
    """Builds one study at a site with images (probability, and image fields) read by ``version`` and signed."""

    def build(
        finding: str,
        *probabilities: float,
        site=None,
        model=None,
        signed_days_ago: int = 1,
        ai_mode: str = "",
        **image_fields,
    ):
        study = make_study(site or demo_site)
        for probability in probabilities:
            image = make_image(study, **image_fields)
            _predict(image, model or version, probability)
        _sign(study, rad, finding, signed_days_ago, ai_mode=ai_mode)
        return study

    return build


def _predict(image: Image, version, probability: float, *, status: str = "succeeded", prep: str = "", **fields):
    return Prediction.objects.create(
        image=image,
        model_version=version,
        preprocessing_version=prep or version.preprocessing_version,
        status=status,
        probability=probability if status == "succeeded" else None,
        threshold=fields.pop("threshold", version.threshold),
        finished_at=fields.pop("finished_at", timezone.now()),
        **fields,
    )


def _sign(study, rad, finding: str, days_ago: int = 1, **fields) -> Review:
    agreement = "indeterminate" if finding == "indeterminate" else "agree"
    return Review.objects.create(
        study=study,
        radiologist=rad,
        finding=finding,
        agreement=agreement,
        signed_at=timezone.now() - timedelta(days=days_ago),
        **fields,
    )


def _independent_figures(cases: list[tuple[int, float, bool]]) -> dict:
    """The figures worked out apart from cases.validation_stats: sklearn's AUC, the O(n^2) DeLong, Wilson's
    formula written out."""
    labels = [c[0] for c in cases]
    positives = [c[1] for c in cases if c[0] == 1]
    negatives = [c[1] for c in cases if c[0] == 0]
    auc, variance = delong_quadratic(positives, negatives)
    half = 1.96 * math.sqrt(variance)
    tp = sum(1 for y, _, f in cases if y == 1 and f)
    fn = sum(1 for y, _, f in cases if y == 1 and not f)
    fp = sum(1 for y, _, f in cases if y == 0 and f)
    tn = sum(1 for y, _, f in cases if y == 0 and not f)

    def wilson(k: int, n: int) -> list[float]:
        z = 1.96
        p = k / n
        centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return [(centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)]

    assert auc == pytest.approx(roc_auc_score(labels, [c[1] for c in cases]))
    return {
        "n": len(cases),
        "positives": sum(labels),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "auc": auc,
        "auc_ci": [max(auc - half, 0.0), min(auc + half, 1.0)],
        "sensitivity": tp / (tp + fn),
        "sensitivity_ci": wilson(tp, tp + fn),
        "specificity": tn / (tn + fp),
        "specificity_ci": wilson(tn, tn + fp),
        "ppv": tp / (tp + fp),
        "ppv_ci": wilson(tp, tp + fp),
        "npv": tn / (tn + fn),
        "npv_ci": wilson(tn, tn + fn),
    }


@pytest.fixture
def known_readings(reading, demo_site, north_site, rad, make_study, make_image, version, other_version):
    """Nine counted studies, one indeterminate, and everything the report must leave out."""
    P, N = "pneumonia", "no_pneumonia"
    adult = {"patient_age_years": 40, "view_position": "PA", "manufacturer": "ACME", "manufacturer_model_name": "RX-1"}
    child = {"patient_age_years": 4, "view_position": "AP"}
    reading(P, 0.92, **adult)
    reading(P, 0.81, **adult)
    reading(P, 0.45, **child)  # missed at 0.5
    reading(P, 0.30, 0.66, **child)  # two images: the study's score is the higher, flagged
    reading(P, 0.45, **adult)  # tied with a negative
    reading(N, 0.45, **child)
    reading(N, 0.55, **adult)  # a false positive
    reading(N, 0.20, **child)
    reading(N, 0.10, **adult)
    reading("indeterminate", 0.70, **adult)
    # Left out: another site, another version only, no AI result, a failed result, outside the period.
    reading(P, 0.99, site=north_site)
    reading(N, 0.99, model=other_version)
    _sign(make_study(demo_site), rad, P)
    failed = make_study(demo_site)
    _predict(make_image(failed), version, 0.0, status="failed")
    _sign(failed, rad, N)
    reading(N, 0.99, signed_days_ago=40)
    # An amendment: the latest signed version counts (pneumonia, at 0.35: a miss).
    amended = make_study(demo_site)
    _predict(make_image(amended, **child), version, 0.35)
    first = _sign(amended, rad, N)
    _sign(amended, rad, P, version=2, supersedes=first)
    # A re-run of an image: its newest succeeded result counts (0.15 replaces 0.95), a pending one does not.
    rerun = make_study(demo_site)
    image = make_image(rerun, **adult)
    _predict(image, version, 0.95, prep="old", finished_at=timezone.now() - timedelta(days=3))
    _predict(image, version, 0.15)
    _predict(image, version, 0.0, status="pending", prep="newer")
    _sign(rerun, rad, N)
    return [
        (1, 0.92, True), (1, 0.81, True), (1, 0.45, False), (1, 0.66, True), (1, 0.45, False),
        (0, 0.45, False), (0, 0.55, True), (0, 0.20, False), (0, 0.10, False), (1, 0.35, False), (0, 0.15, False),
    ]  # fmt: skip


def _assert_figures(report: dict, expected: dict) -> None:
    for key, value in expected.items():
        exact = value is None or key == "confusion_matrix"
        assert report[key] == (value if exact else pytest.approx(value)), key


def test_it_reports_the_figures_computed_independently(demo_site, version, known_readings) -> None:
    report = validation_report(site=demo_site, model_version=version, since=timezone.localdate() - timedelta(days=30))

    _assert_figures(report, _independent_figures(known_readings))
    assert report["site"] == "DEMO" and report["model"] == "val-model" and report["threshold"] == 0.5
    assert report["indeterminate"] == 1
    assert report["prevalence"] == pytest.approx(6 / 11)
    assert report["suggested_threshold"] == pytest.approx(0.35)  # 0.95 of 6 positives: all six
    assert report["suggested_specificity"] == pytest.approx(3 / 5)  # 0.45 and 0.55 are not below 0.35
    calibration = report["calibration"]
    assert [b["n"] for b in calibration] == [0, 2, 1, 1, 3, 1, 1, 0, 1, 1]
    assert calibration[4]["observed"] == pytest.approx(2 / 3)


def test_it_judges_every_study_at_a_candidate_threshold(demo_site, version, known_readings) -> None:
    since = timezone.localdate() - timedelta(days=30)
    report = validation_report(site=demo_site, model_version=version, since=since, threshold=0.4)

    at_candidate = [(label, score, score >= 0.4) for label, score, _ in known_readings]
    assert at_candidate != known_readings  # 0.45 positives become hits, the 0.45 negative a false positive
    _assert_figures(report, _independent_figures(at_candidate))
    assert report["threshold"] == 0.4
    assert report["auc"] == validation_report(site=demo_site, model_version=version, since=since)["auc"]


def test_it_splits_the_figures_by_device_age_view_domain_and_mode(demo_site, version, known_readings) -> None:
    report = validation_report(site=demo_site, model_version=version, since=timezone.localdate() - timedelta(days=30))

    devices = {g["group"]: g for g in report["by_device"]}
    assert set(devices) == {"ACME RX-1", "unknown"}
    adult_cases = [c for i, c in enumerate(known_readings) if i in (0, 1, 4, 6, 8, 10)]
    _assert_figures(devices["ACME RX-1"], _independent_figures(adult_cases))
    assert devices["ACME RX-1"]["indeterminate"] == 1
    assert [g["group"] for g in report["by_age_band"]] == list(AGE_BANDS)
    bands = {g["group"]: g["n"] for g in report["by_age_band"]}
    assert bands == {"<1": 0, "1-5": 5, "6-17": 0, "18-64": 6, "65+": 0, "unknown": 0}
    empty = next(g for g in report["by_age_band"] if g["group"] == "65+")
    assert empty["auc"] is None and empty["sensitivity_ci"] is None
    assert {g["group"]: g["n"] for g in report["by_view"]} == {"AP": 5, "PA": 6}
    assert [(g["group"], g["n"]) for g in report["by_domain"]] == [("not_checked", 11)]
    assert [(g["group"], g["n"], g["indeterminate"]) for g in report["by_mode"]] == [("live", 11, 1)]


def test_it_splits_shadow_readings_from_live_ones(demo_site, version, reading, make_study, make_image, rad) -> None:
    P, N = "pneumonia", "no_pneumonia"
    # Live readings: blank (signed before modes were recorded) counts as live.
    reading(P, 0.9, ai_mode="live")
    reading(N, 0.7, ai_mode="")
    reading(P, 0.6, ai_mode="")
    reading(N, 0.2, ai_mode="live")
    # Shadow readings, made without seeing the AI.
    reading(P, 0.8, ai_mode="shadow")
    reading(N, 0.4, ai_mode="shadow")
    reading(N, 0.1, ai_mode="shadow")
    reading("indeterminate", 0.5, ai_mode="shadow")
    # Read live, amended in shadow mode: the latest signed version gives the mode (and the finding).
    amended = make_study(demo_site)
    _predict(make_image(amended), version, 0.3)
    first = _sign(amended, rad, N, ai_mode="live")
    _sign(amended, rad, P, version=2, supersedes=first, ai_mode="shadow")

    report = validation_report(site=demo_site, model_version=version)

    modes = {g["group"]: g for g in report["by_mode"]}
    assert [g["group"] for g in report["by_mode"]] == ["live", "shadow"]
    live_cases = [(1, 0.9, True), (0, 0.7, True), (1, 0.6, True), (0, 0.2, False)]
    shadow_cases = [(1, 0.8, True), (0, 0.4, False), (0, 0.1, False), (1, 0.3, False)]
    _assert_figures(modes["live"], _independent_figures(live_cases))
    _assert_figures(modes["shadow"], _independent_figures(shadow_cases))
    assert (modes["live"]["indeterminate"], modes["shadow"]["indeterminate"]) == (0, 1)
    assert modes["live"]["readers_saw_ai"] is True and modes["shadow"]["readers_saw_ai"] is False
    _assert_figures(report, _independent_figures(live_cases + shadow_cases))
    assert "seeing the AI" in report["caveat"] and "shadow" in report["caveat"]


def test_it_bounds_the_period_by_signing_day(demo_site, version, known_readings) -> None:
    old = validation_report(
        site=demo_site,
        model_version=version,
        since=timezone.localdate() - timedelta(days=45),
        until=timezone.localdate() - timedelta(days=35),
    )
    assert (old["n"], old["since"], old["positives"]) == (1, (timezone.localdate() - timedelta(days=45)).isoformat(), 0)
    everything = validation_report(site=demo_site, model_version=version)
    assert everything["n"] == 12 and everything["since"] is None and everything["until"] is None


def test_it_answers_nulls_without_readings(demo_site, version) -> None:
    report = validation_report(site=demo_site, model_version=version, since=date(2020, 1, 1))
    assert report["n"] == 0 and report["indeterminate"] == 0
    assert report["auc"] is None and report["auc_ci"] is None and report["sensitivity"] is None
    assert report["by_device"] == [] and len(report["by_age_band"]) == len(AGE_BANDS)


def test_it_reads_a_fixed_number_of_queries_whatever_the_size(
    demo_site, version, reading, django_assert_num_queries
) -> None:
    for i in range(3):
        reading("pneumonia" if i % 2 else "no_pneumonia", 0.1 * i)
    # One for the readings and their results, one for the threshold in force at the site.
    with django_assert_num_queries(2):
        small = validation_report(site=demo_site, model_version=version)
    for i in range(30):
        reading("pneumonia" if i % 2 else "no_pneumonia", 0.03 * i, patient_age_years=i * 3)
    with django_assert_num_queries(2):
        large = validation_report(site=demo_site, model_version=version)
    assert (small["n"], large["n"]) == (3, 33)


def test_it_reads_the_times_of_re_run_images_in_one_more_query(
    demo_site, version, known_readings, django_assert_num_queries
) -> None:
    with django_assert_num_queries(3):
        report = validation_report(site=demo_site, model_version=version)
    assert report["n"] == 12


@pytest.mark.parametrize("days", [None, 30])
def test_it_finds_re_run_images_through_a_subquery_past_the_listed_ids(
    demo_site, version, known_readings, django_assert_num_queries, monkeypatch, days
) -> None:
    since = timezone.localdate() - timedelta(days=days) if days else None
    listed = validation_report(site=demo_site, model_version=version, since=since)
    monkeypatch.setattr(validation, "REPEATED_IDS_MAX", 11)  # one id listed at most: the re-run's two are more

    with django_assert_num_queries(3) as captured:
        report = validation_report(site=demo_site, model_version=version, since=since)

    assert "HAVING" in captured.captured_queries[1]["sql"]
    assert report == listed and report["n"] == (11 if days else 12)


# --- Devices: recorded at ingest, filled in by the migration --------------------------------------------


def test_it_records_the_device_of_a_dicom_at_ingest(demo_site, tech) -> None:
    data = rewrite_dicom(make_dicom(), Manufacturer="ACME Medical", ManufacturerModelName="RX-1000")
    report = studies_ingest(files=[IncomingFile("a.dcm", data)], site=demo_site, user=tech)
    assert report.study_ids
    dicom = Image.objects.get(study_id=report.study_ids[0])
    assert (dicom.manufacturer, dicom.manufacturer_model_name) == ("ACME Medical", "RX-1000")


def test_the_migration_fills_devices_from_stored_headers(demo_site, make_study, make_image) -> None:
    from importlib import import_module

    fill = import_module("cases.migrations.0014_image_manufacturer").devices_fill
    study = make_study(demo_site)
    name = default_storage.save("studies/test/device.dcm", ContentFile(
        rewrite_dicom(make_dicom(), Manufacturer="Kodak", ManufacturerModelName="DR 7500")))  # fmt: skip
    dicom = make_image(study, file=name)
    missing = make_image(study, file="studies/test/gone.dcm")
    png = make_image(study, kind="png", file=default_storage.save("studies/test/x.png", ContentFile(make_png())))

    fill(apps, None)

    for image in (dicom, missing, png):
        image.refresh_from_db()
    assert (dicom.manufacturer, dicom.manufacturer_model_name) == ("Kodak", "DR 7500")
    assert (missing.manufacturer, png.manufacturer) == ("", "")


# --- The page ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?site=DEMO&model=val-model", "?site=NOPE&model=x&print=1"])
def test_the_page_refuses_technicians_and_radiologists(client, tech, rad, version, query: str) -> None:
    for user in (tech, rad):
        client.force_login(user)
        assert client.get("/validation/" + query).status_code == 403


def test_the_page_shows_the_report_with_its_caveat_and_a_printable_view(
    client, admin_user, demo_site, version, known_readings
) -> None:
    client.force_login(admin_user)

    page = client.get("/validation/?site=DEMO&model=val-model")
    printable = client.get("/validation/?site=DEMO&model=val-model&print=1")

    assert page.status_code == 200 and printable.status_code == 200
    text = page.content.decode()
    assert "Live readings were made seeing the AI" in text
    assert 'data-metric="n">12<' in text  # 11 in the last month and one older reading
    assert "ACME RX-1" in text and "18-64" in text and "Printable view" in text
    assert 'class="validation-query"' not in printable.content.decode()
    assert "Live readings were made seeing the AI" in printable.content.decode()
    assert AuditEvent.objects.filter(action="view_validation_report").count() == 2


def test_the_page_offers_the_choice_404s_unknown_names_and_refuses_bad_dates(client, admin_user, version) -> None:
    client.force_login(admin_user)
    chooser = client.get("/validation/")
    assert chooser.status_code == 200 and "val-model" in chooser.content.decode()
    assert client.get("/validation/?site=NOPE&model=val-model").status_code == 404
    assert client.get("/validation/?site=DEMO&model=nope").status_code == 404
    assert client.get("/validation/?site=DEMO&model=val-model&since=someday").status_code == 400
    empty = client.get("/validation/?site=DEMO&model=val-model&since=2026-02-01&until=2026-01-01")
    assert empty.status_code == 200 and 'data-metric="n">0<' in empty.content.decode()


def test_the_dashboard_links_admins_to_the_report(client, admin_user, rad) -> None:
    client.force_login(admin_user)
    assert 'href="/validation/"' in client.get("/dashboard/").content.decode()
    client.force_login(rad)
    assert 'href="/validation/"' not in client.get("/dashboard/").content.decode()


# --- Muted results (inference.display): counted only in the split by scope outcome -------------------------


def test_it_counts_muted_results_only_in_the_split_by_scope_outcome(
    demo_site, rad, make_study, make_image, version
) -> None:
    in_domain = {"domain": "in_domain"}
    # A counted frontal at 0.2 beside a muted (outside the domain) lateral at 0.9: the study scores 0.2, unflagged,
    # as its readers were shown it.
    mixed = make_study(demo_site)
    _predict(make_image(mixed), version, 0.2, **in_domain)
    _predict(make_image(mixed), version, 0.9, domain="outside_domain")
    _sign(mixed, rad, "no_pneumonia")
    # Studies whose only results are muted: outside the domain, and outside validated use by a caveat.
    outside = make_study(demo_site)
    _predict(make_image(outside), version, 0.8, domain="outside_domain")
    _sign(outside, rad, "pneumonia")
    caveat = make_study(demo_site)
    _predict(make_image(caveat), version, 0.7, **in_domain, outside_validated_use=True,
             outside_validated_use_reason="Adult patient (validated for ages 1 to 5)")  # fmt: skip
    _sign(caveat, rad, "no_pneumonia")
    # A tag that is only missing is a note, not a caveat: that result counts.
    noted = make_study(demo_site)
    _predict(make_image(noted), version, 0.6, **in_domain, outside_validated_use=True,
             outside_validated_use_reason=AGE_UNKNOWN)  # fmt: skip
    _sign(noted, rad, "pneumonia")

    report = validation_report(site=demo_site, model_version=version)

    assert (report["n"], report["positives"]) == (2, 1)
    assert report["confusion_matrix"] == [[1, 0], [0, 1]]  # 0.2 not flagged (no pneumonia), 0.6 flagged
    domains = {g["group"]: (g["n"], g["positives"], g["confusion_matrix"]) for g in report["by_domain"]}
    assert domains == {
        "in_domain": (2, 1, [[1, 0], [0, 1]]),
        "outside_domain": (1, 1, [[0, 0], [0, 1]]),  # 0.8 judged at 0.5 as if it counted
        "outside_validated_use": (1, 0, [[0, 1], [0, 0]]),
    }
    assert sum(g["n"] for g in report["by_view"]) == 2 and sum(g["n"] for g in report["by_mode"]) == 2
