// A visitor on a shop's page opens confab's widget, asks a question and reads the answer as it
// streams in; then reloads the page and finds the conversation again; then the same on a
// phone-sized screen. Records what the visitor saw.
// On the hosted chat page (`hosted`), the panel is the page: there is no bubble to click.
// `waitBeforeAskingMs` lets time pass between opening the chat and asking.
//   args: { host, question, screenshot?, hosted?, waitBeforeAskingMs? }
const shadow = 'confab-widget';

export default async function ({ page, args }) {
  const seen = { lengths: [] };
  const openChat = async () => {
    if (!args.hosted) await page.getByRole('button', { name: 'Open chat' }).click();
  };
  await page.goto(args.host);
  await openChat();
  const input = page.getByLabel('Message');
  if (args.waitBeforeAskingMs) await page.waitForTimeout(args.waitBeforeAskingMs);
  await input.fill(args.question);
  // Every length the answer had on screen while it streamed.
  await page.evaluate((shadowHost) => {
    const root = document.querySelector(shadowHost).shadowRoot;
    window.answerLengths = [];
    new MutationObserver(() => {
      const answers = root.querySelectorAll('[data-role="assistant"]');
      const last = answers[answers.length - 1];
      if (last) window.answerLengths.push(last.textContent.length);
    }).observe(root, { subtree: true, childList: true, characterData: true });
  }, shadow);
  await input.press('Enter');
  const answer = page.locator('[data-role="assistant"]:not([data-state])').last();
  await answer.waitFor({ timeout: 20000 });
  seen.answer = await answer.textContent();
  seen.boldInAnswer = await answer.locator('strong').count();
  seen.imagesInAnswer = await answer.locator('img').count();
  seen.lengths = [...new Set(await page.evaluate(() => window.answerLengths))];
  seen.status = await page.locator('.status').textContent();
  seen.pwned = await page.evaluate(() => window.pwned === true);
  seen.newGlobals = await page.evaluate(() => window.globalsBefore
    && Object.keys(window).filter((k) => !window.globalsBefore.includes(k)
      && !['globalsBefore', 'answerLengths'].includes(k)));
  // The page's `div { color: red !important }` does not reach into the widget.
  seen.answerColour = await answer.evaluate((node) => getComputedStyle(node).color);
  if (args.screenshot) await page.screenshot({ path: args.screenshot });

  await page.reload();
  await openChat();
  await page.locator('[data-role="assistant"]').first().waitFor({ timeout: 10000 });
  seen.afterReload = await page.locator('.msg').evaluateAll((nodes) =>
    nodes.map((n) => ({ role: n.dataset.role, text: n.textContent })));

  await page.setViewportSize({ width: 375, height: 667 });
  const panel = await page.locator('[role="dialog"]').boundingBox();
  seen.phonePanel = { width: Math.round(panel.width), height: Math.round(panel.height) };
  seen.focusedLabel = await page.evaluate((shadowHost) =>
    document.querySelector(shadowHost).shadowRoot.activeElement?.getAttribute('aria-label'), shadow);
  return seen;
}
