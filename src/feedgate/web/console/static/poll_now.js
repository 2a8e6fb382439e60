// Poll Now's live figures: ask the poll's status every half second while it runs, show the
// segments, blocks and observables read, append the threat-feed log lines (as text), and end
// with the log's summary line.
(function () {
  "use strict";
  var card = document.getElementById("poll");
  if (!card || !card.dataset.running) { return; }
  var lines = document.getElementById("poll-lines");
  var next = lines ? lines.children.length : 0;

  function set(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }

  function tick() {
    fetch(card.dataset.status + "?from=" + next, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("the console answered " + response.status); }
        return response.json();
      })
      .then(function (s) {
        set("poll-segments", s.segment + " / " + s.segments);
        set("poll-blocks", s.blocks.toLocaleString("en"));
        set("poll-read", s.read.toLocaleString("en"));
        s.lines.forEach(function (text) {
          var item = document.createElement("li");
          item.textContent = text;
          lines.appendChild(item);
        });
        next = s.next;
        if (!s.done) { window.setTimeout(tick, 500); return; }
        set("poll-state", s.ok ? "Done." : "Failed.");
        var last = document.getElementById("poll-last");
        last.textContent = s.last || s.refused || s.error || "";
        last.className = "flash " + (s.ok ? "ok" : "error");
        last.hidden = false;
      })
      .catch(function (err) {
        set("poll-state", "Lost touch with the console (" + err.message + "): reload the page.");
      });
  }
  tick();
}());
