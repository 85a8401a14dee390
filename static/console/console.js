/* Mandate console: live countdowns, copy buttons, and a guard so auto-refresh never eats typing. */
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

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = Math.max(0, Math.round((Date.parse(el.dataset.expires) - now) / 1000));
      var text = fmt(left);
      if (el.textContent !== text) el.textContent = text;
      el.classList.toggle("soon", left > 0 && left <= 60);
      el.classList.toggle("gone", left === 0);
    });
  }

  // The approval queue refreshes itself only while nobody is typing a comment in it.
  window.queueIdle = function () {
    var rows = document.getElementById("queue-rows");
    if (!rows) return false;
    if (rows.contains(document.activeElement)) return false;
    return !Array.prototype.some.call(rows.querySelectorAll("input[name=comment]"), function (i) {
      return i.value.trim() !== "";
    });
  };

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

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
  });
})();
