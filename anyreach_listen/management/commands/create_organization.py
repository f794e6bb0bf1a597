from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from anyreach_listen.access.origins import normalize_origin
from anyreach_listen.models import Organization


class Command(BaseCommand):
    help = "Create an organization and print its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--slug", help="Defaults to the slugified name.")
        parser.add_argument(
            "--embed-origin",
            action="append",
            default=[],
            help="Origin allowed to embed the listen frame (repeatable). None: any origin.",
        )

    def handle(
        self, *args: Any, name: str, slug: str | None, embed_origin: list[str], **options: Any
    ) -> None:
        slug = slug or slugify(name)
        if Organization.objects.filter(slug=slug).exists():
            raise CommandError(f"An organization with slug {slug!r} already exists.")
        origins = []
        for value in embed_origin:
            origin = normalize_origin(value)
            if origin is None:
                raise CommandError(f"{value!r} is not an origin like https://crm.example.com.")
            origins.append(origin)
        org = Organization.objects.create(name=name, slug=slug, allowed_embed_origins=origins)
        self.stdout.write(str(org.pk))
