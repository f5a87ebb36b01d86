// Opens a `loop report` page in headless Chromium (file://, no network) and checks that it
// loads cleanly and draws what it should. Run by tests/it/report.rs; prints one JSON line.
//
// Usage: node report_check.mjs REPORT.html SCREENSHOT.png EXPECTED.json
//   EXPECTED.json: {"issues": {"ID": "State", ...}}
// Env: LOOP_TEST_CHROMIUM (default /usr/bin/chromium), LOOP_TEST_PLAYWRIGHT (the
// playwright-core module directory).
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [report, screenshot, expectedPath] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedPath, "utf8"));
const pw = await import(pathToFileURL(join(process.env.LOOP_TEST_PLAYWRIGHT, "index.mjs")).href);
const profile = mkdtempSync(join(tmpdir(), "loop-report-chromium-"));
const failures = [];
const fail = (msg) => failures.push(msg);

// A new empty profile (playwright passes it as --user-data-dir).
const browser = await pw.chromium.launchPersistentContext(profile, {
  executablePath: process.env.LOOP_TEST_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  const requests = [];
  page.on("console", (m) => { if (m.type() === "error") fail(`console error: ${m.text()}`); });
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  page.on("requestfailed", (r) => fail(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("request", (r) => requests.push(r.url()));
  const url = pathToFileURL(report).href;
  const resp = await page.goto(url, { waitUntil: "load" });
  if (!resp || !resp.ok()) fail(`loading ${url}: ${resp && resp.status()}`);
  for (const r of requests) if (r !== url) fail(`the page asked for ${r}`);

  const facts = await page.evaluate(() => {
    const box = (e) => { const r = e.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height }; };
    const dag = document.getElementById("dag-svg");
    const tl = document.getElementById("timeline-svg");
    return {
      dag: dag && box(dag),
      timeline: tl && box(tl),
      nodes: [...document.querySelectorAll("#dag-svg g.node")].map((g) => ({
        issue: g.dataset.issue, state: g.dataset.state, box: box(g.querySelector("rect")),
      })),
      edges: document.querySelectorAll("#dag-svg path.edge").length,
      rows: [...document.querySelectorAll("#timeline-svg g.row")].map((g) => ({
        issue: g.dataset.issue,
        bars: [...g.querySelectorAll("rect.bar")].map((b) => ({ start: Number(b.dataset.start), box: box(b) })),
      })),
      sections: [...document.querySelectorAll("section.issue")].map((s) => ({
        issue: s.dataset.issue, state: s.dataset.state,
        badge: s.querySelector("header .badge")?.textContent, visible: s.getBoundingClientRect().height > 0,
      })),
      scripts: document.scripts.length,
    };
  });

  const inside = (b, outer) => b.w > 0 && b.h > 0 && b.x >= outer.x - 0.5 && b.y >= outer.y - 0.5 &&
    b.x + b.w <= outer.x + outer.w + 0.5 && b.y + b.h <= outer.y + outer.h + 0.5;
  if (!facts.dag || facts.dag.w <= 0 || facts.dag.h <= 0) fail("the DAG svg has no size");
  if (!facts.timeline || facts.timeline.w <= 0 || facts.timeline.h <= 0) fail("the timeline svg has no size");
  for (const [id, state] of Object.entries(expected.issues)) {
    const n = facts.nodes.find((n) => n.issue === id);
    if (!n) { fail(`no DAG node for ${id}`); continue; }
    if (n.state !== state) fail(`DAG node ${id} says ${n.state}, expected ${state}`);
    if (!inside(n.box, facts.dag)) fail(`DAG node ${id} is empty or outside the svg: ${JSON.stringify(n.box)}`);
    const s = facts.sections.find((s) => s.issue === id);
    if (!s || s.state !== state || !s.visible) fail(`issue section ${id}: ${JSON.stringify(s)}, expected ${state}`);
    const row = facts.rows.find((r) => r.issue === id);
    if (!row) { fail(`no timeline row for ${id}`); continue; }
    for (const b of row.bars) if (!inside(b.box, facts.timeline)) fail(`a bar of ${id} is empty or outside: ${JSON.stringify(b.box)}`);
    for (let i = 1; i < row.bars.length; i++) {
      const [a, b] = [row.bars[i - 1], row.bars[i]];
      if (b.start < a.start || b.box.x < a.box.x) fail(`bars of ${id} out of time order at ${i}`);
    }
  }
  if (facts.nodes.length !== Object.keys(expected.issues).length) fail(`${facts.nodes.length} DAG nodes`);
  if (facts.scripts !== 0) fail(`${facts.scripts} scripts on the page`);
  await page.screenshot({ path: screenshot, fullPage: true });
  const bars = facts.rows.reduce((n, r) => n + r.bars.length, 0);
  console.log(JSON.stringify({ ok: failures.length === 0, failures, nodes: facts.nodes.length, edges: facts.edges, bars, screenshot }));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failures.length === 0 ? 0 : 1);
