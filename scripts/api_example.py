#!/usr/bin/env python3
"""Upload DICOM files to Pneumo through its REST API and print each study's AI result.

    python scripts/api_example.py --url http://127.0.0.1:8000 --username tech chest1.dcm chest2.dcm

The password comes from --password, the PNEUMO_PASSWORD environment variable,
or a prompt. AI results are decision support only: they stay unconfirmed until
a radiologist signs the study in Pneumo.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path

import requests

AI_PENDING = {"received", "queued", "analyzing"}
BATCH = 20  # files per upload request


def sign_in(session: requests.Session, api: str, username: str, password: str) -> None:
    response = session.post(f"{api}/auth/token/", json={"username": username, "password": password}, timeout=30)
    if response.status_code != 200:
        sys.exit(f"Sign-in failed ({response.status_code}): {response.json().get('detail', response.text)}")
    session.headers["Authorization"] = f"Token {response.json()['token']}"


def upload(session: requests.Session, api: str, paths: list[Path], site: str, priority: str) -> list[int]:
    """Upload in batches; print each file's outcome; return the studies that hold the files."""
    study_ids: list[int] = []
    for start in range(0, len(paths), BATCH):
        files = [
            ("files", (path.name, path.read_bytes(), "application/dicom")) for path in paths[start : start + BATCH]
        ]
        data = {"priority": priority, **({"site": site} if site else {})}
        response = session.post(f"{api}/studies/", files=files, data=data, timeout=300)
        body = response.json()
        if "files" not in body:
            sys.exit(f"Upload failed ({response.status_code}): {body}")
        for outcome in body["files"]:
            print(f"{outcome['name']}: {outcome['status']} {outcome['reason']}".rstrip())
            if outcome["study_id"] and outcome["study_id"] not in study_ids:
                study_ids.append(outcome["study_id"])
    return study_ids


def wait_for_ai(session: requests.Session, api: str, study_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        study = session.get(f"{api}/studies/{study_id}/", timeout=30).json()
        if study["status"] not in AI_PENDING or time.monotonic() > deadline:
            return study
        time.sleep(1)


def show(study: dict) -> bool:
    """Print the study's AI results; returns whether it has one."""
    print(f"Study {study['id']} ({study['status']}, {study['priority']}): {study['ai_notice']}")
    found = False
    for image in study["images"]:
        for p in image["predictions"]:
            if p["status"] != "succeeded":
                print(f"  image {image['id']}: AI {p['status']} {p['error']}".rstrip())
                continue
            found = True
            flag = (
                f" [outside validated use: {p['outside_validated_use_reason']}]" if p["outside_validated_use"] else ""
            )
            confirmed = "confirmed" if p["ai_result_confirmed"] else "UNCONFIRMED"
            version = f"{p['model_version']['name']} {p['model_version']['version']}"
            if p["probability"] is None:  # the image does not look like a chest X-ray: no result
                print(f"  image {image['id']}: no AI result ({p['domain']}: {p['domain_reason']}, {version})")
                continue
            muted = " [AI not validated for this image: not counted]" if p["ai_muted"] else ""
            print(f"  image {image['id']}: {p['label']} p={p['probability']:.3f} ({version}, {confirmed}){flag}{muted}")
    if not found:
        print(f"  no AI result: {study['status_reason'] or 'still waiting'}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="Pneumo's address, e.g. http://127.0.0.1:8000")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", default=os.environ.get("PNEUMO_PASSWORD"), help="or set PNEUMO_PASSWORD")
    parser.add_argument("--site", default="", help="site code (needed when you work at several sites)")
    parser.add_argument("--priority", default="routine", choices=["stat", "urgent", "routine"])
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for each AI result")
    parser.add_argument("files", nargs="+", type=Path, help="DICOM files (or zip files of them)")
    args = parser.parse_args(argv)

    api = args.url.rstrip("/") + "/api/v1"
    with requests.Session() as session:
        sign_in(session, api, args.username, args.password or getpass.getpass("Password: "))
        try:
            study_ids = upload(session, api, args.files, args.site, args.priority)
            results = [show(wait_for_ai(session, api, study_id, args.timeout)) for study_id in study_ids]
        finally:
            session.delete(f"{api}/auth/token/", timeout=30)  # revoke the token
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
