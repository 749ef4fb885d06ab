"""Dashboard: checkpoints → variants, live jobs."""
from django.shortcuts import render

from registry.models import Checkpoint, QuantizationJob


def dashboard(request):
    checkpoints = Checkpoint.objects.prefetch_related("variants__recipe", "variants__releases")
    jobs = QuantizationJob.objects.select_related("checkpoint", "recipe")[:20]
    return render(request, "registry/dashboard.html", {"checkpoints": checkpoints, "jobs": jobs})
