"""Reading pages and image renders: who sees what, what each POST does, what the viewer gets."""

from __future__ import annotations

import gzip
import io
import re
from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from PIL import Image as PILImage

from cases import pictures
from cases.models import AuditEvent, Priority, Review, Study
from cases.states import StudyStatus
from inference.models import ModelVersion, Prediction, PredictionStatus
from tests.browser.studies import HEATMAP, study_ready
from tests.dicom_factory import stored_pixels

S = StudyStatus


@pytest.fixture
def study(demo_site) -> Study:
    """A flagged routine study (AI 0.87) with a stored 12-bit DICOM image and a heatmap."""
    return study_ready(demo_site, probability=0.87)


@pytest.fixture
def stranger_study(north_site) -> Study:
    return study_ready(north_site, probability=0.9)


def _study_urls(study: Study) -> list[str]:
    image = study.images.first().pk
    return [
        f"/studies/{study.pk}/",
        f"/studies/{study.pk}/report/",
        f"/images/{image}/pixels",
        f"/images/{image}/render.png",
        f"/images/{image}/heatmap.png",
    ]


def _post_urls(study: Study) -> list[str]:
    return [f"/studies/{study.pk}/{action}/" for action in ("sign", "amend", "release", "claim", "claim/touch")]


def _claim(client, study: Study):
    """What the study page's script posts once the page is loaded."""
    return client.post(f"/studies/{study.pk}/claim/", HTTP_ACCEPT="application/json")


# --- Access: owner, colleague, stranger --------------------------------------------------------------


@pytest.mark.parametrize("who", ["rad", "colleague_rad", "tech", "admin_user"])
def test_it_shows_every_page_of_a_study_to_its_site(client, request, study, who) -> None:
    client.force_login(request.getfixturevalue(who))
    for url in _study_urls(study):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("who", ["rad", "tech", "colleague_rad"])
def test_it_hides_another_sites_study_behind_404_everywhere(client, request, stranger_study, who) -> None:
    client.force_login(request.getfixturevalue(who))
    for url in _study_urls(stranger_study):
        assert client.get(url).status_code == 404, url
    for url in _post_urls(stranger_study):
        assert client.post(url, {"finding": "pneumonia"}).status_code == 404, url
    stranger_study.refresh_from_db()
    assert (stranger_study.status, stranger_study.claimed_by) == (S.AWAITING_REVIEW, None)


def test_it_keeps_another_sites_studies_off_the_worklist_and_dashboard(client, rad, study, stranger_study) -> None:
    client.force_login(rad)
    assert [r.study.pk for r in client.get("/worklist/").context["rows"]] == [study.pk]
    assert client.get("/worklist/rows/").json()["ids"] == [study.pk]
    stats = client.get("/dashboard/").context["stats"]
    assert sum(d["count"] for d in stats["received_per_day"]) == 1


def test_it_asks_anonymous_visitors_to_log_in(client, study) -> None:
    for url in [*_study_urls(study), "/worklist/", "/dashboard/"]:
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


@pytest.mark.parametrize(
    ("who", "worklist", "dashboard"), [("tech", 403, 403), ("rad", 200, 200), ("admin_user", 200, 200)]
)
def test_it_opens_the_worklist_and_dashboard_to_readers_and_admins(
    db, client, request, who, worklist, dashboard
) -> None:
    client.force_login(request.getfixturevalue(who))
    assert client.get("/worklist/").status_code == worklist
    assert client.get("/dashboard/").status_code == dashboard


# --- Study page: claim by POST once open, read-only views ------------------------------------------------


def test_it_claims_nothing_when_another_site_sends_a_radiologist_to_the_study(client, rad, study) -> None:
    # Given a radiologist's browser, signed in, sent to the study by a link on another web site
    client.force_login(rad)

    # When it follows the link (a top-level GET: SameSite=Lax sends the session cookie along)
    page = client.get(
        f"/studies/{study.pk}/", HTTP_SEC_FETCH_SITE="cross-site", HTTP_REFERER="https://elsewhere.example/"
    )

    # Then the page shows, ready to claim, and nothing changed
    assert page.status_code == 200 and page.context["to_claim"] and not page.context["claimed_by_me"]
    assert f'data-claim-url="/studies/{study.pk}/claim/"'.encode() in page.content
    study.refresh_from_db()
    assert (study.status, study.claimed_by) == (S.AWAITING_REVIEW, None)
    assert not AuditEvent.objects.filter(action="claim").exists()


def test_it_claims_the_study_when_the_opened_page_posts(client, rad, study) -> None:
    client.force_login(rad)
    client.get(f"/studies/{study.pk}/")
    claimed = _claim(client, study)
    assert claimed.status_code == 200 and claimed.json() == {"status": S.IN_REVIEW, "claimed_by": "rad"}
    study.refresh_from_db()
    assert (study.status, study.claimed_by) == (S.IN_REVIEW, rad)
    page = client.get(f"/studies/{study.pk}/")
    assert page.context["can_sign"] and page.context["claimed_by_me"] and not page.context["to_claim"]
    assert b'id="reading-form"' in page.content and b"data-claim-url" not in page.content
    assert b"AI result, not confirmed" in page.content
    assert AuditEvent.objects.filter(action="claim", user=rad, object_id=str(study.pk)).count() == 1
    assert AuditEvent.objects.filter(action="view_study", user=rad, object_id=str(study.pk)).count() == 2


def test_it_claims_only_by_post(client, rad, study) -> None:
    client.force_login(rad)
    assert client.get(f"/studies/{study.pk}/claim/").status_code == 405
    assert Study.objects.get(pk=study.pk).claimed_by is None


def test_it_refuses_a_claim_to_a_colleague_and_to_a_technician(client, rad, colleague_rad, tech, study) -> None:
    rad.display_name = "Dr Rae"
    rad.save()
    client.force_login(rad)
    _claim(client, study)
    client.force_login(colleague_rad)
    refused = _claim(client, study)
    assert refused.status_code == 409
    assert refused.json() == {"status": S.IN_REVIEW, "claimed_by": "Dr Rae", "detail": "In review by Dr Rae."}
    client.force_login(tech)
    assert _claim(client, study).status_code == 403
    assert Study.objects.get(pk=study.pk).claimed_by == rad


def test_it_shows_a_colleagues_claim_read_only(client, rad, colleague_rad, study) -> None:
    rad.display_name = "Dr Rae"
    rad.save()
    client.force_login(rad)
    _claim(client, study)
    client.force_login(colleague_rad)
    page = client.get(f"/studies/{study.pk}/")
    assert b"In review by Dr Rae" in page.content
    assert b'id="reading-form"' not in page.content and b"data-claim-url" not in page.content
    assert Study.objects.get(pk=study.pk).claimed_by == rad


def test_it_offers_a_lapsed_claim_to_the_next_reader(client, rad, colleague_rad, study, settings) -> None:
    client.force_login(rad)
    _claim(client, study)
    idle = timezone.now() - timedelta(seconds=settings.PNEUMO_CLAIM_IDLE_SECONDS + 5)
    Study.objects.filter(pk=study.pk).update(claim_seen_at=idle)
    client.force_login(colleague_rad)
    assert client.get(f"/studies/{study.pk}/").context["to_claim"]
    assert _claim(client, study).status_code == 200
    assert Study.objects.get(pk=study.pk).claimed_by == colleague_rad


def test_it_shows_technicians_the_result_without_the_reading_tools(client, tech, study) -> None:
    client.force_login(tech)
    page = client.get(f"/studies/{study.pk}/")
    assert b"AI result, not confirmed" in page.content
    assert b'id="reading-form"' not in page.content and b'id="amend-form"' not in page.content
    assert Study.objects.get(pk=study.pk).status == S.AWAITING_REVIEW


def test_it_lets_admins_look_without_claiming(client, admin_user, study) -> None:
    client.force_login(admin_user)
    page = client.get(f"/studies/{study.pk}/")
    assert b'id="reading-form"' not in page.content
    assert Study.objects.get(pk=study.pk).status == S.AWAITING_REVIEW


def test_it_shows_the_no_ai_reason(client, tech, demo_site) -> None:
    study = study_ready(demo_site, probability=None)
    client.force_login(tech)
    page = client.get(f"/studies/{study.pk}/")
    assert b"No AI result: no image is eligible for the AI." in page.content


def test_it_keeps_the_no_ai_reason_once_a_radiologist_opens_the_study(client, rad, demo_site) -> None:
    study = study_ready(demo_site, probability=None)
    client.force_login(rad)
    page = client.get(f"/studies/{study.pk}/")
    assert b"No AI result to compare with." in page.content
    assert b"No AI result: no image is eligible for the AI." in page.content


def test_it_shows_outside_validated_use_and_its_reason(client, rad, study) -> None:
    Prediction.objects.filter(image__study=study).update(
        outside_validated_use=True, outside_validated_use_reason="Patient is 40 years old."
    )
    client.force_login(rad)
    page = client.get(f"/studies/{study.pk}/")
    assert b"Outside validated use." in page.content and b"Patient is 40 years old." in page.content


def test_it_lists_the_patients_prior_studies_with_their_findings(client, rad, study, demo_site) -> None:
    prior = study_ready(demo_site, patient=study.patient, probability=0.2)
    Review.objects.create(
        study=prior,
        radiologist=rad,
        finding="no_pneumonia",
        ai_label="normal",
        agreement="agree",
        signed_at=prior.received_at,
    )
    client.force_login(rad)
    page = client.get(f"/studies/{study.pk}/")
    assert [p.pk for p in page.context["priors"]] == [prior.pk]
    assert b"No pneumonia" in page.content


# --- Signing, amending, releasing ----------------------------------------------------------------------


def test_it_signs_and_reports(client, rad, study) -> None:
    client.force_login(rad)
    client.get(f"/studies/{study.pk}/")
    response = client.post(f"/studies/{study.pk}/sign/", {"finding": "pneumonia", "report": "RLL consolidation."})
    assert response.status_code == 302 and response["Location"] == f"/studies/{study.pk}/"
    review = Review.objects.get(study=study)
    assert (review.agreement, review.report_text) == ("agree", "RLL consolidation.")
    page = client.get(f"/studies/{study.pk}/")
    assert b"Signed report" in page.content and b'id="amend-form"' in page.content
    assert b"AI result, not confirmed" not in page.content


def test_it_explains_a_missing_overrule_reason_and_keeps_the_text(client, rad, study) -> None:
    client.force_login(rad)
    response = client.post(f"/studies/{study.pk}/sign/", {"finding": "no_pneumonia", "report": "Clear lungs."})
    assert response.status_code == 400
    assert b"Your finding overrules the AI: give a reason." in response.content
    assert b"Clear lungs." in response.content
    assert not Review.objects.exists()


def test_it_answers_refused_signatures_with_their_status_codes(client, rad, colleague_rad, tech, study) -> None:
    client.force_login(rad)
    _claim(client, study)
    url = f"/studies/{study.pk}/sign/"
    refused = client.post(url, {"finding": "no_pneumonia"})
    assert (refused.status_code, refused.context["error"].field) == (400, "reason")
    client.force_login(colleague_rad)
    assert client.post(url, {"finding": "pneumonia"}).status_code == 409
    client.force_login(tech)
    assert client.post(url, {"finding": "pneumonia"}).status_code == 403
    client.force_login(rad)
    signed = client.post(url, {"finding": "no_pneumonia", "reason": "false_positive"})
    assert signed.status_code == 302 and Review.objects.get(study=study).agreement == "disagree"
    assert client.post(url, {"finding": "pneumonia"}).status_code == 409


def test_it_answers_html_whatever_the_client_accepts(client, rad, study) -> None:
    """The pages have no JSON mode: programs use the API."""
    client.force_login(rad)
    client.get(f"/studies/{study.pk}/")
    json = {"HTTP_ACCEPT": "application/json"}
    refused = client.post(f"/studies/{study.pk}/sign/", {"finding": "no_pneumonia"}, **json)
    assert refused.status_code == 400 and refused["Content-Type"].startswith("text/html")
    signed = client.post(f"/studies/{study.pk}/sign/", {"finding": "pneumonia"}, **json)
    assert signed.status_code == 302 and signed["Location"] == f"/studies/{study.pk}/"


def test_it_refuses_a_technicians_signature(client, tech, study) -> None:
    client.force_login(tech)
    response = client.post(f"/studies/{study.pk}/sign/", {"finding": "pneumonia"})
    assert response.status_code == 403
    assert not Review.objects.exists()


def test_it_amends_and_keeps_the_history(client, rad, study) -> None:
    client.force_login(rad)
    client.post(f"/studies/{study.pk}/sign/", {"finding": "pneumonia", "report": "First."})
    missing = client.post(f"/studies/{study.pk}/amend/", {"finding": "indeterminate"})
    assert missing.status_code == 400 and b"Say why the report is amended." in missing.content
    amend = {"finding": "indeterminate", "report": "Second.", "amendment_reason": "Typo", "amends_version": "1"}
    response = client.post(f"/studies/{study.pk}/amend/", amend)
    assert response.status_code == 302
    page = client.get(f"/studies/{study.pk}/")
    assert [r.version for r in page.context["history"]] == [1, 2]
    assert b"First." in page.content and b"Second." in page.content and b"Amended because: Typo" in page.content
    assert b'name="amends_version" value="2"' in page.content


def test_it_refuses_an_amendment_of_a_version_no_longer_current(client, rad, colleague_rad, study) -> None:
    # Given a signed study whose amend form two radiologists opened at version 1
    client.force_login(rad)
    client.post(f"/studies/{study.pk}/sign/", {"finding": "pneumonia", "report": "First."})
    opened = client.get(f"/studies/{study.pk}/")
    assert b'name="amends_version" value="1"' in opened.content
    amend = {"finding": "indeterminate", "amendment_reason": "Second look", "amends_version": "1"}
    client.force_login(colleague_rad)
    assert client.post(f"/studies/{study.pk}/amend/", amend | {"report": "Colleague's."}).status_code == 302

    # When the other one sends the amendment of version 1
    client.force_login(rad)
    late = client.post(f"/studies/{study.pk}/amend/", amend | {"report": "Mine."})

    # Then it is refused, with the version now current shown, and nothing is added
    assert late.status_code == 409
    assert b"This report is now at version 2" in late.content and b"Colleague&#x27;s." in late.content
    assert b'name="amends_version" value="2"' in late.content
    assert [r.version for r in Review.objects.filter(study=study).order_by("version")] == [1, 2]
    missing = client.post(f"/studies/{study.pk}/amend/", {"finding": "pneumonia", "amendment_reason": "Again"})
    assert missing.status_code == 400 and Review.objects.filter(study=study).count() == 2


def test_it_releases_the_study_on_cancel(client, rad, study) -> None:
    client.force_login(rad)
    _claim(client, study)
    response = client.post(f"/studies/{study.pk}/release/")
    assert response.status_code == 302 and response["Location"] == "/worklist/"
    study.refresh_from_db()
    assert (study.status, study.claimed_by) == (S.AWAITING_REVIEW, None)


def test_it_refuses_to_release_a_colleagues_claim(client, rad, colleague_rad, study) -> None:
    client.force_login(rad)
    _claim(client, study)
    client.force_login(colleague_rad)
    response = client.post(f"/studies/{study.pk}/release/")
    assert response.status_code == 409 and b"In review by" in response.content
    assert Study.objects.get(pk=study.pk).claimed_by == rad


def test_it_keeps_the_claim_alive_on_touch(client, rad, colleague_rad, study) -> None:
    client.force_login(rad)
    _claim(client, study)
    touched = client.post(f"/studies/{study.pk}/claim/touch/")
    assert touched.status_code == 200 and touched.json()["claimed"] is True
    client.force_login(colleague_rad)
    refused = client.post(f"/studies/{study.pk}/claim/touch/")
    assert refused.status_code == 409 and refused.json()["claimed"] is False


# --- Printable report --------------------------------------------------------------------------------


def test_it_prints_the_report_with_signature_and_both_pictures(client, rad, study) -> None:
    rad.display_name = "Dr Rae Diologist"
    rad.save()
    client.force_login(rad)
    unsigned = client.get(f"/studies/{study.pk}/report/")
    assert b"Unconfirmed AI result" in unsigned.content
    client.post(f"/studies/{study.pk}/sign/", {"finding": "pneumonia", "report": "RLL consolidation."})
    page = client.get(f"/studies/{study.pk}/report/")
    image = study.images.first().pk
    assert b"Electronically signed by <strong>Dr Rae Diologist</strong>" in page.content
    assert f"/images/{image}/render.png".encode() in page.content
    assert f"/images/{image}/heatmap.png".encode() in page.content
    assert b"Unconfirmed AI result" not in page.content
    assert AuditEvent.objects.filter(action="view_report", object_id=str(study.pk)).count() == 2


# --- Content-Security-Policy: nothing inline -----------------------------------------------------------


def test_it_puts_no_inline_script_or_style_in_any_page(client, rad, study) -> None:
    client.force_login(rad)
    pages = ["/worklist/", f"/studies/{study.pk}/", f"/studies/{study.pk}/report/", "/dashboard/"]
    for url in pages:
        html = client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert not re.search(r"\sstyle\s*=", html), url
        assert "<style" not in html, url
        assert not re.search(r"\son[a-z]+\s*=", html), url


# --- Renders for the viewer, the report and the API -----------------------------------------------------


def test_it_sends_the_viewer_every_bit_of_the_pixels(client, rad, study) -> None:
    client.force_login(rad)
    image = study.images.first()
    response = client.get(f"/images/{image.pk}/pixels")
    assert response["Content-Type"] == "application/octet-stream"
    width, height = int(response["X-Pneumo-Width"]), int(response["X-Pneumo-Height"])
    pixels = np.frombuffer(response.content, dtype="<u2").reshape(height, width)
    assert np.array_equal(pixels, stored_pixels(8, shape=(384, 480), bits=12))
    assert pixels.max() > 255  # 12-bit values, not an 8-bit rendering
    assert (int(response["X-Pneumo-Offset"]), response["Cache-Control"]) == (0, "private, no-store")
    assert AuditEvent.objects.filter(action="view_image", object_id=str(image.pk)).exists()


def test_it_compresses_the_pixels_when_the_browser_accepts_gzip(client, rad, study) -> None:
    client.force_login(rad)
    image = study.images.first()
    plain = client.get(f"/images/{image.pk}/pixels").content
    packed = client.get(f"/images/{image.pk}/pixels", HTTP_ACCEPT_ENCODING="gzip, br")
    assert packed["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.content) == plain
    assert len(packed.content) < len(plain)


def test_it_shifts_signed_pixels_and_says_by_how_much(demo_site) -> None:
    study = study_ready(demo_site, probability=0.5)
    image = study.images.first()
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from tests.dicom_factory import make_dicom

    default_storage.delete(image.file.name)
    default_storage.save(image.file.name, ContentFile(make_dicom(8, shape=(64, 80), bits=12, signed=True)))
    data, meta = pictures.image_source_pixels(image)
    pixels = np.frombuffer(data, dtype="<u2").reshape(64, 80).astype(np.int64) - meta["offset"]
    assert meta["offset"] > 0
    assert np.array_equal(pixels, stored_pixels(8, shape=(64, 80), bits=12, signed=True))


def test_it_renders_a_windowed_png_to_size(client, rad, study) -> None:
    client.force_login(rad)
    image = study.images.first()
    response = client.get(f"/images/{image.pk}/render.png", {"max_size": "160", "center": "2048", "width": "4096"})
    picture = PILImage.open(io.BytesIO(response.content))
    assert (response["Content-Type"], picture.mode, max(picture.size)) == ("image/png", "L", 160)
    assert picture.size == (160, 128)  # 480x384 keeps its shape


def test_it_draws_the_heatmap_as_a_transparent_overlay_in_the_images_shape(study) -> None:
    prediction = Prediction.objects.get(image__study=study)
    picture = PILImage.open(io.BytesIO(pictures.heatmap_overlay_png(prediction, size=200)))
    assert (picture.mode, picture.size) == ("RGBA", (200, 160))
    alpha = np.asarray(picture)[..., 3]
    assert alpha[0, 0] == 0  # a weak corner stays see-through
    assert alpha.max() > 150  # the hot spot shows


def test_it_upscales_the_heatmap_bilinearly_between_cell_centres() -> None:
    grid = np.array([[0.0, 1.0], [0.0, 1.0]])
    up = pictures.upscale_bilinear(grid, 2, 8)
    assert up[0].tolist() == pytest.approx([0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1])


def test_it_gives_the_viewer_the_heatmap_grid_and_colour_map_from_the_api(client, rad, study) -> None:
    client.force_login(rad)
    image = study.images.first()
    page = client.get(f"/studies/{study.pk}/").content.decode()
    url = f"/api/v1/images/{image.pk}/heatmap.json"
    assert f'data-heatmap-url="{url}"' in page
    body = client.get(url).json()  # the page's session is enough
    assert (body["rows"], body["columns"], body["values"]) == (5, 5, HEATMAP)
    assert body["colour_map"]["stops"][0][0] == 0.0 and "not a probability" in body["scale_note"]


def test_it_shows_the_same_current_result_on_the_page_and_in_the_api(client, rad, study) -> None:
    # Given an older result of a retired model, the active model's result, and a re-run still pending
    image = study.images.first()
    current = Prediction.objects.get(image=image)
    retired = ModelVersion.objects.create(
        name="retired-model", version="0.1", source_path="old.keras", sha256="b" * 64, threshold=0.5
    )
    older = current.finished_at - timedelta(days=30)
    Prediction.objects.create(
        image=image,
        model_version=retired,
        preprocessing_version="old",
        status=PredictionStatus.SUCCEEDED,
        probability=0.1,
        heatmap=[[0.0]],
        finished_at=older,
    )
    Prediction.objects.filter(model_version=retired).update(created_at=older)
    rerun = ModelVersion.objects.create(
        name="rerun-model", version="0.2", source_path="new.keras", sha256="c" * 64, threshold=0.5
    )
    Prediction.objects.create(image=image, model_version=rerun, preprocessing_version="new")

    # When the study page and the API show the image's result and heatmap
    client.force_login(rad)
    page = client.get(f"/studies/{study.pk}/").context["images"][0]["prediction"]
    api = client.get(f"/api/v1/studies/{study.pk}/").json()["images"][0]["predictions"][0]
    grid = client.get(f"/api/v1/images/{image.pk}/heatmap.json").json()

    # Then all name the newest result that succeeded: a pending re-run does not take its place yet
    assert page.pk == api["id"] == grid["prediction_id"] == current.pk
    assert client.get(f"/images/{image.pk}/heatmap.png")["X-Pneumo-AI-Result"].startswith("unconfirmed")


def test_it_says_404_when_an_image_has_no_heatmap(client, rad, demo_site) -> None:
    study = study_ready(demo_site, probability=None)
    client.force_login(rad)
    image = study.images.first()
    assert client.get(f"/images/{image.pk}/heatmap.png").status_code == 404
    assert 'data-heatmap-url=""' in client.get(f"/studies/{study.pk}/").content.decode()
    assert client.get(f"/images/{image.pk}/pixels").status_code == 200


def test_it_says_404_when_the_stored_file_is_gone(client, rad, study) -> None:
    from django.core.files.storage import default_storage

    image = study.images.first()
    default_storage.delete(image.file.name)
    client.force_login(rad)
    assert client.get(f"/images/{image.pk}/pixels").status_code == 404
    assert client.get(f"/images/{image.pk}/render.png", {"max_size": "77"}).status_code == 404


def test_it_lets_an_admin_radiologist_read_and_sign(client, admin_user, demo_site) -> None:
    admin_user.groups.add(Group.objects.get(name="Radiologist"))
    study = study_ready(demo_site, probability=0.9, priority=Priority.STAT)
    client.force_login(admin_user)
    assert client.get(f"/studies/{study.pk}/").context["can_sign"] is True
    assert client.post(f"/studies/{study.pk}/sign/", {"finding": "pneumonia"}).status_code == 302


def test_it_offers_the_next_study_once_this_one_is_signed(client, rad, study, demo_site) -> None:
    following = study_ready(demo_site, probability=0.95, priority=Priority.STAT)
    client.force_login(rad)
    page = client.get(f"/studies/{study.pk}/")
    assert page.context["next_study"] is None  # while reading, no shortcut away from the claim
    client.post(f"/studies/{study.pk}/sign/", {"finding": "pneumonia"})
    assert client.get(f"/studies/{study.pk}/").context["next_study"] == following
