// A visitor asks through the widget where confab refuses the page (an origin the channel does
// not allow, or a forged user signature). Records what the visitor was told and what the
// browser reported.
//   args: { host, question }
export default async function ({ page, args }) {
  const failures = [];
  page.on('requestfailed', (request) => failures.push(request.url()));
  await page.goto(args.host);
  await page.getByRole('button', { name: 'Open chat' }).click();
  const input = page.getByLabel('Message');
  await input.fill(args.question);
  await input.press('Enter');
  const status = page.locator('.status');
  await status.filter({ hasText: /./ }).waitFor({ timeout: 10000 });
  return {
    status: await status.textContent(),
    answers: await page.locator('[data-role="assistant"]').count(),
    failedRequests: failures,
  };
}
