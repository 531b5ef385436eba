// An EventSource left open, as a page leaves it by default: it follows the stream to its
// `complete`, then reconnects by itself after the server's `retry:` with the `Last-Event-ID`
// of the last event it got, until an answer tells it to stop. Records what it saw.
export default async function ({ page, args }) {
  // Any page of the stream's origin: the EventSource is same-origin.
  await page.goto(`${args.origin}/healthz`);
  return page.evaluate(
    ({ path, watchMs }) =>
      new Promise((resolve) => {
        const seen = { opens: 0, errors: 0, tokens: [], complete: [], failed: [], ids: [] };
        const source = new EventSource(path);
        source.onopen = () => seen.opens++;
        source.onerror = () => seen.errors++;
        source.onmessage = (event) => {
          seen.ids.push(event.lastEventId);
          const data = JSON.parse(event.data);
          if (data.type === 'token') seen.tokens.push(data.content);
          else if (data.type === 'complete') seen.complete.push(data.content);
          else seen.failed.push(data.content);
        };
        setTimeout(() => {
          seen.readyState = source.readyState;
          source.close();
          resolve(seen);
        }, watchMs);
      }),
    { path: args.path, watchMs: args.watchMs },
  );
}
