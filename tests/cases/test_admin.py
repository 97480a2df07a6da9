from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from cases.models import AuditEvent, Image, Study

ADMIN_PAGES = [
    "cases_site",
    "cases_user",
    "cases_patient",
    "cases_study",
    "cases_image",
    "cases_review",
    "cases_auditevent",
    "cases_apitoken",
    "inference_modelversion",
    "inference_prediction",
]


@pytest.fixture
def superuser(admin_user):
    admin_user.is_superuser = True
    admin_user.save()
    return admin_user


@pytest.mark.parametrize("name", ADMIN_PAGES)
def test_it_lists_every_model_in_the_admin(client, superuser, demo_site, make_study, make_image, name) -> None:
    make_image(make_study(demo_site))
    client.force_login(superuser)
    assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200


def test_it_keeps_non_staff_out_of_the_admin(client, rad) -> None:
    client.force_login(rad)
    assert client.get(reverse("admin:cases_study_changelist")).status_code == 302


def test_it_corrects_demographics_resolves_the_conflict_and_audits(client, superuser, demo_site, make_patient):
    patient = make_patient(demo_site, name="Doe^Jon", demographics_conflict="an upload disagreed on name")
    client.force_login(superuser)
    url = reverse("admin:cases_patient_change", args=[patient.pk])
    response = client.post(
        url,
        {
            "site": demo_site.pk,
            "patient_id": patient.patient_id,
            "name": "Doe^John",
            "birth_date": "",
            "sex": "M",
            "demographics_conflict": patient.demographics_conflict,
        },
    )
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.name == "Doe^John" and patient.demographics_conflict == ""
    assert AuditEvent.objects.filter(action="patient_correct", object_id=str(patient.pk)).count() == 1


@pytest.mark.parametrize(("field", "value"), [("patient_id", "MRN-\u202e1"), ("name", "Doe^\nJohn")])
def test_it_refuses_a_patient_id_or_name_that_can_pass_for_another(
    client, superuser, demo_site, make_patient, field, value
) -> None:
    patient = make_patient(demo_site, name="Doe^Jon")
    client.force_login(superuser)
    form = {"site": demo_site.pk, "patient_id": patient.patient_id, "name": "Doe^Jon", "birth_date": "", "sex": "M"}
    response = client.post(
        reverse("admin:cases_patient_change", args=[patient.pk]), form | {field: value, "demographics_conflict": ""}
    )
    assert response.status_code == 200  # the form again, with the reason
    assert "can make it look like another patient&#x27;s" in response.content.decode()
    patient.refresh_from_db()
    assert getattr(patient, field) != value
    assert not AuditEvent.objects.filter(action="patient_correct").exists()


def test_it_moves_a_study_to_the_right_patient_and_audits(
    superuser, demo_site, north_site, make_patient, make_study, client
) -> None:
    study = make_study(demo_site)
    right = make_patient(demo_site)
    stranger = make_patient(north_site)
    client.force_login(superuser)
    url = reverse("admin:cases_study_change", args=[study.pk])
    form = {
        "site": demo_site.pk,
        "study_instance_uid": study.study_instance_uid,
        "priority": "routine",
        "images-TOTAL_FORMS": 0,
        "images-INITIAL_FORMS": 0,
    }
    assert client.post(url, {**form, "patient": stranger.pk}).status_code == 200  # refused, form shown again
    assert client.post(url, {**form, "patient": right.pk}).status_code == 302
    study.refresh_from_db()
    assert study.patient == right
    assert AuditEvent.objects.filter(action="study_move", object_id=str(study.pk)).count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_deletes_a_study_uploaded_in_error_with_its_files(client, demo_site, make_study, make_image, admin_user):
    admin_user.is_superuser = True
    admin_user.save()
    study = make_study(demo_site)
    name = default_storage.save("studies/test/wrong.dcm", ContentFile(b"x"))
    make_image(study, file=name)
    client.force_login(admin_user)
    response = client.post(reverse("admin:cases_study_delete", args=[study.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Study.objects.exists() and not Image.objects.exists()
    assert not default_storage.exists(name)
    assert AuditEvent.objects.filter(action="study_delete").count() == 1
