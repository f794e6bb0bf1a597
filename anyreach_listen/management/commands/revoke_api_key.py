"""``manage.py revoke_api_key KEY [--organization ORG]``: the key stops working at once, and
its listeners are taken out of the calls they are in (``revocation.revoke_credential``)."""

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from anyreach_listen.listening.revocation import revoke_credential
from anyreach_listen.management.arguments import find_organization
from anyreach_listen.models import ApiKey

# ak_<lookup>_… as the admin and the commands show a key, the whole secret, or the lookup id.
_LOOKUP = re.compile(r"^(?:ak_)?([0-9a-f]{12})(?:_.*)?$", re.S)


class Command(BaseCommand):
    help = (
        "Revoke an organization API key, given by its prefix (ak_<lookup>_…, as the admin "
        "lists it), its lookup id, or its name with --organization, and take its live "
        "listeners out of their calls."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="ak_<lookup>_…, the 12-character lookup id, or a name.")
        parser.add_argument(
            "--organization", help="Organization slug or id: needed to find a key by name."
        )

    def handle(self, *args: Any, key: str, organization: str | None, **options: Any) -> None:
        found = self._find(key.strip(), organization)
        already = found.revoked_at
        sessions = revoke_credential(found)
        label = f"API key {found.display_prefix} ({found.name}) of {found.organization.name}"
        if already is not None:
            self.stdout.write(f"{label} was already revoked on {already:%Y-%m-%d %H:%M} UTC.")
        else:
            self.stdout.write(f"Revoked {label}.")
        if sessions or already is None:
            self.stdout.write(f"Took {len(sessions)} listener(s) out of their calls.")

    def _find(self, value: str, organization: str | None) -> ApiKey:
        keys = ApiKey.objects.select_related("organization")
        if organization is not None:
            keys = keys.filter(organization=find_organization(organization))
        where = f" in {organization}" if organization else ""
        match = _LOOKUP.match(value)
        if match is not None:
            found = keys.filter(lookup_id=match.group(1)).first()
            if found is None:
                raise CommandError(f"No API key ak_{match.group(1)}_…{where}.")
            return found
        if organization is None:
            raise CommandError(
                f"{value!r} is not a key prefix (ak_<12 hex>_…) or lookup id; to revoke a key "
                "by its name, add --organization."
            )
        named = list(keys.filter(name=value))
        live = [k for k in named if k.revoked_at is None]
        if len(live) > 1:
            raise CommandError(
                f"{len(live)} live keys are named {value!r}{where}: "
                f"{', '.join(k.display_prefix for k in live)}. Give the one to revoke."
            )
        if live or named:
            return (live or named)[0]
        raise CommandError(f"No API key named {value!r}{where}.")
