"""Drift alarms: the daily figures against hand-computed ones, the alarm rules, and an induced drift end to end."""

from __future__ import annotations

import itertools
import json
import math
from datetime import date, datetime, time, timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from cases import drift_stats as ds
from cases.drift import drift_alarm_acknowledge, drift_check, drift_daily_figures
from cases.models import AuditEvent, DriftAlarm, DriftKind, Finding, Image, Patient, Review, Study
from inference.models import AiDomain, Prediction, PredictionStatus
from tests.cases import test_notices

# The webhook's real HTTP receiver and eager tasks, as the notices' own tests use them.
receiver = test_notices.receiver
eager_tasks = test_notices.eager_tasks
_serial = itertools.count(1)
LAST = date(2026, 3, 31)
FIRST = LAST - timedelta(days=39)  # 40 days in all


# --- The figures, by hand ------------------------------------------------------------------------


def test_it_computes_kappa_and_agreement_of_a_hand_worked_table() -> None:
    # 20 both positive, 5 AI only, 10 radiologist only, 15 both negative (n = 50):
    # p_o = 35/50 = 0.7; the AI says positive 25/50, the radiologist 30/50, so
    # p_e = 0.5 x 0.6 + 0.5 x 0.4 = 0.5 and kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    day = ds.DayFigures(LAST, both_positive=20, ai_only=5, radiologist_only=10, both_negative=15)
    assert day.signed == 50
    assert day.agreement == pytest.approx(0.7)
    assert day.kappa == pytest.approx(0.4)


def test_it_gives_no_kappa_without_cases_or_with_one_label_only() -> None:
    assert ds.cohen_kappa(0, 0, 0, 0) is None
    assert ds.percent_agreement(0, 0, 0, 0) is None
    assert ds.cohen_kappa(12, 0, 0, 0) is None  # both always say positive: chance agreement is certain


def test_it_takes_the_reference_from_the_shipped_validation_figures() -> None:
    served = {"sensitivity": 0.9512, "specificity": 0.9627, "n_pneumonia": 778, "n_normal": 268}
    # 740 true positives + 258 true negatives agree, of 1046; Wilson's lower bound by its formula:
    p, n, z = 998 / 1046, 1046, 1.96
    low = (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    assert ds.shipped_agreement_lower_bound(served) == pytest.approx(low)
    assert 0.93 < low < 0.955
    assert ds.shipped_agreement_lower_bound({"auc": 0.9}) is None


def _days(agreements: list[tuple[int, int]]) -> list[ds.DayFigures]:
    """(agreeing, disagreeing) per day, ending at LAST."""
    start = LAST - timedelta(days=len(agreements) - 1)
    return [
        ds.DayFigures(start + timedelta(days=i), both_positive=agree, ai_only=disagree)
        for i, (agree, disagree) in enumerate(agreements)
    ]


def test_it_alarms_after_seven_counted_low_days_not_six() -> None:
    good, low = (10, 0), (6, 4)
    assert ds.agreement_alarm(_days([good] * 20 + [low] * 6), reference=0.8, min_daily=10) is None
    finding = ds.agreement_alarm(_days([good] * 20 + [low] * 7), reference=0.8, min_daily=10)
    assert finding is not None
    assert finding.episode_start == LAST - timedelta(days=6)
    assert [d["agreement"] for d in finding.figures["days"]] == [0.6] * 7


def test_it_skips_days_under_the_minimum() -> None:
    good, low, quiet_good, quiet_low = (10, 0), (6, 4), (5, 0), (1, 4)
    # A quiet day of perfect agreement inside the run neither breaks it...
    days = _days([good] * 20 + [low] * 3 + [quiet_good] + [low] * 4)
    assert ds.agreement_alarm(days, reference=0.8, min_daily=10) is not None
    # ...nor do quiet low days make up for missing counted ones,
    assert ds.agreement_alarm(_days([good] * 20 + [low] * 6 + [quiet_low]), reference=0.8, min_daily=10) is None
    # and a quiet checked day raises nothing.
    assert ds.agreement_alarm(_days([good] * 20 + [low] * 7 + [quiet_low]), reference=0.8, min_daily=10) is None


def _images(outside: int, images: int, day: date = LAST) -> ds.DayFigures:
    return ds.DayFigures(day, images=images, outside=outside)


def test_it_alarms_when_the_outside_domain_share_jumps() -> None:
    baseline = [_images(1, 25, LAST - timedelta(days=i)) for i in range(1, 31)]  # 4 %
    assert ds.outside_domain_alarm(_images(3, 25), baseline) is not None  # 12 %: 3 times and 8 points above
    assert ds.outside_domain_alarm(_images(2, 25), baseline) is None  # 8 %: twice, but only 4 points above
    assert ds.outside_domain_alarm(_images(3, 19), baseline) is None  # under 20 images
    high = [_images(10, 25, LAST - timedelta(days=i)) for i in range(1, 31)]  # 40 %
    assert ds.outside_domain_alarm(_images(12, 25), high) is None  # 48 %: 8 points above, not twice
    assert ds.outside_domain_alarm(_images(12, 25), []) is None  # no baseline


# --- The database: an induced drift -------------------------------------------------------------


@pytest.fixture
def drifting_model(make_model_version, tmp_path, settings):
    """A version whose shipped validation agreed 180 of 200 times: reference = Wilson's lower bound (0.8506)."""
    version = make_model_version(threshold=0.5)
    folder = tmp_path / "shipped" / version.name
    folder.mkdir(parents=True)
    served = {"auc": 0.95, "sensitivity": 0.9, "specificity": 0.9, "n_pneumonia": 100, "n_normal": 100}
    (folder / "manifest.json").write_text(json.dumps({"validation": {"served": served}}))
    settings.PNEUMO_SHIPPED_MODELS_DIR = str(tmp_path / "shipped")
    return version


@pytest.fixture
def site_admin(admin_user):
    admin_user.email = "admin@demo.example"
    admin_user.save()
    return admin_user


def _at(day: date, hour: int = 12) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour)))


def _readings(site, version, rad, day: date, *, agree: int, disagree: int, outside: int = 0) -> None:
    """``agree + disagree`` studies read on ``day``: the AI positive on each, the radiologist agreeing or not."""
    findings = [Finding.PNEUMONIA] * agree + [Finding.NO_PNEUMONIA] * disagree
    signed_readings(site, version, rad, day, [(finding, 0.9) for finding in findings], outside=outside)


def signed_readings(
    site, version, rad, day: date, readings: list[tuple[str, float]], *, outside: int = 0, ai_mode: str = ""
) -> None:
    """One signed study per (finding, the AI's probability), predicted and read on ``day`` under ``ai_mode``."""
    patient = Patient.objects.create(site=site, patient_id=f"D{next(_serial)}")
    studies = Study.objects.bulk_create(
        Study(site=site, patient=patient, study_instance_uid=f"1.2.826.0.1.99.{next(_serial)}") for _ in readings
    )
    images = Image.objects.bulk_create(
        Image(
            study=s,
            site=site,
            sop_instance_uid=f"1.2.826.0.1.98.{next(_serial)}",
            kind="dicom",
            sha256="0" * 64,
            ai_eligibility="eligible",
            file="studies/test/x.dcm",
        )
        for s in studies
    )
    Prediction.objects.bulk_create(
        Prediction(
            image=image,
            model_version=version,
            preprocessing_version="test-v1",
            status=PredictionStatus.SUCCEEDED,
            probability=probability,
            threshold=0.5,
            finished_at=_at(day, 9),
            domain=AiDomain.OUTSIDE_DOMAIN if i < outside else AiDomain.IN_DOMAIN,
            ai_mode=ai_mode,
        )
        for i, (image, (_, probability)) in enumerate(zip(images, readings, strict=True))
    )
    Review.objects.bulk_create(
        Review(
            study=s,
            radiologist=rad,
            finding=finding,
            agreement="agree" if (finding == Finding.PNEUMONIA) == (probability >= 0.5) else "disagree",
            signed_at=_at(day, 15),
            ai_mode=ai_mode,
        )
        for s, (finding, probability) in zip(studies, readings, strict=True)
    )


@pytest.fixture
def drift(demo_site, rad, drifting_model, site_admin, receiver):
    """40 days of 10 readings a day: full agreement for 33 days, then 6 in 10 for the last 7."""
    demo_site.alert_webhook_url = receiver.url
    demo_site.save()
    for i in range(40):
        day = FIRST + timedelta(days=i)
        low = day > LAST - timedelta(days=7)
        _readings(demo_site, drifting_model, rad, day, agree=6 if low else 10, disagree=4 if low else 0)
    return drifting_model


@pytest.mark.slow
def test_it_raises_one_alarm_one_email_and_one_notice_for_an_induced_drift(
    drift,
    demo_site,
    receiver,
    eager_tasks,
    django_capture_on_commit_callbacks,
    django_assert_max_num_queries,
) -> None:
    # Given six low days, nothing yet
    with django_capture_on_commit_callbacks(execute=True):
        assert drift_check(day=LAST - timedelta(days=1)) == []
    # When the seventh is checked
    with django_capture_on_commit_callbacks(execute=True), django_assert_max_num_queries(12):
        opened = drift_check(day=LAST)
    # Then one alarm, one e-mail, one webhook notice without patient data
    assert [(a.kind, a.site, a.model_version, a.day) for a in opened] == [(DriftKind.AGREEMENT, demo_site, drift, LAST)]
    assert opened[0].figures["reference"] == pytest.approx(0.8506, abs=1e-4)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["admin@demo.example"]
    assert "DEMO" in mail.outbox[0].subject
    (notice,) = receiver.bodies()
    assert notice["event"] == "drift_alarm"
    assert notice["site"] == "DEMO"
    assert notice["kind"] == "agreement"
    assert notice["alarm_id"] == opened[0].pk
    assert not {"patient", "name", "accession"} & {word for key in notice for word in key.split("_")}
    # And a second run raises no second alarm
    with django_capture_on_commit_callbacks(execute=True):
        assert drift_check(day=LAST) == []
        assert drift_check(day=LAST + timedelta(days=1)) == []
    assert DriftAlarm.objects.count() == 1
    assert len(mail.outbox) == 1
    assert len(receiver.bodies()) == 1


@pytest.mark.slow
def test_it_gives_each_days_figures_in_a_fixed_number_of_queries(drift, demo_site, django_assert_num_queries) -> None:
    with django_assert_num_queries(3):
        figures = drift_daily_figures(start=FIRST, until=LAST)
    days = figures[(demo_site.pk, drift.pk)]
    assert len(days) == 40
    assert days[LAST].signed == 10
    assert days[LAST].agreement == pytest.approx(0.6)
    assert days[FIRST].agreement == 1.0
    assert days[LAST].kappa == 0.0  # the AI always positive: no agreement beyond chance
    assert days[LAST].mean_probability == pytest.approx(0.9)
    assert days[LAST].positive_share == 1.0
    assert days[LAST].outside_share == 0.0


def test_it_counts_no_days_under_the_minimum(demo_site, rad, drifting_model, settings) -> None:
    # 9 readings a day fall under the default minimum of 10: a month of them raises nothing
    for i in range(10):
        _readings(demo_site, drifting_model, rad, LAST - timedelta(days=i), agree=4, disagree=5)
    assert drift_check(day=LAST) == []
    settings.PNEUMO_DRIFT_MIN_DAILY = 9
    assert [a.kind for a in drift_check(day=LAST)] == [DriftKind.AGREEMENT]


def test_it_alarms_on_a_day_when_images_outside_the_domain_jump(demo_site, rad, drifting_model) -> None:
    for i in range(1, 31):
        _readings(demo_site, drifting_model, rad, LAST - timedelta(days=i), agree=2, disagree=0, outside=0)
    _readings(
        demo_site, drifting_model, rad, LAST - timedelta(days=1), agree=1, disagree=0, outside=1
    )  # 61 images, 1 out
    _readings(demo_site, drifting_model, rad, LAST, agree=20, disagree=0, outside=4)
    (alarm,) = drift_check(day=LAST)
    assert alarm.kind == DriftKind.OUTSIDE_DOMAIN
    assert alarm.figures["today"]["outside_share"] == pytest.approx(0.2)
    assert alarm.figures["baseline_share"] == pytest.approx(1 / 61)
    assert drift_check(day=LAST) == []


def _open_alarm(site, version) -> DriftAlarm:
    return DriftAlarm.objects.create(
        site=site, model_version=version, kind=DriftKind.AGREEMENT, day=LAST, figures={"reference": 0.85}
    )


def test_it_audits_acknowledging_an_alarm(demo_site, drifting_model, admin_user) -> None:
    alarm = _open_alarm(demo_site, drifting_model)
    assert drift_alarm_acknowledge(alarm_id=alarm.pk, user=admin_user) is True
    assert drift_alarm_acknowledge(alarm_id=alarm.pk, user=admin_user) is False
    alarm.refresh_from_db()
    assert alarm.acknowledged_by == admin_user
    assert alarm.acknowledged_at is not None
    (event,) = AuditEvent.objects.filter(action="drift_alarm_acknowledge")
    assert (event.user, event.site, event.object_id) == (admin_user, demo_site, str(alarm.pk))


def test_it_acknowledges_from_the_admin_action(client, demo_site, drifting_model, admin_user) -> None:
    alarm = _open_alarm(demo_site, drifting_model)
    admin_user.is_superuser = True  # as demo_data makes the admin
    admin_user.save()
    client.force_login(admin_user)
    response = client.post(
        "/admin/cases/driftalarm/", {"action": "acknowledge", "_selected_action": [alarm.pk]}, follow=True
    )
    assert response.status_code == 200
    alarm.refresh_from_db()
    assert alarm.acknowledged_by == admin_user
    assert AuditEvent.objects.filter(action="drift_alarm_acknowledge", object_id=str(alarm.pk)).count() == 1


def test_it_shows_the_open_alarm_in_metrics(client, demo_site, drifting_model, admin_user) -> None:
    alarm = _open_alarm(demo_site, drifting_model)
    client.force_login(admin_user)
    line = f'pneumo_drift_alarms_open{{kind="agreement",model="{drifting_model.name}",site="DEMO"}} 1.0'
    assert line in client.get("/metrics").content.decode()
    drift_alarm_acknowledge(alarm_id=alarm.pk, user=admin_user)
    assert line not in client.get("/metrics").content.decode()


def test_it_lists_open_alarms_on_the_admins_dashboard(client, demo_site, drifting_model, admin_user, rad) -> None:
    _open_alarm(demo_site, drifting_model)
    client.force_login(admin_user)
    page = client.get("/dashboard/").content.decode()
    assert "Drift alarms" in page
    assert drifting_model.name in page
    client.force_login(rad)
    assert "Drift alarms" not in client.get("/dashboard/").content.decode()


def test_it_runs_from_the_command(demo_site, rad, drifting_model, capsys) -> None:
    for i in range(7):
        _readings(demo_site, drifting_model, rad, LAST - timedelta(days=i), agree=5, disagree=5)
    call_command("drift_check", "--day", LAST.isoformat())
    assert "opened: agreement alarm" in capsys.readouterr().out
    assert DriftAlarm.objects.count() == 1


def test_it_is_scheduled_daily_as_a_registered_task(settings, demo_site, rad, drifting_model) -> None:
    from cases.tasks import drift_check_task
    from pneumo.celery import app

    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == drift_check_task.name)
    assert entry["schedule"] == 24 * 3600.0
    assert drift_check_task.name in app.tasks
    # It checks yesterday, the last whole day
    for i in range(1, 8):
        _readings(demo_site, drifting_model, rad, timezone.localdate() - timedelta(days=i), agree=5, disagree=5)
    assert drift_check_task() == 1
    assert DriftAlarm.objects.get().day == timezone.localdate() - timedelta(days=1)


def test_muted_results_make_no_agreement_and_no_probability_but_count_as_outside(
    demo_site, rad, drifting_model
) -> None:
    # Given a day of ten agreeing readings, then one study whose only result is muted (outside the domain, 0.9,
    # read "no pneumonia") and one image the scope check found no chest X-ray (no probability)
    _readings(demo_site, drifting_model, rad, LAST, agree=10, disagree=0)
    signed_readings(demo_site, drifting_model, rad, LAST, [(Finding.NO_PNEUMONIA, 0.9)], outside=1)
    Prediction.objects.create(
        image=Image.objects.create(
            study=Study.objects.create(
                site=demo_site, patient=Patient.objects.create(site=demo_site, patient_id="NC"),
                study_instance_uid="1.2.826.0.1.95.1",
            ),
            site=demo_site, sop_instance_uid="1.2.826.0.1.95.2", kind="dicom", sha256="0" * 64,
            ai_eligibility="eligible", file="studies/test/x.dcm",
        ),
        model_version=drifting_model, preprocessing_version="test-v1", status=PredictionStatus.SUCCEEDED,
        probability=None, domain=AiDomain.NOT_CHEST_XRAY, finished_at=_at(LAST, 9),
    )  # fmt: skip

    day = drift_daily_figures(start=LAST, until=LAST)[(demo_site.pk, drifting_model.pk)][LAST]

    # Then the muted result is no disagreement and no probability; both images count as outside the domain
    assert (day.signed, day.agreement) == (10, 1.0)
    assert (day.images, day.outside, day.scored) == (12, 2, 10)
    assert day.mean_probability == pytest.approx(0.9) and day.positive_share == 1.0
