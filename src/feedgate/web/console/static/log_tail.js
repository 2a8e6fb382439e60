// The threat-feed log's live tail: each server-sent event is a new row, put at the top of the
// table (as text: log lines quote what feeds said).
(function () {
  "use strict";
  var table = document.getElementById("log");
  var rows = document.getElementById("log-rows");
  var state = document.getElementById("tail-state");
  if (!table || !rows || !window.EventSource) { return; }

  function cell(cls, text) {
    var td = document.createElement("td");
    td.className = cls;
    td.textContent = text;
    return td;
  }

  var source = new EventSource(table.dataset.stream);
  source.onopen = function () { state.textContent = "Live: new lines appear at the top."; };
  source.onerror = function () { state.textContent = "Live tail interrupted; reconnecting..."; };
  source.onmessage = function (event) {
    var row = JSON.parse(event.data);
    var tr = document.createElement("tr");
    tr.dataset.id = row.id;
    tr.className = "fresh";
    tr.appendChild(cell("when mono", row.at));
    var level = cell("level", "");
    var badge = document.createElement("span");
    badge.className = "badge " + row.level;
    badge.textContent = row.level;
    level.appendChild(badge);
    tr.appendChild(level);
    tr.appendChild(cell("source", row.source));
    tr.appendChild(cell("message", row.message));
    rows.insertBefore(tr, rows.firstChild);
    var empty = document.getElementById("log-empty");
    if (empty) { empty.remove(); }
  };
}());
