"""Dashboard pages (templates/)."""
from django.urls import path

from registry import views

urlpatterns = [path("", views.dashboard, name="dashboard"), path("fleet/", views.fleet, name="fleet"),
               path("jobs/<str:kind>/<int:pk>/", views.job, name="job"),
               path("checkpoints/", views.checkpoints, name="checkpoints"),
               path("checkpoints/<str:name>/", views.checkpoint, name="checkpoint"),
               path("checkpoints/<str:name>/variants/<int:pk>/", views.variant, name="variant")]
