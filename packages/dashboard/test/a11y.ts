/**
 * The accessibility check of the browser tests: axe-core, run inside the page the test drove
 * (injected through the DevTools protocol, so the console's CSP stays in force), WCAG 2.x A and
 * AA rules. A test asserts that no violation is serious or critical.
 */

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Page } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** One violation, cut to what a failing assertion should show. */
export interface A11yViolation {
  id: string;
  impact: string | null;
  help: string;
  targets: string[];
}

/** Runs axe-core on the page as it is now; returns the serious and critical violations. */
export async function seriousA11yViolations(page: Page): Promise<A11yViolation[]> {
  const hasAxe = await page.evaluate("typeof window.axe === 'object'");
  if (!hasAxe) await page.evaluate(AXE_SOURCE);
  const result = (await page.evaluate(`window.axe.run(document, {
    runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
    resultTypes: ["violations"],
  })`)) as {
    violations: {
      id: string;
      impact: string | null;
      help: string;
      nodes: { target: string[] }[];
    }[];
  };
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
    }));
}
