"""Dashboard pages (templates/)."""
from django.urls import path

from registry import views

urlpatterns = [path("", views.dashboard, name="dashboard"), path("fleet/", views.fleet, name="fleet"),
               path("jobs/<str:kind>/<int:pk>/", views.job, name="job")]
