from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core.permissions import RolePermission
from apps.monitoring import views as monitoring_views

admin.autodiscover()  # the apps' admin modules: see backupsite/admin_app.py

# The schema describes every endpoint: served to authenticated users with a role, like the API itself.
schema_permissions = [RolePermission]

urlpatterns = [
    # Browsers ask for /favicon.ico on every page (the admin's too): the console's icon, not a 404.
    path("favicon.ico", RedirectView.as_view(url=static("console/favicon.svg"), permanent=True)),
    path("healthz", monitoring_views.healthz, name="healthz"),
    path("readyz", monitoring_views.readyz, name="readyz"),
    path("metrics", monitoring_views.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("v1/", include("backupsite.api")),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=schema_permissions), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", permission_classes=schema_permissions),
         name="swagger-ui"),
    path("", include("apps.console.urls")),
]

# The API answers JSON whatever fails, even before a view runs (no route, an id of the wrong shape).
handler400 = "apps.core.api_errors.bad_request"
handler403 = "apps.core.api_errors.permission_denied"
handler404 = "apps.core.api_errors.page_not_found"
handler500 = "apps.core.api_errors.server_error"
