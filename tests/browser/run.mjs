// Runs one browser scenario of confab's tests in Debian's Chromium, driven by playwright-core:
//   node run.mjs <scenario> <arguments as JSON>
// The scenario (scenarios/<name>.mjs) gets a fresh headless browser context and page, and what
// it returns is printed to stdout as JSON for the Rust test to check. CONFAB_CHROMIUM names the
// browser and CONFAB_NODE_MODULES the tests' own node_modules (tests/e2e/support/browser.rs
// sets both); nothing here downloads anything.
import { createRequire } from 'node:module';

const [name, argsJson = '{}'] = process.argv.slice(2);
const require = createRequire(`${process.env.CONFAB_NODE_MODULES}/`);
const { chromium } = require('playwright-core');
const scenario = (await import(`./scenarios/${name}.mjs`)).default;

const browser = await chromium.launch({
  executablePath: process.env.CONFAB_CHROMIUM,
  headless: true,
  // Running as root needs --no-sandbox; the rest keep Chromium off a network this machine
  // does not have (its background requests are refused, many at a time).
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const console_ = [];
  page.on('console', (message) => console_.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => console_.push(`pageerror: ${error.message}`));
  try {
    const result = await scenario({ browser, context, page, args: JSON.parse(argsJson) });
    process.stdout.write(JSON.stringify({ result, console: console_ }));
  } catch (error) {
    // What the page said is most of what tells why a scenario failed.
    process.stderr.write(`${error.stack}\n--- the page's console\n${console_.join('\n')}\n`);
    process.exitCode = 1;
  }
} finally {
  await browser.close();
}
