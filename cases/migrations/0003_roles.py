"""The role groups and their permissions."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE_PERMISSIONS = {
    "Technician": [
        ("cases", "view_site"),
        ("cases", "view_patient"),
        ("cases", "add_patient"),
        ("cases", "view_study"),
        ("cases", "add_study"),
        ("cases", "view_image"),
        ("cases", "add_image"),
        ("cases", "view_review"),
        ("inference", "view_prediction"),
        ("inference", "view_modelversion"),
    ],
    "Radiologist": [
        ("cases", "view_site"),
        ("cases", "view_patient"),
        ("cases", "view_study"),
        ("cases", "change_study"),
        ("cases", "view_image"),
        ("cases", "view_review"),
        ("cases", "add_review"),
        ("inference", "view_prediction"),
        ("inference", "add_prediction"),
        ("inference", "view_modelversion"),
    ],
}


def create_roles(apps, schema_editor) -> None:
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(
            [Permission.objects.get(content_type__app_label=app, codename=codename) for app, codename in perms]
        )


def remove_roles(apps, schema_editor) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0002_initial"),
        ("inference", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
