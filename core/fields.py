"""Serializer fields shared by the APIs."""

from rest_framework import serializers


class NameRelatedField(serializers.SlugRelatedField):
    """An object named by its ``name``. Text the database cannot hold (NUL characters; PostgreSQL
    refuses them) or longer than any name is refused before the lookup, as not found."""

    max_length = 253

    def to_internal_value(self, data):
        if isinstance(data, str) and ("\x00" in data or len(data) > self.max_length):
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", "\\x00")[:80])
        return super().to_internal_value(data)

    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "name")
        super().__init__(**kwargs)
