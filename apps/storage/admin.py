from django.contrib import admin

from apps.core.admin_utils import admin_actor
from apps.storage.models import StorageLocation
from apps.storage.services import save_location


@admin.register(StorageLocation)
class StorageLocationAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "region", "bucket", "path", "storage_class", "is_primary", "enabled"]
    list_filter = ["kind", "is_primary", "enabled"]
    search_fields = ["name", "bucket", "path", "region"]

    def save_model(self, request, obj, form, change):
        save_location(location=obj, actor=admin_actor(request))
