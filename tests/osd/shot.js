#!/usr/bin/env node
// Opens pages that run OpenSeadragon in Debian's headless Chromium (driven by
// playwright-core, never a downloaded browser), waits until OpenSeadragon has
// loaded the image fully (or failed, for negative cases) and screenshots the
// viewer element.
//
// usage: node shot.js JOB.json RESULT.json
// JOB.json: {
//   "nodeModules": dir holding playwright-core,
//   "chromium": "/usr/bin/chromium", "extraArgs": [more Chromium switches],
//   "serverOrigin": "http://127.0.0.1:PORT" (responses from it are counted),
//   "cases": [{"name", "url", "expect": "load"|"fail", "png", "timeoutMs"}]
// }
// RESULT.json: {"ok": bool, "error": str|null, "cases": [{name, ok, error,
//   state (window.osdTest), responses: {"METHOD STATUS": n},
//   urls: ["METHOD STATUS path", ...], console: [...]}]}
// Exit code 0 when every case reached the state it expects, 1 otherwise,
// 2 when the browser could not be started.
"use strict";
const fs = require("fs");
const path = require("path");

const [jobPath, resultPath] = process.argv.slice(2);
if (!jobPath || !resultPath) {
  console.error("usage: node shot.js JOB.json RESULT.json");
  process.exit(2);
}
const job = JSON.parse(fs.readFileSync(jobPath, "utf8"));
const { chromium } = require(path.join(job.nodeModules, "playwright-core"));

// The flags known to work on this closed network: without the background
// networking ones Chromium's own connections are refused and slow it down.
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
  "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage",
];

const sleep = ms => new Promise(r => setTimeout(r, ms));

function log(msg) {
  process.stderr.write("shot: " + msg + "\n");
}

async function runCase(browser, c) {
  // A context of its own per case: its own HTTP cache and cookies, so a case
  // never sees tiles another case loaded.
  const ctx = await browser.newContext({
    viewport: { width: 1000, height: 700 }, deviceScaleFactor: 1 });
  const res = { name: c.name, ok: false, error: null, state: null,
                responses: {}, urls: [], console: [], requestFailed: [] };
  const page = await ctx.newPage();
  page.on("console", m => {
    if (res.console.length < 50) res.console.push(m.type() + ": " + m.text());
  });
  page.on("pageerror", e => res.console.push("pageerror: " + e.message));
  page.on("requestfailed", r => {
    if (res.requestFailed.length < 20) {
      res.requestFailed.push(r.method() + " " + r.url() + " " +
                             (r.failure() ? r.failure().errorText : ""));
    }
  });
  page.on("response", r => {
    if (!r.url().startsWith(job.serverOrigin)) return;
    const key = r.request().method() + " " + r.status();
    res.responses[key] = (res.responses[key] || 0) + 1;
    if (res.urls.length < 200) res.urls.push(key + " " + r.url().slice(job.serverOrigin.length));
  });
  const timeout = c.timeoutMs || 30000;
  const t0 = Date.now();
  try {
    await page.goto(c.url, { waitUntil: "load", timeout });
    const state = () => page.evaluate(() => {
      const t = window.osdTest;
      if (!t) return null;
      if (t.measure) t.measure();
      return JSON.parse(JSON.stringify(t));
    });
    let s = null;
    let settledSince = null;
    for (;;) {
      s = await state();
      if (s && s.errors && s.errors.length) {
        throw new Error("page errors: " + s.errors.join("; "));
      }
      if (c.expect === "load") {
        if (s && s.openFailed) throw new Error("OpenSeadragon open-failed: " + s.openFailed);
        if (s && s.tileFailed) {
          throw new Error("tile-load-failed x" + s.tileFailed + ": " + s.tileFailures.join("; "));
        }
        // Fully loaded, and nothing left to draw for a few frames.
        if (s && s.opened && s.fullyLoaded && !s.needsDraw) {
          if (settledSince === null) settledSince = Date.now();
          if (Date.now() - settledSince >= 300) break;
        } else {
          settledSince = null;
        }
      } else {
        // Negative case: wait for the failure, then a little longer to count
        // every failed tile.
        if (s && (s.openFailed || s.tileFailed)) {
          if (settledSince === null) settledSince = Date.now();
          if (Date.now() - settledSince >= 700) break;
        }
        // (OpenSeadragon also reports "fully loaded" once every tile has
        // been tried, failed ones included: only the failure events tell.)
        if (s && s.fullyLoaded && !s.openFailed && !s.tileFailed && s.tileLoaded) {
          throw new Error("loaded although it should have failed");
        }
      }
      if (Date.now() - t0 > timeout) {
        const what = c.expect === "load" ? "OpenSeadragon to load the image fully"
                                         : "OpenSeadragon to report a failure";
        throw new Error("timed out after " + timeout + " ms waiting for " + what +
                        "; state: " + JSON.stringify(s));
      }
      await sleep(100);
    }
    // Let the last frame reach the screen before the screenshot.
    await page.evaluate(() => new Promise(r =>
      requestAnimationFrame(() => requestAnimationFrame(r))));
    res.state = await state();
    if (c.png) {
      await page.locator("#viewer").screenshot({ path: c.png, animations: "disabled" });
    }
    res.ok = true;
  } catch (e) {
    res.error = String(e && e.message || e);
    try {
      res.state = await page.evaluate(() => window.osdTest ?
        JSON.parse(JSON.stringify(window.osdTest)) : null);
    } catch (_) { /* page gone */ }
    if (c.png) {
      try { await page.locator("#viewer").screenshot({ path: c.png, timeout: 5000 }); } catch (_) { }
    }
  } finally {
    res.ms = Date.now() - t0;
    await ctx.close().catch(() => {});
  }
  return res;
}

async function main() {
  const out = { ok: false, error: null, browser: null, cases: [] };
  let browser = null;
  try {
    try {
      // playwright-core gives Chromium a fresh --user-data-dir of its own
      // (a temporary folder it removes on close).
      browser = await chromium.launch({
        executablePath: job.chromium,
        headless: true,
        args: ARGS.concat(job.extraArgs || []),
        timeout: 60000,
      });
    } catch (e) {
      out.error = "cannot start " + job.chromium + ": " + (e && e.message || e);
      log(out.error);
      fs.writeFileSync(resultPath, JSON.stringify(out, null, 1));
      return 2;
    }
    out.browser = browser.version();
    for (const c of job.cases) {
      const r = await runCase(browser, c);
      log(c.name + ": " + (r.ok ? "ok" : "FAILED: " + r.error) + " (" + r.ms + " ms)");
      out.cases.push(r);
    }
    out.ok = out.cases.every(r => r.ok);
  } catch (e) {
    out.error = String(e && e.stack || e);
    log(out.error);
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  fs.writeFileSync(resultPath, JSON.stringify(out, null, 1));
  return out.ok ? 0 : 1;
}

main().then(code => process.exit(code), e => {
  log(String(e && e.stack || e));
  process.exit(1);
});
