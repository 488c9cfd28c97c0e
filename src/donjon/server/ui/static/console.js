// The Donjon console's only script (no library): poll /ui/pulse, refresh the page's
// main content when the ledger records something new, and show the high-severity alarm.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-pulse");
  if (!url) { return; }
  var seen = Number(body.getAttribute("data-seen") || 0);
  var busy = false;
  var PERIOD = Number(body.getAttribute("data-period") || 30000);

  function showAlarm(alarm) {
    var box = document.getElementById("alarm");
    if (!box) { return; }
    if (!alarm) { box.hidden = true; return; }
    box.textContent = alarm.count + " high-severity finding(s) in the last 24 h. Newest: " + alarm.text;
    box.hidden = false;
  }

  function replaceMain() {
    // Keep what the user is typing: no refresh while a form field has focus.
    var active = document.activeElement;
    if (active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) { return Promise.resolve(); }
    // marked as a refresh: this session's view of the page is already in the ledger
    return fetch(window.location.href, { credentials: "same-origin", headers: { "X-Donjon-Refresh": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("content");
        var main = document.getElementById("content");
        if (fresh && main) { main.replaceWith(document.importNode(fresh, true)); }
      });
  }

  function tick() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.assign(url.replace(/pulse$/, "login")); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (pulse) {
        if (!pulse) { return; }
        showAlarm(pulse.alarm);
        if (pulse.change > seen) { seen = pulse.change; return replaceMain(); }
      })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { busy = false; });
  }

  window.setInterval(tick, PERIOD);
}());
