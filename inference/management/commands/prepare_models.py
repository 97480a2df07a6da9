from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from inference.registry import ModelFileMismatch, int8_verdict, models_prepare_all


class Command(BaseCommand):
    help = "Register the packaged model, convert every model version to LiteRT, run the parity gate."

    def handle(self, *args, **options) -> None:
        try:
            versions = models_prepare_all()
        except ModelFileMismatch as exc:
            raise CommandError(str(exc)) from exc
        for v in versions:
            state = "active" if v.is_active else "inactive"
            gate = "passed" if v.parity_passed else "FAILED"
            self.stdout.write(f"{v.name} {v.version}: {state}, parity {gate} (max diff {v.parity_max_diff:.2e})")
            if v.is_active:
                # Workers serve int8 only behind its gates (inference.runtime); float32 until one passes.
                verdict = int8_verdict(v)
                self.stdout.write(f"  int8: not served, {verdict}" if verdict else "  int8: served (its gates passed)")
