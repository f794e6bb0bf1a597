"""axe-core in a Playwright page: WCAG 2.1 AA checks for the portal's browser tests.

``assert_accessible(page)`` loads js/node_modules/axe-core (a devDependency: ``make -C js``
installs it) into the page and fails with axe's findings, one line per node. The script
is evaluated through Playwright, not added as a tag, so the pages' CSP (no inline script)
neither refuses it nor reports it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from playwright.sync_api import Page

from tests.support.processes import ROOT

AXE_JS = ROOT / "js" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@cache
def _axe_source() -> str:
    if not AXE_JS.exists():
        raise RuntimeError(f"{AXE_JS} is missing: run `make -C js build` (npm ci) first.")
    return AXE_JS.read_text()


def axe_violations(page: Page, include: str | None = None) -> list[dict[str, Any]]:
    """axe's WCAG 2.1 A and AA violations on the page (or in the ``include`` selector)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_axe_source())
    result = page.evaluate(
        """async ([include, tags]) => {
          const context = include ? { include: [include] } : document;
          const found = await axe.run(context, { runOnly: { type: "tag", values: tags } });
          return found.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
          }));
        }""",
        [include, WCAG_21_AA],
    )
    return list(result)


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        for node in v["nodes"]:
            lines.append(f"{v['id']} ({v['impact']}): {v['help']} at {node['target']}")
    return "\n".join(lines)


def assert_accessible(page: Page, include: str | None = None) -> None:
    violations = axe_violations(page, include)
    assert violations == [], describe(violations)
