"""Names checked as the Admin API checks them: a name Cloud Run refuses is an InvalidArgument naming its field."""

from __future__ import annotations

from iris_tools.cloudrun.errors import InvalidArgument
from iris_tools.google.names import LABEL, REVISION_MAX, SERVICE_MAX, TAG_MAX, suggest_tag


def check_service_name(name: object, field: str = "metadata.name") -> str:
    if not isinstance(name, str) or not LABEL.fullmatch(name) or len(name) > SERVICE_MAX:
        raise InvalidArgument.field(field, f"service name {name!r} must use only lowercase alphanumeric characters "
                                    f"and dashes, begin with a letter, not end with a dash, and be at most "
                                    f"{SERVICE_MAX} characters")
    return name


def check_revision_name(name: object, service: str, field: str) -> str:
    if not isinstance(name, str) or not LABEL.fullmatch(name) or len(name) > REVISION_MAX:
        raise InvalidArgument.field(field, f"revision name {name!r} must be a DNS label: lowercase letters, digits "
                                    f"and dashes, beginning with a letter, at most {REVISION_MAX} characters")
    if not name.startswith(service + "-"):
        raise InvalidArgument.field(field, f"revision name {name!r} must begin with the service name "
                                    f"followed by a dash ({service}-...)")
    return name


def check_tag(tag: object, field: str) -> str:
    if not isinstance(tag, str) or not LABEL.fullmatch(tag) or len(tag) > TAG_MAX:
        raise InvalidArgument.field(field, f"tag {tag!r} is not valid: a tag becomes part of a host name, so it "
                                    f"must use only lowercase letters, digits and dashes, begin with a letter, "
                                    f"not end with a dash, and be at most {TAG_MAX} characters (for example "
                                    f"{suggest_tag(tag)!r})")
    return tag

