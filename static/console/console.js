/* Mandate console: times in the viewer's zone, live countdowns, copy buttons, and a guard so
   auto-refresh never eats typing. No inline script anywhere: everything hangs off data- attributes. */
(function () {
  "use strict";

  function fmt(seconds) {
    if (seconds <= 0) return "expired";
    var d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600),
        m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (d) return d + " d " + h + " h left";
    if (h) return h + " h " + m + " min left";
    if (m) return m + " min " + (s < 10 ? "0" : "") + s + " s left";
    return s + " s left";
  }

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  // The zone to show: one chosen in the header's menu (kept in this browser), else the browser's own.
  function zone() {
    var chosen = null;
    try { chosen = window.localStorage.getItem("mandate-tz"); } catch (e) { /* storage off */ }
    return chosen || undefined;
  }

  // The server writes "2 Dec 2026, 00:50 UTC"; the same shape in the viewer's zone, its name said.
  function absolute(date) {
    var parts = {};
    try {
      new Intl.DateTimeFormat("en-US", {
        timeZone: zone(), year: "numeric", month: "numeric", day: "numeric",
        hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short"
      }).formatToParts(date).forEach(function (p) { parts[p.type] = p.value; });
    } catch (e) {
      return null;
    }
    return parts.day + " " + MONTHS[parseInt(parts.month, 10) - 1] + " " + parts.year + ", " +
      parts.hour + ":" + parts.minute + " " + parts.timeZoneName;
  }

  function relative(date, now) {
    var seconds = Math.round((now - date.getTime()) / 1000), future = seconds < 0;
    seconds = Math.abs(seconds);
    if (seconds < 45) return future ? "in a few seconds" : "just now";
    var units = [[31536000, "y"], [2592000, "mo"], [86400, "d"], [3600, "h"], [60, "min"]];
    for (var i = 0; i < units.length; i++) {
      if (seconds >= units[i][0]) {
        var amount = Math.floor(seconds / units[i][0]) + " " + units[i][1];
        return future ? "in " + amount : amount + " ago";
      }
    }
    return "just now";
  }

  function localise(root) {
    (root || document).querySelectorAll("time[data-when]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      var text = absolute(date);
      if (text && el.textContent !== text) el.textContent = text;
    });
  }

  function tick() {
    document.querySelectorAll("[data-rel]").forEach(function (el) {
      var date = new Date(el.dataset.rel);
      if (isNaN(date.getTime())) return;
      var text = relative(date, Date.now());
      if (el.textContent !== text) el.textContent = text;
    });
    var now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = Math.max(0, Math.round((Date.parse(el.dataset.expires) - now) / 1000));
      var text = fmt(left);
      if (el.textContent !== text) el.textContent = text;
      el.classList.toggle("soon", left > 0 && left <= 60);
      el.classList.toggle("gone", left === 0);
    });
  }

  // The approval queue refreshes itself only while nobody is typing a comment in it: its polling
  // request (marked data-poll-when-idle) is cancelled otherwise. An event listener rather than an
  // hx-trigger filter, which htmx would have to eval (refused by the Content-Security-Policy).
  function queueIdle(rows) {
    if (rows.contains(document.activeElement)) return false;
    if (rows.querySelector("input[name=envelope]:checked")) return false;  // a bulk choice in progress
    return !Array.prototype.some.call(rows.querySelectorAll("input[name=comment]"), function (i) {
      return i.value.trim() !== "";
    });
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-poll-when-idle") && !queueIdle(elt)) {
      event.preventDefault();
    }
  });

  // Sizes that come from data (indentation depth, progress) are set here, through the DOM, since
  // the policy refuses style attributes written in the markup.
  function within(root, selector) {
    var found = Array.prototype.slice.call(root.querySelectorAll(selector));
    if (root.matches && root.matches(selector)) found.push(root);
    return found;
  }
  function paint(root) {
    within(root, "[data-depth]").forEach(function (el) {
      el.style.setProperty("--depth", el.dataset.depth);
    });
    within(root, "[data-percent]").forEach(function (el) {
      el.style.width = Math.max(0, Math.min(100, Number(el.dataset.percent) || 0)) + "%";
    });
  }
  document.addEventListener("htmx:load", function (event) { paint(event.detail.elt); });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.querySelector(button.dataset.copy);
    if (!field) return;
    field.select();
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
    } else {
      document.execCommand("copy");
      done();
    }
  });

  // htmx drops 4xx answers; a refusal that brings its own markup (it says so with the
  // X-Mandate-Refusal header) is shown where the answer would have gone.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status >= 400 && xhr.status < 500 && xhr.getResponseHeader("X-Mandate-Refusal")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // The header's zone menu: the browser's zone by default, or one chosen and kept in localStorage.
  function zoneMenu() {
    var select = document.getElementById("tz-choice");
    if (!select) return;
    var own = new Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    var chosen = zone();
    var zones = ["UTC"];
    if (Intl.supportedValuesOf) { try { zones = zones.concat(Intl.supportedValuesOf("timeZone")); } catch (e) { /* old browser */ } }
    var first = document.createElement("option");
    first.value = "";
    first.textContent = "Browser (" + own + ")";
    select.appendChild(first);
    zones.forEach(function (name) {
      var option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      if (name === chosen) option.selected = true;
      select.appendChild(option);
    });
    select.addEventListener("change", function () {
      try {
        if (select.value) window.localStorage.setItem("mandate-tz", select.value);
        else window.localStorage.removeItem("mandate-tz");
      } catch (e) { /* storage off: nothing kept */ }
      localise();
    });
  }

  // "Select all shown": ticks every checkbox its data-check-all selector names.
  document.addEventListener("change", function (event) {
    var all = event.target.closest("[data-check-all]");
    if (!all) return;
    document.querySelectorAll(all.dataset.checkAll).forEach(function (box) { box.checked = all.checked; });
  });

  // Theme: the system's (auto) unless chosen here; the choice is kept in this browser.
  var THEMES = ["auto", "dark", "light"];
  function storedTheme() {
    try { return window.localStorage.getItem("mandate-theme") || "auto"; } catch (e) { return "auto"; }
  }
  function applyTheme(theme) {
    if (theme === "auto") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    document.querySelectorAll("[data-theme-toggle]").forEach(function (b) { b.textContent = "Theme: " + theme; });
  }
  applyTheme(storedTheme());
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-theme-toggle]");
    if (!toggle) return;
    var next = THEMES[(THEMES.indexOf(storedTheme()) + 1) % THEMES.length];
    try {
      if (next === "auto") window.localStorage.removeItem("mandate-theme");
      else window.localStorage.setItem("mandate-theme", next);
    } catch (e) { /* storage off: this page only */ }
    applyTheme(next);
  });

  // A chart's bars open their rows on a pointer click; keyboards use the links listed under it.
  document.addEventListener("click", function (event) {
    var bar = event.target.closest && event.target.closest("svg .chart-link[data-href]");
    if (bar) window.location.assign(bar.getAttribute("data-href"));
  });

  // Rows that htmx brings in (queue refresh, pages of activity) get the same treatment.
  document.addEventListener("htmx:load", function (event) { localise(event.target); });

  document.addEventListener("DOMContentLoaded", function () {
    applyTheme(storedTheme());
    zoneMenu();
    localise();
    paint(document);
    tick();
    setInterval(tick, 1000);
  });
})();
