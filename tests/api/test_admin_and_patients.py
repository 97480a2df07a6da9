from __future__ import annotations

import pytest
from django.utils import timezone

from cases.models import AuditEvent, Review
from inference.models import ModelVersion

MODELS = "/api/v1/models/"
NEW_MODEL = {"name": "xception-v2", "version": "2.0", "source_path": "/models/v2.keras", "sha256": "C" * 64}


# --- Patients and sites -----------------------------------------------------------------------


def test_it_finds_patients_by_name_words_or_id_in_the_body(world, api, rad, make_patient, demo_site) -> None:
    make_patient(demo_site, patient_id="MRN-12345", name="SMITH^JOHN")
    client = api(rad)
    by_name = client.post("/api/v1/patients/search/", {"query": "john smith"}, format="json").json()
    assert [p["patient_id"] for p in by_name["results"]] == ["MRN-12345"]
    by_id = client.post("/api/v1/patients/search/", {"query": "mrn-123"}, format="json").json()
    assert [p["name"] for p in by_id["results"]] == ["SMITH^JOHN"]
    north = client.post("/api/v1/patients/search/", {"query": "jane"}, format="json").json()["results"]
    assert [p["id"] for p in north] == [world.demo.patient.pk]  # NORTH's Jane Doe stays hidden
    assert AuditEvent.objects.filter(action="search_patients", user=rad).count() == 3
    assert "john" not in str(AuditEvent.objects.filter(action="search_patients").values_list("detail", flat=True))


def test_it_lists_patients_with_non_identifying_filters_only(world, api, rad) -> None:
    client = api(rad)
    body = client.get("/api/v1/patients/").json()
    assert [p["id"] for p in body["results"]] == [world.demo.patient.pk]
    conflicts = client.get("/api/v1/patients/", {"demographics_conflict": "true"}).json()
    assert conflicts["count"] == 0


def test_it_shows_a_patient_with_their_studies(world, api, tech) -> None:
    body = api(tech).get(f"/api/v1/patients/{world.demo.patient.pk}/").json()
    assert body["site"] == "DEMO" and len(body["studies"]) == 3


def test_it_lists_the_callers_sites(world, api, rad, admin_user) -> None:
    assert [s["code"] for s in api(rad).get("/api/v1/sites/").json()["results"]] == ["DEMO"]
    assert [s["code"] for s in api(admin_user).get("/api/v1/sites/").json()["results"]] == ["DEMO", "NORTH"]


# --- Models -----------------------------------------------------------------------------------------


def test_it_registers_a_model_version_for_admins(db, api, admin_user) -> None:
    response = api(admin_user).post(MODELS, {**NEW_MODEL, "threshold": 0.4}, format="json")
    assert response.status_code == 201, response.json()
    version = ModelVersion.objects.get(name="xception-v2")
    assert version.sha256 == "c" * 64 and version.threshold == 0.4 and not version.is_active
    assert version.preprocessing_version  # set by the server, not the client
    assert AuditEvent.objects.filter(action="model_create", user=admin_user).exists()


def test_it_refuses_to_activate_a_version_without_a_passed_conversion(db, api, admin_user) -> None:
    client = api(admin_user)
    assert client.post(MODELS, {**NEW_MODEL, "is_active": True}, format="json").status_code == 409
    assert not ModelVersion.objects.exists()
    created = client.post(MODELS, NEW_MODEL, format="json").json()
    response = client.patch(f"{MODELS}{created['id']}/", {"is_active": True}, format="json")
    assert response.status_code == 409 and "parity gate" in response.json()["detail"]
    assert not ModelVersion.objects.get().is_active


def test_it_answers_a_taken_model_name_with_a_conflict(model_version, api, admin_user) -> None:
    response = api(admin_user).post(MODELS, {**NEW_MODEL, "name": model_version.name}, format="json")
    assert response.status_code == 409 and "already exists" in response.json()["detail"]


def test_it_takes_the_registrys_dotted_model_names_and_refuses_other_characters(db, api, admin_user) -> None:
    client = api(admin_user)
    assert client.post(MODELS, {**NEW_MODEL, "name": "pneumonia-xception-pkg-0.3.0"}, format="json").status_code == 201
    for name in ("../etc", ".hidden", "two words", "name/with/slashes"):
        response = client.post(MODELS, {**NEW_MODEL, "name": name}, format="json")
        assert response.status_code == 400 and "name" in response.json(), name


def test_it_refuses_json_values_of_the_wrong_type(db, api, admin_user) -> None:
    response = api(admin_user).post(MODELS, {**NEW_MODEL, "version": 2, "threshold": "0.4"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"version": ["Give text."], "threshold": ["Give a number."]}
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize(("role", "sees_paths"), [("tech", False), ("rad", False), ("admin_user", True)])
def test_it_shows_the_servers_model_paths_to_admins_only(role: str, sees_paths: bool, model_version, api, request):
    client = api(request.getfixturevalue(role))
    listed = client.get(MODELS).json()["results"][0]
    one = client.get(f"{MODELS}{model_version.pk}/").json()
    assert listed["name"] == one["name"] == model_version.name
    assert ("source_path" in listed, "source_path" in one) == (sees_paths, sees_paths)
    assert (model_version.source_path in str(listed) + str(one)) == sees_paths


def test_it_activates_a_converted_version_and_deactivates_the_other(
    model_version, make_model_version, api, admin_user
) -> None:
    other = make_model_version(name="v2", version="2", preprocessing_version="p")
    response = api(admin_user).patch(f"{MODELS}{other.pk}/", {"is_active": True}, format="json")
    assert response.status_code == 200 and response.json()["is_active"] is True
    model_version.refresh_from_db()
    assert not model_version.is_active


def test_it_refuses_to_activate_a_version_without_scope_checks(
    model_version, make_model_version, api, admin_user
) -> None:
    other = make_model_version(name="v2", domain_check_path="", domain_check_sha256="")
    response = api(admin_user).patch(f"{MODELS}{other.pk}/", {"is_active": True}, format="json")
    assert response.status_code == 409
    assert "v2 has no domain check and chest check" in response.json()["detail"]
    other.refresh_from_db()
    model_version.refresh_from_db()
    assert not other.is_active and model_version.is_active


def test_it_freezes_the_threshold_of_a_version_in_use(model_version, api, admin_user) -> None:
    response = api(admin_user).patch(f"{MODELS}{model_version.pk}/", {"threshold": 0.3}, format="json")
    assert response.status_code == 409
    model_version.refresh_from_db()
    assert model_version.threshold == 0.5


def test_it_ignores_read_only_model_fields(model_version, api, admin_user) -> None:
    api(admin_user).patch(f"{MODELS}{model_version.pk}/", {"parity_passed": False, "description": "x"}, format="json")
    model_version.refresh_from_db()
    assert model_version.parity_passed and model_version.description == "x"


# --- Stats and audit ----------------------------------------------------------------------------


def test_it_reports_agreement_in_the_stats(world, api, rad, admin_user) -> None:
    Review.objects.create(
        study=world.demo.awaiting,
        radiologist=rad,
        finding="pneumonia",
        ai_label="pneumonia",
        model_version=world.version,
        agreement="agree",
        signed_at=timezone.now(),
    )
    body = api(admin_user).get("/api/v1/stats/", {"days": 7}).json()
    [agreement] = body["agreement"]
    assert agreement["model_version"] == str(world.version) and agreement["agreed"] == 1
    assert agreement["confusion_matrix"] == {"tp": 1, "fp": 0, "fn": 0, "tn": 0}
    assert body["days"] == 7
    assert api(admin_user).get("/api/v1/stats/", {"days": 0}).status_code == 400


def test_it_keeps_the_dashboard_figures_from_technicians(world, api, client, tech, rad) -> None:
    """The figures include AI-vs-radiologist agreement: the API refuses them as the dashboard page does."""
    assert api(tech).get("/api/v1/stats/").status_code == 403
    client.force_login(tech)
    assert client.get("/dashboard/").status_code == 403
    assert api(rad).get("/api/v1/stats/").status_code == 200


def test_it_filters_the_audit_trail(world, api, rad, admin_user) -> None:
    api(rad).get(f"/api/v1/studies/{world.demo.awaiting.pk}/")
    client = api(admin_user)
    body = client.get("/api/v1/audit/", {"action": "view_study", "user": "rad"}).json()
    assert [(e["action"], e["username"], e["object_id"]) for e in body["results"]] == [
        ("view_study", "rad", str(world.demo.awaiting.pk))
    ]
    today = timezone.localdate().isoformat()
    assert client.get("/api/v1/audit/", {"date_from": today, "date_to": today}).json()["count"] >= 1
    assert client.get("/api/v1/audit/", {"date_to": "2000-01-01"}).json()["count"] == 0
    assert client.get("/api/v1/audit/", {"site": "NORTH"}).json()["count"] == 0
    assert client.get("/api/v1/audit/", {"site": "demo"}).json()["count"] >= 1
