// The connection carrying an answer's stream is cut midway (by the test's proxy); the widget
// resumes the stream from its last event id. Records the answer as shown, every text it had on
// screen on the way (each must be a start of the final one: no word shown twice), and the
// stream requests the page made.
//   args: { host, question }
export default async function ({ page, args }) {
  const streams = [];
  page.on('request', (request) => {
    if (request.url().includes('/streaming')) streams.push(request.headers()['last-event-id'] || null);
  });
  await page.goto(args.host);
  await page.getByRole('button', { name: 'Open chat' }).click();
  const input = page.getByLabel('Message');
  await input.fill(args.question);
  await page.evaluate(() => {
    const root = document.querySelector('confab-widget').shadowRoot;
    window.answerTexts = [];
    new MutationObserver(() => {
      const answers = root.querySelectorAll('[data-role="assistant"]');
      if (answers.length) window.answerTexts.push(answers[answers.length - 1].textContent);
    }).observe(root, { subtree: true, childList: true, characterData: true });
  });
  await input.press('Enter');
  const answer = page.locator('[data-role="assistant"]:not([data-state])').last();
  await answer.waitFor({ timeout: 30000 });
  const final = await answer.textContent();
  const texts = await page.evaluate(() => window.answerTexts);
  return {
    answer: final,
    shownOnTheWay: texts.length,
    notAStart: texts.filter((text) => !final.startsWith(text)),
    status: await page.locator('.status').textContent(),
    streams,
  };
}
