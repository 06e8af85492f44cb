// The dashboard's page: static markup only. Everything about the cluster
// comes later over /ws/admin, once the operator has signed in; the script and
// the style sheet are files of this node (built by `npm run build` from
// src/dashboard/page/), so the Content-Security-Policy needs no inline
// script or style and no other origin.

export const PAGE: string = `<!doctype html>
<html lang="en" data-theme="auto">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="referrer" content="no-referrer">
<title>Herald admin</title>
<link rel="icon" href="/admin/assets/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/admin/assets/dashboard.css">
<script src="/admin/assets/dashboard.js" defer></script>
</head>
<body>
<a class="skip" id="skip" href="#main">Skip to content</a>
<header class="bar">
  <h1>Herald <span class="sub">admin</span></h1>
  <p id="link" class="link" role="status" aria-live="polite">Signed out</p>
  <div class="bar-actions">
    <button type="button" id="theme" class="ghost" aria-describedby="theme-now">Theme</button>
    <span id="theme-now" class="visually-hidden">auto</span>
    <button type="button" id="sign-out" class="ghost" hidden>Sign out</button>
  </div>
</header>
<main id="main" tabindex="-1">
<section id="sign-in" class="sign-in" aria-labelledby="sign-in-title">
  <form id="sign-in-form" class="card" novalidate>
    <h2 id="sign-in-title">Sign in</h2>
    <label for="token">Admin token <span class="hint">(a JWT with role <code>admin</code>)</span></label>
    <textarea id="token" name="token" rows="5" autocomplete="off" autocapitalize="off" spellcheck="false" required aria-describedby="token-help sign-in-error"></textarea>
    <p id="token-help" class="hint">Kept in this tab's session storage only: never in a cookie or local storage, gone when the tab closes. Mint one with <code>npx herald token --sub you --roles admin --ttl 8h</code>.</p>
    <p id="sign-in-error" class="error" role="alert"></p>
    <button type="submit" id="sign-in-button" class="primary">Sign in</button>
  </form>
</section>

<div id="app" hidden>
  <nav class="tabs" role="tablist" aria-label="Views">
    <button type="button" role="tab" id="tab-overview" aria-controls="overview" aria-selected="true">Overview</button>
    <button type="button" role="tab" id="tab-tail" aria-controls="tail" aria-selected="false" tabindex="-1">Live tail</button>
    <button type="button" role="tab" id="tab-inspector" aria-controls="inspector" aria-selected="false" tabindex="-1">User inspector</button>
    <button type="button" role="tab" id="tab-webhooks" aria-controls="webhooks" aria-selected="false" tabindex="-1">Webhooks</button>
  </nav>

  <section id="overview" role="tabpanel" aria-labelledby="tab-overview" tabindex="0">
    <div class="cards" id="cards">
      <div class="stat"><h3>Nodes</h3><p class="big" id="c-nodes">–</p><p class="hint" id="c-nodes-sub"></p></div>
      <div class="stat"><h3>Connections</h3><p class="big" id="c-conns">–</p><p class="hint" id="c-conns-sub"></p></div>
      <div class="stat"><h3>Events published</h3><p class="big" id="c-pub">–</p><p class="hint">per second</p></div>
      <div class="stat"><h3>Deliveries</h3><p class="big" id="c-del">–</p><p class="hint">per second</p></div>
      <div class="stat"><h3>Delivery latency</h3><p class="big" id="c-lat">–</p><p class="hint">p50 / p99, slowest node</p></div>
    </div>
    <p id="backend-note" class="note" role="status" hidden></p>

    <section class="panel" aria-labelledby="nodes-title">
      <h2 id="nodes-title">Nodes</h2>
      <div class="scroll">
      <table id="nodes" class="grid">
        <thead><tr>
          <th scope="col">Node</th><th scope="col">Address</th><th scope="col">Version</th><th scope="col">Uptime</th><th scope="col">State</th>
          <th scope="col" class="num">Connections</th><th scope="col" class="num">WebSocket</th><th scope="col" class="num">Socket.IO</th><th scope="col" class="num">Users</th>
          <th scope="col" class="num">Published/s</th><th scope="col" class="num">Delivered/s</th><th scope="col" class="num">p50 ms</th><th scope="col" class="num">p99 ms</th><th scope="col" class="num">Memory</th>
        </tr></thead>
        <tbody></tbody>
      </table>
      </div>
    </section>

    <div class="charts">
      <figure class="panel chart"><figcaption>Connections per node</figcaption><canvas id="chart-conns" role="img" aria-label="Connections per node over time"></canvas><ul class="legend" id="legend-conns"></ul></figure>
      <figure class="panel chart"><figcaption>Events published and deliveries per second</figcaption><canvas id="chart-rates" role="img" aria-label="Events and deliveries per second over time"></canvas><ul class="legend" id="legend-rates"></ul></figure>
      <figure class="panel chart"><figcaption>Delivery latency p99 per node (ms)</figcaption><canvas id="chart-latency" role="img" aria-label="Delivery latency p99 per node over time"></canvas><ul class="legend" id="legend-latency"></ul></figure>
    </div>

    <div class="tallies">
      <section class="panel" aria-labelledby="t-disc"><h2 id="t-disc">Disconnects by close code</h2><table class="grid" id="tally-disconnects"><thead><tr><th scope="col">Code</th><th scope="col">Meaning</th><th scope="col" class="num">Last 5 min</th><th scope="col" class="num">Since start</th></tr></thead><tbody></tbody></table></section>
      <section class="panel" aria-labelledby="t-limits"><h2 id="t-limits">Limit hits</h2><table class="grid" id="tally-limits"><thead><tr><th scope="col">Limit</th><th scope="col" class="num">Last 5 min</th><th scope="col" class="num">Since start</th></tr></thead><tbody></tbody></table></section>
      <section class="panel" aria-labelledby="t-auth"><h2 id="t-auth">Auth failures by reason</h2><table class="grid" id="tally-auth"><thead><tr><th scope="col">Reason</th><th scope="col" class="num">Last 5 min</th><th scope="col" class="num">Since start</th></tr></thead><tbody></tbody></table></section>
    </div>

    <div class="tops">
      <section class="panel" aria-labelledby="top-users-title"><h2 id="top-users-title">Top users <span class="hint">connections opened, last <span class="top-window">5</span> min</span></h2><ol id="top-users" class="top"></ol></section>
      <section class="panel" aria-labelledby="top-types-title"><h2 id="top-types-title">Top event types <span class="hint">published, last <span class="top-window">5</span> min</span></h2><ol id="top-types" class="top"></ol></section>
      <section class="panel" aria-labelledby="groups-title"><h2 id="groups-title">Groups <span class="hint">member connections now</span></h2><ol id="groups" class="top"></ol></section>
    </div>
  </section>

  <section id="tail" role="tabpanel" aria-labelledby="tab-tail" tabindex="0" hidden>
    <form id="tail-form" class="filters" novalidate>
      <div class="field"><label for="tail-pattern">Event types</label><input id="tail-pattern" name="pattern" value="*" autocomplete="off" spellcheck="false" aria-describedby="tail-pattern-help"><span id="tail-pattern-help" class="hint">patterns, comma-separated: <code>orders.*</code>, <code>*.login.*</code></span></div>
      <div class="field"><label for="tail-user">User</label><input id="tail-user" name="user" autocomplete="off" spellcheck="false" aria-describedby="tail-user-help"><span id="tail-user-help" class="hint">only this user's events; empty: everyone's</span></div>
      <div class="field buttons"><button type="submit" id="tail-start" class="primary">Start tail</button><button type="button" id="tail-stop" disabled>Stop</button><button type="button" id="tail-clear">Clear</button></div>
    </form>
    <p id="tail-status" class="note" role="status">Not tailing.</p>
    <p id="tail-counts" class="hint"></p>
    <p id="tail-error" class="error" role="alert"></p>
    <div class="scroll tail-scroll">
    <table id="tail-events" class="grid tail">
      <thead><tr><th scope="col">Time</th><th scope="col">Type</th><th scope="col">User</th><th scope="col">Session</th><th scope="col">Data</th></tr></thead>
      <tbody></tbody>
    </table>
    </div>
  </section>

  <section id="inspector" role="tabpanel" aria-labelledby="tab-inspector" tabindex="0" hidden>
    <form id="inspect-form" class="filters" novalidate>
      <div class="field"><label for="inspect-user">User id</label><input id="inspect-user" name="user" autocomplete="off" spellcheck="false" required></div>
      <div class="field buttons"><button type="submit" class="primary" id="inspect-go">Look up</button></div>
    </form>
    <p id="inspect-error" class="error" role="alert"></p>
    <div id="inspect-result" hidden>
      <h2 id="inspect-title"></h2>
      <div class="actions"><button type="button" id="inspect-refresh">Refresh</button><button type="button" id="inspect-disconnect-user" class="danger">Disconnect all</button><button type="button" id="inspect-revoke-user" class="danger">Revoke user</button></div>
      <p id="inspect-status" class="note" role="status"></p>
      <div class="scroll">
      <table id="inspect-connections" class="grid">
        <thead><tr><th scope="col">Node</th><th scope="col">Connection</th><th scope="col">Session</th><th scope="col">Endpoint</th><th scope="col">IP</th><th scope="col">Connected</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody></tbody>
      </table>
      </div>
    </div>
  </section>

  <section id="webhooks" role="tabpanel" aria-labelledby="tab-webhooks" tabindex="0" hidden>
    <div class="actions"><button type="button" id="webhooks-refresh">Refresh</button></div>
    <p id="webhooks-status" class="note" role="status"></p>
    <p id="webhooks-persistence" class="note" hidden></p>
    <p id="webhooks-error" class="error" role="alert"></p>
    <div class="scroll">
    <table id="webhooks-list" class="grid">
      <thead><tr>
        <th scope="col">Endpoint</th><th scope="col">URL</th><th scope="col">Event types</th><th scope="col">State</th><th scope="col">Breaker</th>
        <th scope="col" class="num">Queued</th><th scope="col" class="num">Oldest pending</th><th scope="col" class="num">Failed of latest</th><th scope="col">Latest attempt</th>
      </tr></thead>
      <tbody></tbody>
    </table>
    </div>
  </section>
</div>

<dialog id="confirm" aria-labelledby="confirm-title" aria-describedby="confirm-text">
  <h2 id="confirm-title">Are you sure?</h2>
  <p id="confirm-text"></p>
  <div class="actions"><button type="button" id="confirm-cancel" autofocus>Cancel</button><button type="button" id="confirm-ok" class="danger">Confirm</button></div>
</dialog>
</main>
</body>
</html>
`

export const ICON: string = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#2b59c3"/><path d="M9 8v16M23 8v16M9 16h14" stroke="#fff" stroke-width="3.5" stroke-linecap="round"/></svg>
`
