// confab's chat widget: one <script> tag puts a chat bubble on any page.
//   <script src="https://confab.example/widget.js" data-channel-id="…" async></script>
// Optional: data-user-id and data-user-signature (a signed-in user, signed by the site's
// backend), data-title, data-mode="page" (the hosted chat page: the panel fills the page).
// It lives in a shadow root (the page's styles and its own never meet) and adds one global,
// `confab`, holding its version. Answers stream token by token from confab's seed-000
// streaming route; a dropped stream resumes from its last event id.
(() => {
  'use strict';
  const script = document.currentScript;
  if (!script || window.confab) return;
  const base = new URL(script.src).origin;
  const channelId = script.dataset.channelId;
  const pageMode = script.dataset.mode === 'page';
  const title = script.dataset.title || 'Chat';
  const keyName = `confab:${channelId}:visitor`;
  window.confab = Object.freeze({ version: 1 });

  const css = `
    :host { all: initial; }
    * { box-sizing: border-box; font-family: system-ui, sans-serif; }
    .bubble { position: fixed; right: 20px; bottom: 20px; width: 56px; height: 56px;
      border-radius: 50%; border: none; background: #2557d6; color: #fff; display: grid;
      place-items: center; cursor: pointer; box-shadow: 0 4px 14px rgba(0,0,0,.25); z-index: 2147483646; }
    .bubble:focus-visible, button:focus-visible, textarea:focus-visible { outline: 3px solid #f5a623; }
    .panel { position: fixed; right: 20px; bottom: 90px; width: 370px; height: 540px;
      max-height: calc(100vh - 110px); display: flex; flex-direction: column; background: #fff;
      color: #1d1d1f; border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.25);
      overflow: hidden; z-index: 2147483647; }
    .panel[hidden] { display: none; }
    .page .panel { inset: 0; width: auto; height: auto; max-height: none; border-radius: 0;
      box-shadow: none; }
    header { display: flex; align-items: center; justify-content: space-between;
      padding: 12px 16px; background: #2557d6; color: #fff; font-weight: 600; }
    header button { background: none; border: none; color: #fff; font-size: 20px; cursor: pointer; }
    .log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; }
    .msg { max-width: 85%; padding: 8px 12px; border-radius: 12px; line-height: 1.4;
      overflow-wrap: anywhere; }
    .msg p { margin: 0 0 .5em; } .msg p:last-child { margin-bottom: 0; }
    .msg pre { background: #f1f1f4; padding: 8px; border-radius: 6px; overflow-x: auto; }
    .msg code { font-family: ui-monospace, monospace; font-size: .9em; }
    .msg ul, .msg ol { margin: 0 0 .5em; padding-left: 1.3em; }
    [data-role="user"] { align-self: flex-end; background: #2557d6; color: #fff; }
    [data-role="assistant"] { align-self: flex-start; background: #f1f1f4; }
    [data-role="assistant"][data-state="streaming"]::after { content: "▍"; opacity: .6; }
    .status { padding: 6px 12px; font-size: 13px; color: #a4262c; }
    .status:empty { display: none; }
    form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e3e3e8; }
    textarea { flex: 1; resize: none; height: 40px; padding: 9px; border: 1px solid #c9c9d1;
      border-radius: 8px; font-size: 15px; }
    form button { padding: 0 16px; border: none; border-radius: 8px; background: #2557d6;
      color: #fff; font-size: 15px; cursor: pointer; }
    form button:disabled { opacity: .5; cursor: default; }
    @media (max-width: 480px) {
      .panel { inset: 0; width: auto; height: auto; max-height: none; border-radius: 0; }
    }`;

  // ---- the DOM, in a shadow root ----
  // A custom element of its own: a page's rules for `div` and the like never match it.
  const host = document.createElement('confab-widget');
  const root = host.attachShadow({ mode: 'open' });
  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v);
    }
    node.append(...children);
    return node;
  };
  const style = el('style', { text: css });
  const wrap = el('div', pageMode ? { class: 'page' } : {});
  const log = el('div', { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation' });
  const status = el('div', { class: 'status', role: 'status' });
  const input = el('textarea', { 'aria-label': 'Message', placeholder: 'Type a message…', rows: '1' });
  const send = el('button', { type: 'submit', text: 'Send' });
  const form = el('form', {}, input, send);
  const close = el('button', { type: 'button', 'aria-label': 'Close chat', text: '×' });
  const header = el('header', {}, el('span', { text: title }), pageMode ? '' : close);
  const panel = el('div', { class: 'panel', role: 'dialog', 'aria-label': title }, header, log, status, form);
  const bubble = el('button', { class: 'bubble', type: 'button', 'aria-label': 'Open chat', 'aria-expanded': 'false' });
  // A speech balloon drawn, not a glyph: pages and phones lack emoji fonts.
  const icon = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  icon.setAttribute('viewBox', '0 0 24 24');
  icon.setAttribute('width', '28');
  icon.setAttribute('height', '28');
  icon.setAttribute('aria-hidden', 'true');
  const balloon = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  balloon.setAttribute('d', 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z');
  balloon.setAttribute('fill', 'currentColor');
  icon.append(balloon);
  bubble.append(icon);
  if (!pageMode) panel.hidden = true;
  wrap.append(pageMode ? '' : bubble, panel);
  root.append(style, wrap);

  // ---- safe Markdown: text nodes and a few elements, never HTML from the text ----
  const inline = (text) => {
    const out = [];
    const pattern = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|(\[[^\]]+\]\((https?:\/\/[^\s)]+)\))/g;
    let last = 0;
    for (const m of text.matchAll(pattern)) {
      if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
      const t = m[0];
      if (m[1]) out.push(el('code', { text: t.slice(1, -1) }));
      else if (m[2]) out.push(el('strong', {}, ...inline(t.slice(2, -2))));
      else if (m[3]) out.push(el('em', {}, ...inline(t.slice(1, -1))));
      else {
        const label = t.slice(1, t.indexOf(']('));
        out.push(el('a', { href: m[5], target: '_blank', rel: 'noopener noreferrer nofollow' }, label));
      }
      last = m.index + t.length;
    }
    if (last < text.length) out.push(document.createTextNode(text.slice(last)));
    return out;
  };
  const markdown = (source) => {
    const nodes = [];
    const blocks = source.split(/```/);
    blocks.forEach((block, i) => {
      if (i % 2 === 1) {
        nodes.push(el('pre', {}, el('code', { text: block.replace(/^[^\n]*\n/, '') })));
        return;
      }
      for (const para of block.split(/\n{2,}/)) {
        const lines = para.split('\n').filter((l) => l.trim() !== '');
        if (lines.length === 0) continue;
        const bullet = lines.every((l) => /^\s*[-*] /.test(l));
        const numbered = lines.every((l) => /^\s*\d+[.)] /.test(l));
        if (bullet || numbered) {
          const list = el(bullet ? 'ul' : 'ol');
          for (const l of lines) list.append(el('li', {}, ...inline(l.replace(/^\s*([-*]|\d+[.)]) /, ''))));
          nodes.push(list);
        } else {
          const p = el('p');
          lines.forEach((l, j) => { if (j) p.append(el('br')); p.append(...inline(l)); });
          nodes.push(p);
        }
      }
    });
    return nodes;
  };
  const show = (role, text) => {
    const node = el('div', { class: 'msg', 'data-role': role });
    node.replaceChildren(...(role === 'assistant' ? markdown(text) : [document.createTextNode(text)]));
    log.append(node);
    log.scrollTop = log.scrollHeight;
    return node;
  };

  // ---- the session: a visitor token, renewed before it expires ----
  let session = null;
  let renewal = null;
  const explain = (response) => {
    if (response.status === 429) {
      const wait = response.headers.get('retry-after');
      return `Too many messages right now${wait ? `; try again in ${wait} s` : ''}.`;
    }
    if (response.status === 403) return 'This site may not use this chat.';
    if (response.status === 404) return 'This chat is not available.';
    return `The chat service answered ${response.status}; please try again.`;
  };
  const unreachable = 'Cannot reach the chat service; check your connection and try again.';
  async function startSession() {
    const body = {};
    if (script.dataset.userId) {
      body.user_id = script.dataset.userId;
      body.user_signature = script.dataset.userSignature || '';
    } else {
      const key = localStorage.getItem(keyName);
      if (key) body.visitor_key = key;
    }
    let response;
    try {
      response = await fetch(`${base}/v1/web/channels/${channelId}/sessions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
      });
    } catch { throw new Error(unreachable); }
    if (!response.ok) throw new Error(explain(response));
    session = await response.json();
    if (session.visitor_key) localStorage.setItem(keyName, session.visitor_key);
    clearTimeout(renewal);
    renewal = setTimeout(() => startSession().catch(() => {}), session.expires_in * 800);
    return session;
  }

  async function loadHistory() {
    const response = await fetch(`${base}/v1/web/channels/${channelId}/conversation`, {
      headers: { authorization: `Bearer ${session.token}` },
    }).catch(() => null);
    if (!response) throw new Error(unreachable);
    if (!response.ok) throw new Error(explain(response));
    const { messages } = await response.json();
    log.replaceChildren();
    for (const m of messages) show(m.role, m.content);
  }

  // ---- one turn: the SSE stream read with fetch, resumed from its last id if it drops ----
  async function ask(text) {
    show('user', text);
    const answer = show('assistant', '');
    answer.setAttribute('data-state', 'streaming');
    const url = `${base}/conversation/${session.identity_id}/streaming?channel_id=${channelId}` +
      `&message=${encodeURIComponent(text)}&token=${session.token}`;
    let content = '';
    let lastId = null;
    for (let attempt = 0; attempt < 5; attempt++) {
      let response;
      try {
        response = await fetch(url, { headers: lastId ? { 'last-event-id': lastId } : {} });
      } catch {
        await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
        continue;
      }
      if (response.status === 204) break;
      if (!response.ok) throw new Error(explain(response));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      let ended = false;
      try {
        while (!ended) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const event = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let data = '';
            for (const line of event.split('\n')) {
              if (line.startsWith('id:')) lastId = line.slice(3).trim();
              else if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '');
            }
            if (!data) continue;
            const message = JSON.parse(data);
            if (message.type === 'token') content += message.content;
            else if (message.type === 'complete') { content = message.content; ended = true; }
            else if (message.type === 'error') throw new Error(message.content);
            answer.replaceChildren(...markdown(content));
            log.scrollTop = log.scrollHeight;
          }
        }
      } catch (error) {
        // A TypeError is the connection dropping: resumed below. Anything else ends the turn.
        if (!(error instanceof TypeError)) {
          answer.removeAttribute('data-state');
          throw error;
        }
      }
      if (ended) break;
      // The connection dropped mid-answer: resume from the last event the page has.
      if (!lastId) break;
    }
    answer.removeAttribute('data-state');
  }

  // ---- wiring ----
  let ready = null;
  const prepare = () => {
    ready ||= startSession().then(loadHistory).catch((error) => {
      ready = null;
      status.textContent = error.message;
    });
    return ready;
  };
  const open = () => {
    panel.hidden = false;
    bubble.setAttribute('aria-expanded', 'true');
    input.focus();
    prepare();
  };
  const shut = () => {
    panel.hidden = true;
    bubble.setAttribute('aria-expanded', 'false');
    bubble.focus();
  };
  bubble.addEventListener('click', () => (panel.hidden ? open() : shut()));
  close.addEventListener('click', shut);
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape' && !pageMode) shut(); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || send.disabled) return;
    send.disabled = true;
    status.textContent = '';
    try {
      await prepare();
      if (!session) return;
      input.value = '';
      await ask(text);
    } catch (error) {
      status.textContent = error.message;
    } finally {
      send.disabled = false;
      input.focus();
    }
  });

  const mount = () => {
    document.body.append(host);
    if (pageMode) open();
  };
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);
})();
