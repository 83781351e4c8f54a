"""Routes of this area are added by its module."""

urlpatterns: list = []
