// Drives the operator portal in headless Chromium, as a tenant would:
// sign in, find a call, open its transcript, switch the LLM provider, sign
// out. Usage: node portal.mjs BASE_URL TOKEN CALL_ID SCREENSHOT_DIR
// Prints one JSON line of what it saw; exits non-zero on any failure.
import { chromium } from "playwright-core";

const [base, token, callId, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const seen = { consoleErrors: [], failedRequests: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  // Chromium logs every 4xx fetch as a console error; those are collected
  // as requests instead (the test expects exactly the ones it provokes).
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) seen.consoleErrors.push(m.text());
  });
  page.on("response", (r) => {
    if (r.status() >= 400) seen.failedRequests.push(r.status() + " " + new URL(r.url()).pathname);
  });
  page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
  page.setDefaultTimeout(15000);

  // A wrong token is refused with a message.
  await page.goto(base + "/");
  await page.fill("#token", "bh_" + "a".repeat(32));
  await page.click("#sign-in-form button");
  await page.waitForSelector("#notice.error");
  seen.badTokenNotice = await page.textContent("#notice");

  // Sign in; the call log lists the call.
  await page.fill("#token", token);
  await page.click("#sign-in-form button");
  await page.waitForSelector(`#calls tbody tr[data-id="${callId}"]`);
  seen.rows = await page.locator("#calls tbody tr[data-id]").count();
  seen.numbers = await page.textContent("#numbers");
  await page.screenshot({ path: `${shots}/1-calls.png` });

  // Search narrows the list: an outcome no call has shows none.
  await page.selectOption('#call-search select[name="outcome"]', "escalated");
  await page.click("#call-search button");
  await page.waitForSelector("#calls tbody tr:not([data-id])");
  seen.rowsAfterFilter = await page.locator("#calls tbody tr[data-id]").count();
  await page.selectOption('#call-search select[name="outcome"]', "");
  await page.click("#call-search button");
  await page.waitForSelector(`#calls tbody tr[data-id="${callId}"]`);

  // Open the call: its record and transcript.
  await page.click(`#calls tbody tr[data-id="${callId}"]`);
  await page.waitForSelector("#view-call:not([hidden]) #transcript li");
  seen.callTitle = await page.textContent("#call-id");
  seen.turns = await page.locator("#transcript li").allTextContents();
  await page.screenshot({ path: `${shots}/2-transcript.png`, fullPage: true });

  // Agent: switch the LLM to an OpenAI-compatible server and save.
  await page.click('#nav a[data-view="agent"]');
  await page.waitForSelector("#view-agent:not([hidden])");
  await page.selectOption('select[name="llm.provider"]', "openai");
  await page.fill('input[name="llm.base_url"]', "http://127.0.0.1:9/v1");
  await page.fill('input[name="llm.model"]', "portal-model");
  await page.fill('input[name="llm.api_key"]', "sk-portal-test");
  await page.fill('input[name="greeting"]', "Hello from the portal.");
  await page.click("#agent-form button[type=submit]");
  await page.waitForSelector("#notice.ok");
  seen.saveNotice = await page.textContent("#notice");
  seen.llmAfterReload = await page.inputValue('select[name="llm.provider"]');
  await page.screenshot({ path: `${shots}/3-agent.png`, fullPage: true });

  // An invalid routing document is refused, naming the field.
  await page.click('#nav a[data-view="routing"]');
  await page.waitForSelector("#view-routing:not([hidden])");
  await page.fill('#routing-form textarea', '{"timezone": "Mars/Olympus"}');
  await page.click("#routing-form button");
  await page.waitForSelector("#notice.error");
  seen.routingError = await page.textContent("#notice");

  // Escalation: add a target, make it the default, save.
  await page.click('#nav a[data-view="escalation"]');
  await page.waitForSelector("#view-escalation:not([hidden])");
  await page.click("#add-target");
  await page.fill('#targets tbody tr:last-child input[name="name"]', "front-desk");
  await page.fill('#targets tbody tr:last-child input[name="uri"]', "sip:desk@127.0.0.1:5070");
  await page.check('#targets tbody tr:last-child input[name="default"]');
  await page.click("#escalation-form button[type=submit]");
  await page.waitForSelector("#notice.ok");
  await page.screenshot({ path: `${shots}/4-escalation.png`, fullPage: true });

  // Tokens: create one (shown once), see it listed.
  await page.click('#nav a[data-view="tokens"]');
  await page.waitForSelector("#view-tokens:not([hidden])");
  await page.fill('#token-form input[name="name"]', "from the portal");
  await page.click("#token-form button");
  await page.waitForSelector("#new-token:not([hidden])");
  seen.newToken = await page.textContent("#new-token code");
  seen.tokenNames = await page.locator("#tokens tbody tr td:first-child").allTextContents();
  await page.screenshot({ path: `${shots}/5-tokens.png`, fullPage: true });

  // Sign out: back to the sign-in form, the token forgotten.
  await page.click("#sign-out");
  await page.waitForSelector("#view-sign-in:not([hidden])");
  seen.tokenKept = await page.evaluate(() => sessionStorage.getItem("bulkhead-token"));
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
