"""Dashboard pages (templates/)."""
from django.urls import path

from registry import views

urlpatterns = [path("", views.dashboard, name="dashboard"), path("fleet/", views.fleet, name="fleet")]
