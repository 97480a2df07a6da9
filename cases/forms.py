from __future__ import annotations

from django import forms

from cases import selectors
from cases.identifiers import IdentifierValidator
from cases.models import Priority, Sex, Site, User


class UploadForm(forms.Form):
    """The fields sent with each uploaded file; the files themselves are read from request.FILES."""

    site = forms.ModelChoiceField(queryset=Site.objects.none(), required=False)
    priority = forms.ChoiceField(choices=Priority.choices, initial=Priority.ROUTINE)
    batch = forms.CharField(max_length=64, required=False)
    patient_id = forms.CharField(
        max_length=64, required=False, label="Patient ID / MRN", validators=[IdentifierValidator("patient ID")]
    )
    patient_name = forms.CharField(
        max_length=200, required=False, label="Patient name", validators=[IdentifierValidator("patient name")]
    )
    birth_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    # For when only the age is known; a typed age wins over the birth date.
    age_years = forms.FloatField(
        required=False,
        min_value=0,
        max_value=130,
        label="Age in years",
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    sex = forms.ChoiceField(choices=Sex.choices, required=False)
    study_description = forms.CharField(max_length=200, required=False)

    def __init__(self, *args, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["site"].queryset = selectors.sites_for_user(user=user)

    def clean_site(self) -> Site:
        site = selectors.upload_site_for_user(user=self.user, chosen=self.cleaned_data.get("site"))
        if site is None:
            raise forms.ValidationError(selectors.UPLOAD_SITE_REQUIRED)
        return site
