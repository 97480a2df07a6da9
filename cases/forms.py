from __future__ import annotations

from django import forms

from cases.ingest import ManualPatient
from cases.models import Priority, Sex, Site


class UploadForm(forms.Form):
    """The fields sent with each uploaded file; the files themselves are read from request.FILES."""

    site = forms.ModelChoiceField(queryset=Site.objects.none(), required=False)
    priority = forms.ChoiceField(choices=Priority.choices, initial=Priority.ROUTINE)
    batch = forms.CharField(max_length=64, required=False)
    patient_id = forms.CharField(max_length=64, required=False, label="Patient ID / MRN")
    patient_name = forms.CharField(max_length=200, required=False, label="Patient name")
    birth_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    sex = forms.ChoiceField(choices=Sex.choices, required=False)
    study_description = forms.CharField(max_length=200, required=False)

    def __init__(self, *args, sites=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = sites if sites is not None else Site.objects.none()

    def clean_site(self) -> Site:
        site = self.cleaned_data.get("site")
        sites = list(self.fields["site"].queryset[:2])
        if site is None:
            if len(sites) != 1:
                raise forms.ValidationError("Choose the site these studies belong to.")
            site = sites[0]
        return site

    def manual_patient(self, *, user_key: str) -> ManualPatient:
        data = self.cleaned_data
        batch = data.get("batch") or ""
        return ManualPatient(
            patient_id=data.get("patient_id") or "",
            name=data.get("patient_name") or "",
            birth_date=data.get("birth_date"),
            sex=data.get("sex") or "",
            study_description=data.get("study_description") or "",
            batch_key=f"{user_key}:{batch}" if batch else "",
        )
